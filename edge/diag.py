"""Technician checks (``maskgate diag``) and the camera positioning aid (``maskgate preview``).

A technician at a gate has a keyboard, no internet and a fault to find. Each check looks at one
part, says ``ok`` / ``warn`` / ``fail`` with one line of what it saw and, when there is something to
do, a hint saying what. A check that does not apply here (no systemd on a laptop, a recording in
place of a camera, simulated pins) says so as ``warn``; a check never crashes the others: an
unexpected exception becomes that check's ``fail`` line. Nothing here writes a frame anywhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, NamedTuple

import numpy as np

from edge.config import Config
from edge.errors import CameraError, ConfigError, MaskgateError, ModelError

log = logging.getLogger(__name__)

# Root of the files the board/clock checks read (/proc, /sys, /dev); tests point it at a fake tree.
SYS = Path("/")
SERVICE = "maskgate.service"
DARK, BRIGHT = 40.0, 220.0  # mean grey level (0-255) outside which faces are hard to see
TEMP_WARN_C, TEMP_FAIL_C = 70.0, 80.0  # a Pi 4/5 starts to throttle at 80-85 degrees C
DISK_WARN_MB, DISK_FAIL_MB = 1024, 100


class Finding(NamedTuple):
    """What one check saw: status, one line of detail, and what to do (may be empty)."""

    status: str
    detail: str
    hint: str = ""


@dataclass(frozen=True)
class Result:
    """A finding with its check's name: one line of ``maskgate diag`` output."""

    check: str
    status: str
    detail: str
    hint: str = ""

    def as_dict(self) -> dict[str, str]:
        d = {"check": self.check, "status": self.status, "detail": self.detail}
        if self.hint:
            d["hint"] = self.hint
        return d


@dataclass(frozen=True)
class Context:
    """What every check may look at."""

    cfg: Config
    state: Path
    yes: bool = False
    pin_factory: Any = None  # gpiozero pins for the door check: None = what door.backend says


def _ok(detail: str, hint: str = "") -> Finding:
    return Finding("ok", detail, hint)


def _warn(detail: str, hint: str = "") -> Finding:
    return Finding("warn", detail, hint)


def _fail(detail: str, hint: str = "") -> Finding:
    return Finding("fail", detail, hint)


def _module(name: str) -> ModuleType | None:
    """``edge.<name>``, or None when this build does not have it yet (other import errors propagate)."""
    try:
        return importlib.import_module(f"edge.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"edge.{name}":
            return None
        raise


def _missing(name: str) -> Finding:
    return _warn(f"{name} not installed", f"this build of maskgate has no edge/{name}.py")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip("\x00\n ")
    except OSError:
        return None


def _run(cmd: list[str], timeout: float = 5.0) -> str | None:
    """A command's stdout, or None when it is not installed, fails or hangs."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout if p.returncode == 0 else None


# ---- camera ----

def _camera_hint(cfg: Config) -> str:
    cam = cfg.camera
    if cam.source == "opencv":
        videos = sorted(str(p) for p in (SYS / "dev").glob("video*"))
        if not videos:
            return "no /dev/video* device: plug the camera in (or set camera.source), then `v4l2-ctl --list-devices`"
        return (f"devices here: {' '.join(videos)}; set camera.device to one of them; the user needs group video; "
                f"stop the gate first if it runs (`sudo systemctl stop maskgate`)")
    if cam.source == "picamera2":
        return ("check the ribbon cable and `rpicam-hello --list-cameras`; stop the gate first if it runs "
                "(`sudo systemctl stop maskgate`)")
    return "set camera.path to a readable video or image folder (empty = the bundled demo clip)"


def _grab(cfg: Config) -> tuple[list[Any], float, str]:
    """A few frames from the configured source (oldest first), the frame rate, and the source's name.

    A live camera is read for about a second after a short warm-up (auto exposure), so its rate is
    the real one, and its last frames are "now"; a recording reports the rate written in the file
    and gives every 15th of its first 90 frames. Only these few frames are kept, in memory.
    """
    from edge.camera import open_source

    cam = cfg.camera
    live = cam.source != "replay"
    source = open_source(cam if live else dataclasses.replace(cam, realtime=False, loop=False))
    kept: deque[Any] = deque(maxlen=6)
    try:
        if live:
            for _ in range(5):
                source.read()
            n, first, last = 0, None, None
            t_end = time.monotonic() + 1.0
            while time.monotonic() < t_end and (f := source.read()) is not None:
                kept.append(f)
                n, first, last = n + 1, first or f, f
            span = last.t - first.t if n > 1 else 0.0
            fps = (n - 1) / span if span > 0 else 0.0
        else:
            for i in range(90):
                if (f := source.read()) is None:
                    break
                if i % 15 == 0:
                    kept.append(f)
            fps = float(getattr(source, "fps", 0.0))
    finally:
        source.close()
    return list(kept), fps, source.name


def check_camera(ctx: Context) -> Finding:
    """Opens; real frame rate and resolution; brightness; a face visible now."""
    cfg = ctx.cfg
    try:
        frames, fps, name = _grab(cfg)
    except CameraError as e:
        return _fail(str(e), _camera_hint(cfg))
    if not frames:
        return _fail(f"{cfg.camera.source}: opened but gave no frames", _camera_hint(cfg))
    from edge.vision import geometry
    from edge.vision import landmarks

    h, w = frames[-1].image.shape[:2]
    grey = frames[-1].image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    brightness = float(grey.mean())
    picks = frames[::-1]  # newest first: for a live camera the last frame is "now"
    face = None
    with landmarks.for_images(cfg.vision, max_faces=1) as lm:
        for f in picks:
            faces = lm.detect(f.image)
            if faces:
                face = faces[0]
                break
    pd = geometry.pupil_distance(face.landmarks) if face is not None else 0.0
    seen = f"face visible (pupils {pd:.0f} px)" if face is not None else "no face visible"
    live = cfg.camera.source != "replay"
    what = name if live else f"recording {Path(name.split(':', 1)[1]).name}"
    detail = f"{what}: {w}x{h} at {fps:.1f} fps, brightness {brightness:.0f}/255, {seen}"
    problems: list[str] = []
    c = cfg.camera
    asked = (c.width, c.height) if c.rotate in (0, 180) else (c.height, c.width)  # frames come rotated
    if live and (w, h) != asked:
        problems.append(f"the camera gives {w}x{h}, not the configured "
                        f"{cfg.camera.width}x{cfg.camera.height}: set camera.width/height to a mode it has")
    if live and fps < 0.6 * cfg.camera.fps:
        problems.append(f"{fps:.1f} fps is well below camera.fps = {cfg.camera.fps:g}: low light makes "
                        "cameras lengthen exposure; add light or lower camera.width/height")
    if brightness < DARK:
        problems.append("the image is dark: add light at the door or check the IR illuminator")
    elif brightness > BRIGHT:
        problems.append("the image is overexposed: shade the camera from direct light")
    if face is None:
        problems.append("stand 0.5-1 m in front of the camera and run `maskgate diag camera` again "
                        "(`maskgate preview` helps aim it)")
    elif pd < cfg.vision.min_pupil_distance_px:
        problems.append(f"the face is too small ({pd:.0f} px between pupils, the gate needs "
                        f"{cfg.vision.min_pupil_distance_px:g}): move the camera nearer or use a narrower lens")
    if not live:
        problems.append("camera.source is replay: the gate watches a recording, not the door; "
                        "set camera.source = picamera2 or opencv on a gate")
    if problems:
        return _warn(detail, "; ".join(problems))
    return _ok(detail)


# ---- models ----

def check_models(ctx: Context) -> Finding:
    """Model files present, sha256 against the manifest, a known-answer inference."""
    embed = _module("embed")
    if embed is None:
        return _missing("embed")
    return _models_with(embed, ctx)


KNOWN_ANSWER = ("d10_005.jpg", "d10_130.jpg")  # the demo person, frames 5 and 130 of one recording


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _known_answer(embedder: Any, entry: dict[str, Any]) -> tuple[bool, str]:
    """Run the embedder on bundled photos and compare with what it must give.

    With a reference vector in the manifest (``known_answer``, for ``known_answer_image``) the
    photo's embedding must reproduce it; without one, the demo person's two photos must match each
    other at the model's own threshold, and the same photo twice must give the same vector.
    """
    from edge.camera.replay import read_image
    from edge.vision import landmarks

    demo = Path(__file__).parent / "demo" / "enroll"
    names = [entry.get("known_answer_image", KNOWN_ANSWER[0]), KNOWN_ANSWER[1]]
    vecs = []
    with landmarks.for_images(max_faces=1) as lm:
        for name in names:
            image = read_image(demo / Path(name).name)
            faces = lm.detect(image)
            vec = embedder.embed_face(image, faces[0]) if faces else None
            if vec is None:
                return False, f"no embedding for the bundled photo {name}"
            vecs.append(np.asarray(vec, np.float32).ravel())
        image = read_image(demo / Path(names[0]).name)
        again = np.asarray(embedder.embed_face(image, lm.detect(image)[0]), np.float32).ravel()
    if float(np.dot(vecs[0], again)) < 0.9999:
        return False, "the same photo gave two different embeddings (the runtime is not deterministic)"
    ref = entry.get("known_answer")
    if ref is not None:
        ref = np.asarray(ref, np.float32)
        cos = float(np.dot(vecs[0], ref / (np.linalg.norm(ref) + 1e-12))) if ref.shape == vecs[0].shape else -1.0
        return cos >= 0.98, f"known answer {cos:.4f} against the stored reference (needs 0.98)"
    cos = float(np.dot(vecs[0], vecs[1]))
    return cos >= embedder.threshold, (f"known answer: the demo person's two photos score {cos:.3f} "
                                       f"(threshold {embedder.threshold:.3f})")


def _models_with(embed: ModuleType, ctx: Context) -> Finding:
    from edge.config import tomllib

    reinstall = ("reinstall the models from the release (`bash scripts/setup.sh`, or copy models/ from the "
                 "installer); never edit a model file or its manifest by hand")
    mdir = Path(embed.models_dir())
    manifest_path = mdir / "manifest.toml"
    try:
        manifest = tomllib.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return _fail(f"{manifest_path} is missing", reinstall)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        return _fail(f"{manifest_path} is unreadable: {e}", reinstall)
    entries = manifest.get("models") or {}
    missing, altered = [], []
    for kind, entry in entries.items():
        path = mdir / str(entry.get("file", ""))
        if not path.is_file():
            missing.append(path.name or kind)
        elif _sha256(path) != entry.get("sha256"):
            altered.append(path.name)
    if not entries:
        return _fail(f"{manifest_path} lists no models", reinstall)
    if missing or altered:
        what = ", ".join([f"{m} missing" for m in missing] + [f"{a} sha256 differs from the manifest"
                                                                for a in altered])
        return _fail(f"{mdir}: {what}", reinstall)
    try:
        embedder = embed.Embedder(ctx.cfg.embed)
    except ModelError as e:
        return _fail(str(e), reinstall)
    kind = ctx.cfg.embed.model or manifest.get("default", "")
    passed, answer = _known_answer(embedder, entries.get(kind, {}))
    detail = (f"{len(entries)} model files match the manifest; {kind or 'default'} loaded "
              f"({embedder.dim}-d); {answer}")
    if not passed:
        return _fail(detail, "the model runs but gives wrong answers: check the TFLite runtime "
                             "(ai-edge-litert / tflite-runtime version) and " + reinstall)
    face = _face_model(ctx)
    if isinstance(face, str):   # the gate still works on the eye region alone
        return _warn(f"{detail}; whole-face model not used: {face}", reinstall)
    passed, answer = _known_answer(face.embedder, {})
    if not passed:
        return _warn(f"{detail}; whole-face model: {answer}", "the gate uses the eye region alone; " + reinstall)
    return _ok(f"{detail}; whole-face model {face.embedder.spec.path.name}: {answer}")


def _face_model(ctx: Context) -> Any:
    """The installed whole-face model (edge.fusion.FaceModel), or why it cannot be loaded."""
    from edge.fusion import FaceModel

    try:
        return FaceModel(ctx.cfg.embed)
    except ModelError as e:
        return str(e)


# ---- door ----

def _door_inputs(st: dict[str, Any]) -> str:
    inputs = {k: v for k, v in (st.get("inputs") or {}).items() if k != "contact"}
    parts = [f"contact {st['contact']}"] if st.get("contact", "none") != "none" else []
    parts += [f"{name} {'pressed' if on else 'released'}" for name, on in inputs.items()]
    return ", ".join(parts) or "no inputs wired"


def _click(door: Any, open_s: float) -> None:
    """Pulse the relay once and wait for the pulse to end (or the door to relock on closing)."""
    door.grant(by="technician")
    deadline = time.monotonic() + open_s + 0.5
    while time.monotonic() < deadline and door.relay_on:
        time.sleep(0.02)
    door.lock("diag")


def _audit_door(ctx: Context, events: list[dict[str, Any]]) -> None:
    from edge.audit import record

    for e in events:
        record(ctx.state, ctx.cfg.audit, e["event"], source="diag",
               **{k: v for k, v in e.items() if k not in ("event", "t")})


def check_door(ctx: Context) -> Finding:
    """Input states; with --yes a relay click, and whether the door contact saw the door open."""
    door_mod = _module("door")
    if door_mod is None:
        return _missing("door")
    cfg = ctx.cfg.door
    try:
        door = door_mod.open_door(cfg, pin_factory=ctx.pin_factory)
    except MaskgateError as e:
        return _fail(str(e), "check the door.* pins in the config; stop the door keeper first if it runs "
                             "(`sudo systemctl stop maskgate maskgate-keeper`): it holds the pins")
    events: list[dict[str, Any]] = []
    try:
        door.on_event(events.append)
        before = door.status()
        if "inputs" not in before:  # Door.status() reports only the contact: read the buttons' pins too
            pins = getattr(door, "_pins", None)
            before["inputs"] = {n: pins.active(n) for n in getattr(pins, "inputs", ()) if n != "contact"}
        if ctx.yes:
            _click(door, cfg.open_s)
    finally:
        door.close()  # relay off, pins released, queued events delivered
        if ctx.yes:  # a technician's unlock is evidence like any other: door unlock by=technician, ...
            _audit_door(ctx, events)
    where = f"{before.get('backend', cfg.backend)}, relay GPIO {cfg.relay_pin}"
    status, hints = "ok", []
    if before.get("contact") == "open":
        status = "warn"
        hints.append(f"the door contact (GPIO {cfg.contact_pin}) read open: door ajar, or its wiring is cut")
    if before.get("alarms"):
        status = "warn"
        hints.append(f"alarms active: {', '.join(before['alarms'])}")
    if not ctx.yes:
        detail = f"{where} off, {_door_inputs(before)}"
        hints.append(f"add --yes to click the relay (the door unlocks for {cfg.open_s:g} s)")
    else:
        detail = f"{where}: relay clicked for {cfg.open_s:g} s, {_door_inputs(before)}"
        if cfg.contact_pin is None:
            detail += "; no door contact to see the door open"
            status = "warn"
            hints.append("listen for the relay and the strike; wire a door contact (door.contact_pin) "
                         "for held-open and forced-door alarms")
        elif any(e.get("action") == "contact" and e.get("open") for e in events):
            detail += "; the door contact saw the door open"
        else:
            detail += "; the door contact did not see the door open"
            status = "warn"
            hints.append(f"push the door while the relay is on; if it opened, check the contact on "
                         f"GPIO {cfg.contact_pin} (and door.pull_up)")
    if cfg.backend == "mock":
        status = "warn" if status == "ok" else status
        hints.append("door.backend is mock: simulated pins, no real door; set door.backend = gpiozero "
                     "(Raspberry Pi) or gpiod (Jetson)")
    return Finding(status, detail, "; ".join(hints))


# ---- vault ----

def _mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return None


def check_vault(ctx: Context) -> Finding:
    """Opens with this device's key; people count; key file mode 0600; expiry backlog."""
    vault_mod = _module("vault")
    if vault_mod is None:
        return _missing("vault")
    key = ctx.state / vault_mod.KEY_FILE
    sealed = ctx.state / vault_mod.VAULT_FILE
    if not sealed.exists() and not key.exists():
        return _warn(f"no vault in {ctx.state} yet (nobody enrolled)",
                     "enrol someone: `maskgate enroll NAME --from camera --consent TEXT`")
    mode = _mode(key)  # before opening: opening repairs a loose mode, hiding that it was loose
    try:
        v = vault_mod.Vault.open(ctx.state, ctx.cfg.vault)
    except MaskgateError as e:
        return _fail(str(e), "a vault opens only on the board that sealed it, with its own device.key: "
                             "restore this gate's vault.bin and device.key from its backup, or move vault.bin "
                             "away and enrol again")
    people = v.people()
    now = time.time()
    days = ctx.cfg.vault.retention_days
    backlog = [p for p in people if (p.expires is not None and p.expires <= now)
               or (days and now - (p.last_seen or p.created) > days * 86400)]
    templates = sum(p.templates for p in people)
    who = f"{len(people)} {'person' if len(people) == 1 else 'people'}"
    detail = f"{sealed.name} opens with key {v.key_id}: {who}, {templates} templates"
    from edge.embed import load_spec

    try:
        spec = load_spec(ctx.cfg.embed.model)
    except ModelError:
        spec = None   # no comparison against the model then; ``diag models`` says why
    stale = v.stale_for(spec.space) if spec is not None else None
    reached, cal = True, None
    ids, rows = v.gallery()
    if spec is not None and ids:
        from edge.calibration import calibrate

        cal = calibrate(ids, rows, spec, ctx.cfg.match)   # the gate's own rule
        reached = cal.model_reached or (cal.estimated and (cal.strangers or 0.0) <= cal.rate)
        detail += f"; {cal.summary()}"
    if stale:
        return _fail(f"{detail}; {stale}", "the gate grants nobody until then: remove everyone "
                     "(`maskgate templates remove ID`) and enrol them again with this model")
    if mode is not None and mode != 0o600:
        return _fail(f"{detail}; {key.name} had mode {mode:04o}, readable by others",
                     f"the key may have been copied: `sudo chmod 600 {key}` (opening has now set it), then "
                     "`maskgate templates rekey` so a copy opens nothing")
    if cal is not None and not cal.separates:
        from edge.calibration import CLAIM_HINT

        return _fail(f"{detail}: this model cannot tell these {len(set(ids))} people apart at "
                     f"match.stranger_rate = {ctx.cfg.match.stranger_rate:g}", CLAIM_HINT)
    if backlog:
        return _warn(f"{detail}, {len(backlog)} past expiry or retention",
                     "`maskgate templates purge` removes them (the gate already refuses them)")
    if not reached:
        return _warn(f"{detail}: with {who} the model lets strangers in more often than "
                     f"match.stranger_rate = {ctx.cfg.match.stranger_rate:g}",
                     "the model card gives the rate for this many people; keep one gate's list to the "
                     "people who use that gate, or accept a higher match.stranger_rate knowingly")
    if not people:
        return _warn(detail, "enrol someone: `maskgate enroll NAME --from camera --consent TEXT`")
    return _ok(detail)


# ---- audit ----

def check_audit(ctx: Context) -> Finding:
    """The hash chain verifies; log size; the oldest entry."""
    audit_mod = _module("audit")
    if audit_mod is None:
        return _missing("audit")
    path = ctx.state / audit_mod.LOG_NAME
    verdict = audit_mod.verify_file(path, ctx.state / audit_mod.HEAD_NAME)  # read-only, unlike AuditLog()
    if not verdict.ok:
        return _fail(f"{path}: {verdict.detail}",
                     "the log was edited, cut or damaged: copy audit.log and audit.head off the gate as "
                     "evidence before anything else; `maskgate audit show` lists the newest entries")
    if not path.exists():
        return _warn(f"no audit log in {ctx.state} yet", "the gate writes it from its first start "
                                                          "(`sudo systemctl start maskgate`)")
    size = path.stat().st_size
    oldest = ""
    with path.open("rb") as f:
        first = f.readline()
    try:
        entry = json.loads(first)
        oldest = f", oldest {entry.get('ts', '?')} ({entry.get('event', '?')})"
        age_days = (datetime.now(timezone.utc) - datetime.fromisoformat(str(entry["ts"]))).days
    except (ValueError, KeyError, TypeError):
        age_days = 0
    detail = f"chain intact, {verdict.entries} entries, {size / 1024:.0f} KB{oldest}, head {verdict.head[:12]}"
    writable = _audit_writable(ctx.state, path)
    if writable:
        return _warn(f"{detail}; {writable}", "the gate keeps deciding and holds new entries in memory until "
                                              "the log can be written: free space, or fix the mount/owner")
    if "appended after" in verdict.detail:
        return _warn(f"{detail}; {verdict.detail.split('; ', 1)[1]}",
                     "free disk space or check the state directory's mount; the head catches up on the next entry")
    keep = ctx.cfg.audit.retention_days
    if keep and age_days > keep + 1:
        return _warn(f"{detail}; older than audit.retention_days = {keep}",
                     "retention runs when the gate starts: restart it (`sudo systemctl restart maskgate`)")
    return _ok(detail)


def _audit_writable(state: Path, log_path: Path) -> str:
    """Why the gate could not write its audit log now ("" when it can): permissions or a full disk."""
    for p in (state, log_path):
        if p.exists() and not os.access(p, os.W_OK):
            return f"{p} is not writable (read-only file system or wrong owner)"
    try:
        st = os.statvfs(state)
    except OSError as e:
        return f"{state}: {e.strerror}"
    if st.f_bavail * st.f_frsize < 1 << 20:
        return f"the disk holding {state} is full (under 1 MB free)"
    return ""


# ---- clock ----

def clock_sources() -> Any:
    """The clock's witnesses as this check reads them: under ``SYS`` (a fake tree in tests), and
    NTP synchronisation as systemd reports it (``timedatectl``), or the gate's own time-source files."""
    from edge import clock

    def synced() -> bool:
        out = _run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
        if out is not None and out.strip() == "yes":
            return True
        return any((SYS / p.relative_to("/")).exists() for p in (clock.TIMESYNC, clock.MARKER))

    rtc = sorted((SYS / "sys/class/rtc").glob("rtc*")) or sorted((SYS / "dev").glob("rtc[0-9]*"))
    return clock.TimeSources(rtc=lambda: bool(rtc), synced=synced)


def check_clock(ctx: Context, sources: Any = None) -> Finding:
    """A clock the access rules can trust (edge.clock): after the build date, kept by an RTC or a time source."""
    from edge import clock

    sources = sources or clock_sources()
    c = clock.Clock(sources)
    now = datetime.fromtimestamp(sources.wall())
    stamp = f"{now:%Y-%m-%d %H:%M} local"
    why = c.untrusted()
    if why:
        return _fail(f"{stamp}: {why}", clock.FIX)
    if sources.rtc():
        return _ok(f"{stamp}, real-time clock" + (", time source synchronised" if sources.synced() else ""))
    return _warn(f"{stamp}, time source synchronised but no real-time clock",
                 "after a power cut without the time source the clock is lost and schedules stop; "
                 "fit an RTC (Pi 5: battery on J5)")


# ---- board ----

THROTTLE_BITS = {0: "under-voltage now", 1: "ARM frequency capped now", 2: "throttled now",
                 3: "soft temperature limit now", 16: "under-voltage has occurred",
                 17: "frequency capping has occurred", 18: "throttling has occurred",
                 19: "soft temperature limit has occurred"}


def throttle_flags(value: int) -> list[str]:
    """The meaning of the bits of ``vcgencmd get_throttled`` (Raspberry Pi firmware)."""
    return [text for bit, text in THROTTLE_BITS.items() if value & (1 << bit)]


def board_model() -> str:
    """The board's name from the device tree (Pi, Jetson) or DMI (PCs), else the CPU architecture."""
    model = _read(SYS / "proc/device-tree/model")
    if model:
        return model
    vendor = _read(SYS / "sys/class/dmi/id/sys_vendor") or ""
    product = _read(SYS / "sys/class/dmi/id/product_name") or ""
    return f"{vendor} {product}".strip() or f"unknown {platform.machine()} board"


def cpu_temperature() -> float | None:
    """The hottest thermal zone in degrees C (the SoC on a Pi or a Jetson), or None when none is visible."""
    temps = []
    for zone in (SYS / "sys/class/thermal").glob("thermal_zone*"):
        raw = _read(zone / "temp")
        try:
            temps.append(int(raw) / 1000.0)  # millidegrees
        except (TypeError, ValueError):
            continue
    return max(temps) if temps else None


def check_board(ctx: Context) -> Finding:
    """Board model, CPU temperature, and throttling (Pi firmware) or thermal zones (elsewhere)."""
    model = board_model()
    temp = cpu_temperature()
    parts = [model, f"CPU {temp:.0f} C" if temp is not None else "no temperature sensor"]
    status, hints = "ok", []
    if temp is not None and temp >= TEMP_FAIL_C:
        status = "fail"
        hints.append("the CPU is at its throttling limit: fit a heatsink/fan, keep the enclosure out of the sun")
    elif temp is not None and temp >= TEMP_WARN_C:
        status = "warn"
        hints.append("the CPU runs hot: check the heatsink/fan and enclosure ventilation")
    raw = _run(["vcgencmd", "get_throttled"])
    if raw and "=" in raw:
        try:
            flags = throttle_flags(int(raw.split("=", 1)[1].strip(), 16))
        except ValueError:
            flags = []
        parts.append("throttling: " + (", ".join(flags) if flags else "none"))
        if any(f.endswith(" now") for f in flags):
            status = "fail"
            hints.append("under-voltage or throttling now: use the official power supply (5 V 3 A / 5 A for a Pi 5)")
        elif flags and status == "ok":
            status = "warn"
            hints.append("the board throttled since boot: check the power supply and cooling")
    elif "raspberry pi" in model.lower():
        parts.append("vcgencmd missing")
        hints.append("install the Pi firmware tools (`sudo apt install libraspberrypi-bin`) to read throttling")
        status = "warn" if status == "ok" else status
    if temp is None and status == "ok":
        status = "warn"
        hints.append("no /sys/class/thermal zone here (a container or a PC?): on a gate the SoC sensor is read")
    return Finding(status, ", ".join(parts), "; ".join(hints))


# ---- disk ----

def check_disk(ctx: Context) -> Finding:
    """Free space where the vault and the audit log are written."""
    where = ctx.state
    while not where.exists() and where != where.parent:
        where = where.parent
    usage = shutil.disk_usage(where)
    free_mb = usage.free / 2**20
    pct = 100.0 * usage.free / usage.total if usage.total else 0.0
    space = f"{free_mb / 1024:.1f} GB free of {usage.total / 2**30:.1f} GB ({pct:.0f}%)"
    detail = f"{ctx.state}: {space}"
    if not ctx.state.exists():
        return _warn(f"{ctx.state} does not exist yet; {where}: {space}",
                     "the installer creates it (scripts/install.sh); or give --state DIR")
    if not os.access(ctx.state, os.W_OK):
        return _fail(f"{detail}, not writable by this user",
                     "run as the gate's user (`sudo -u maskgate maskgate diag`) or fix ownership of the state dir")
    if free_mb < DISK_FAIL_MB:
        return _fail(detail, "the audit log and the vault cannot be written safely: free space "
                             "(`sudo journalctl --vacuum-size=50M`, `maskgate templates purge`)")
    if free_mb < DISK_WARN_MB or pct < 5:
        return _warn(detail, "free some space soon (`sudo journalctl --vacuum-size=50M`)")
    return _ok(detail)


# ---- service ----

def _systemd_running() -> bool:
    return (SYS / "run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def check_service(ctx: Context) -> Finding:
    """The gate daemon under systemd: running, last (re)start, restarts, watchdog."""
    if not _systemd_running():
        return _warn("systemd is not running here", "on a gate the service runs under systemd "
                                                    "(`sudo systemctl status maskgate`)")
    props = ("LoadState", "ActiveState", "SubState", "NRestarts", "ActiveEnterTimestamp", "WatchdogUSec",
             "Result")
    raw = _run(["systemctl", "show", SERVICE, "-p", ",".join(props)])
    if raw is None:
        return _warn(f"`systemctl show {SERVICE}` failed", "run `systemctl status maskgate` by hand")
    p = dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)
    if p.get("LoadState") == "not-found":
        return _warn(f"{SERVICE} is not installed", "install it: `sudo bash scripts/install.sh`")
    active = p.get("ActiveState", "?")
    restarts = p.get("NRestarts", "0") or "0"
    watchdog = p.get("WatchdogUSec", "0")
    wd = "no watchdog" if watchdog in ("0", "infinity", "") else f"watchdog {watchdog}"
    since = p.get("ActiveEnterTimestamp") or "never"
    detail = f"{active} ({p.get('SubState', '?')}) since {since}, {restarts} restarts, {wd}"
    if active != "active":
        return _fail(detail, "read why: `journalctl -u maskgate -b -n 50`; start it: `sudo systemctl restart maskgate`")
    if restarts != "0":
        return _warn(detail, "it has crashed and been restarted: `journalctl -u maskgate -b | grep -i error`")
    if wd == "no watchdog":
        return _warn(detail, "the unit should set WatchdogSec= so a hung gate is restarted (systemd/maskgate.service)")
    return _ok(detail)


def check_display(ctx: Context) -> Finding:
    """The resident's screen and the challenge prompt can be drawn (edge.display.check)."""
    from edge.display.check import check_display as check

    return Finding(*check(ctx.cfg))


def check_sound(ctx: Context) -> Finding:
    """Sounds can play: aplay and an ALSA card (edge.display.check)."""
    from edge.display.check import check_sound as check

    return Finding(*check(ctx.cfg))


CLAIM_WAIT_S = 10.0  # diag claim --yes: how long to wait for a card to be presented


def check_claim(ctx: Context) -> Finding:
    """The [claim] reader opens (and is grabbed); with --yes, a card presented within 10 s is shown."""
    mode, reader_kind = ctx.cfg.match.mode, ctx.cfg.claim.reader
    if reader_kind == "none":
        if mode == "identify":
            return _ok("no claim reader (match.mode = identify: the face alone decides)")
        finding = _fail if mode == "claim" else _warn
        return finding(f"match.mode = {mode} but claim.reader = none: nobody can present a card or PIN",
                       "set [claim] reader = \"keyboard\" (and device) or \"wiegand\" (and the D0/D1 pins)")
    claim_mod = _module("claim")
    if claim_mod is None:
        return _missing("claim")
    seen: list[Any] = []
    try:
        reader = claim_mod.open_reader(ctx.cfg, seen.append, None, pin_factory=ctx.pin_factory)
    except MaskgateError as e:
        return _fail(str(e), "check [claim] in the config; stop the gate first if it runs "
                             "(`sudo systemctl stop maskgate`): it holds the reader")
    try:
        detail = f"{reader.name} open"
        if ctx.yes:
            end = time.monotonic() + CLAIM_WAIT_S
            while not seen and time.monotonic() < end:
                time.sleep(0.05)
            if not seen:
                return _warn(f"{detail}; nothing presented in {CLAIM_WAIT_S:.0f} s",
                             "present a card (or type * PIN Enter on a keypad) while the check waits; "
                             "check the reader's wiring or USB cable")
            detail += f"; read {seen[0].describe()}"
    finally:
        reader.close()
    if mode == "identify":
        return _warn(f"{detail}, but match.mode = identify ignores claims", "set [match] mode = \"claim\" or \"either\"")
    return _ok(detail, "" if ctx.yes else "run `maskgate diag claim --yes` and present a card to see it read")


CHECKS: dict[str, Callable[[Context], Finding]] = {
    "camera": check_camera,
    "models": check_models,
    "door": check_door,
    "vault": check_vault,
    "audit": check_audit,
    "clock": check_clock,
    "board": check_board,
    "disk": check_disk,
    "service": check_service,
    "display": check_display,
    "sound": check_sound,
    "claim": check_claim,
}


def run_one(name: str, ctx: Context) -> Result:
    """One check, whatever happens inside it: a bug in one check is that check's ``fail``, not a crash."""
    try:
        f = CHECKS[name](ctx)
    except MaskgateError as e:
        return Result(name, "fail", str(e))
    except Exception as e:  # noqa: BLE001 - reported, with the traceback under --debug
        log.debug("check %s crashed", name, exc_info=True)
        return Result(name, "fail", f"internal error: {type(e).__name__}: {e}",
                      "run `maskgate diag --debug " + name + "` and report the traceback")
    return Result(name, *f)


# ---- output ----

_COLOURS = {"ok": "\033[32m", "warn": "\033[33m", "fail": "\033[31m"}


def _colour() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def format_row(r: Result, width: int, colour: bool = False) -> str:
    """One aligned table row (status, check, detail) and, indented under it, the hint."""
    status = f"{r.status:<4}"
    if colour:
        status = f"{_COLOURS[r.status]}{status}\033[0m"
    line = f"{status}  {r.check:<{width}}  {r.detail}"
    if r.hint:
        line += f"\n{'':<4}  {'':<{width}}  -> {r.hint}"
    return line


def run_checks(names: list[str], cfg: Config, state: Path, out: Any, yes: bool = False) -> int:
    """Run the named checks (all when none), print one line each; 1 when any fails."""
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ConfigError(f"unknown check {unknown[0]!r} (checks: {', '.join(CHECKS)})")
    selected = list(dict.fromkeys(names)) or list(CHECKS)
    ctx = Context(cfg, state, yes)
    width = max(len(n) for n in selected)
    colour = not out.json and _colour()
    counts = {"ok": 0, "warn": 0, "fail": 0}
    for name in selected:
        r = run_one(name, ctx)
        counts[r.status] += 1
        out.event(r.as_dict(), format_row(r, width, colour))
    out.text(f"{len(selected)} check{'s' if len(selected) > 1 else ''}: {counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail")
    return 1 if counts["fail"] else 0


# ---- preview ----

def distance_hint(face_pd: float, box: tuple[float, float, float, float], size: tuple[int, int],
                  min_pd: float) -> str:
    """What the person (or the installer aiming the camera) should do for a usable face."""
    w, h = size
    x0, y0, x1, y1 = box
    margin = 0.02 * min(w, h)
    if x0 < margin or y0 < margin or x1 > w - margin or y1 > h - margin or face_pd > 0.3 * w:
        return "move further"
    if face_pd < min_pd:
        return "move closer"
    if face_pd < 1.3 * min_pd:
        return "a little closer"
    return "good distance"


def _has_display() -> bool:
    """A window can be shown: a display is set and this OpenCV was built with a GUI backend."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import cv2

    return "GUI:                           NONE" not in cv2.getBuildInformation()


def reading(t: float, faces: list[Any], size: tuple[int, int], min_pd: float) -> dict[str, Any]:
    """The preview's figures for one frame: pose, pupil distance and the hint for its largest face."""
    from edge.vision import geometry

    if not faces:
        return {"t": round(t, 2), "face": False, "hint": "no face"}
    face = faces[0]
    pose = geometry.head_pose(face.landmarks)
    pd = geometry.pupil_distance(face.landmarks)
    return {"t": round(t, 2), "face": True, "box": [round(v) for v in face.box], "yaw": round(pose.yaw, 1),
            "pitch": round(pose.pitch, 1), "roll": round(pose.roll, 1), "pupil_distance": round(pd, 1),
            "hint": distance_hint(pd, face.box, size, min_pd)}


def _reading_text(r: dict[str, Any]) -> str:
    if not r["face"]:
        return f"{r['t']:7.2f}s  no face"
    return (f"{r['t']:7.2f}s  yaw {r['yaw']:+4.0f}  pitch {r['pitch']:+4.0f}  roll {r['roll']:+4.0f}  "
            f"pupils {r['pupil_distance']:4.0f} px  {r['hint']}")


def _draw(image: np.ndarray, faces: list[Any], r: dict[str, Any]) -> np.ndarray:
    import cv2

    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if faces:
        x0, y0, x1, y1 = (int(v) for v in faces[0].box)
        good = r["hint"] == "good distance"
        colour = (0, 200, 0) if good else (0, 200, 255)
        cv2.rectangle(bgr, (x0, y0), (x1, y1), colour, 2)
        for p in faces[0].pupils:
            cv2.circle(bgr, (int(p[0]), int(p[1])), 3, colour, -1)
    text = _reading_text(r).split("s  ", 1)[1]
    cv2.putText(bgr, text, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(bgr, text, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return bgr


def preview(cfg: Config, out: Any, text_only: bool = False) -> int:
    """Show the camera with face box, pose, pupil distance and a distance hint until Ctrl-C (or 'q').

    A window when there is a display, else a readout in the terminal (updated in place on a TTY, one
    line per reading otherwise, five readings a second). Nothing is saved. A recording ends the
    preview when it ends.
    """
    from edge.camera import open_source
    from edge.vision import landmarks

    window = not text_only and not out.json and _has_display()
    in_place = not window and not out.json and sys.stdout.isatty()
    source = open_source(cfg.camera)
    v = cfg.vision
    next_t = -1.0
    # Ctrl-C sets a flag the loop reads between frames: a KeyboardInterrupt raised inside MediaPipe's
    # Python wrapper can leave its graph mid-packet, and closing it then may never return.
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set()) \
        if threading.current_thread() is threading.main_thread() else None
    try:
        with landmarks.for_video(v, max_faces=1) as lm:
            if not window:
                out.text(f"preview of {source.name} (Ctrl-C to stop; nothing is saved)")
            while not stop.is_set() and (frame := source.read()) is not None:
                faces = lm.detect(frame.image)  # the Landmarker keeps MediaPipe's first-face warning quiet
                h, w = frame.image.shape[:2]
                r = reading(frame.t, faces, (w, h), v.min_pupil_distance_px)
                if window:
                    import cv2

                    cv2.imshow("maskgate preview (q to quit)", _draw(frame.image, faces, r))
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        break
                    continue
                if frame.t < next_t:
                    continue
                next_t = frame.t + 0.2
                if in_place:
                    sys.stdout.write("\r" + _reading_text(r) + "\033[K")
                    sys.stdout.flush()
                else:
                    out.event(r, _reading_text(r))
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        source.close()
        if in_place:
            sys.stdout.write("\n")
        if window:
            import cv2

            cv2.destroyAllWindows()
    return 0
