"""Administration by USB stick, with a folder standing in for the mounted stick: the whole round trip
through the real command line (a station's roster for a gate's key, carried on the stick, imported,
the person granted on a replayed clip, removed by a later roster), the signed report request, and
what a stick may not do."""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from conftest import ROOT, maskgate
from edge.audit import verify_file
from edge.usb import check_request, make_request

HAS_MODEL = (ROOT / "models" / "manifest.toml").exists()
CLIP = ROOT / "edge" / "demo" / "clip.mp4"   # the demo person blinks; their enrolment frames are not in it


def test_request_checks() -> None:
    key = SigningKey.generate()
    trusted, gate = [bytes(key.verify_key).hex()], "ab" * 32
    good = make_request(bytes(key), "*")
    assert check_request(good, trusted, gate) == ""
    assert check_request(make_request(bytes(key), gate), trusted, gate) == ""
    assert "not this one" in check_request(make_request(bytes(key), "cd" * 32), trusted, gate)
    assert "not in vault.trusted_keys" in check_request(make_request(bytes(SigningKey.generate())), trusted, gate)
    assert "expired" in check_request(make_request(bytes(key), days=1, now=time.time() - 2 * 86400), trusted, gate)
    assert "future" in check_request(make_request(bytes(key), now=time.time() + 3 * 86400), trusted, gate)
    outer = json.loads(good)
    signed = bytearray(bytes.fromhex(outer["signed"]))
    signed[-5] ^= 1
    assert "bad signature" in check_request(json.dumps({**outer, "signed": signed.hex()}).encode(), trusted, gate)
    assert "malformed" in check_request(b"\x00garbage", trusted, gate)


@pytest.fixture
def site(tmp_path: Path) -> dict:
    """An installer key, a station, a fresh gate trusting the key, an empty stick."""
    signing = tmp_path / "installer.key"
    installer = maskgate("templates", "keygen", "--out", signing, "--json").json_lines()[0]["public_key"]
    config = tmp_path / "gate.toml"
    # One approach per clip (as maskgate demo): the demo person walks through after the grant.
    config.write_text(f'[vault]\ntrusted_keys = ["{installer}"]\n[gate]\ncooldown_s = 60.0\n')
    stick = tmp_path / "stick"
    stick.mkdir()
    return {"key": signing, "stick": stick, "tmp": tmp_path,
            "gate": ("--state", tmp_path / "gate", "--config", config),
            "station": ("--state", tmp_path / "station"),
            "gate_env": {"MASKGATE_DEVICE_ID": "gate-at-the-door"},
            "station_env": {"MASKGATE_DEVICE_ID": "station-laptop"}}


def test_not_a_stick_and_refused_requests(site: dict) -> None:
    s = site
    r = maskgate("usb", s["tmp"], *s["gate"], env=s["gate_env"])
    assert r.returncode == 2 and "no maskgate/ folder" in r.stderr
    # a request signed by a key the gate does not trust: refused, audited, nothing written on the stick
    stranger = s["tmp"] / "stranger.key"
    maskgate("templates", "keygen", "--out", stranger)
    assert maskgate("usb", s["stick"], "--request", "--sign-key", stranger).returncode == 0
    r = maskgate("usb", s["stick"], *s["gate"], "--json", env=s["gate_env"])
    assert r.returncode == 1 and r.json_lines()[-1]["request"].startswith("refused: signed by")
    assert sorted(p.name for p in (s["stick"] / "maskgate").iterdir()) == ["request.signed"]
    assert maskgate("usb", s["stick"], "--check-request", *s["gate"], env=s["gate_env"]).returncode == 1
    log = (s["tmp"] / "gate" / "audit.log").read_text()
    assert '"event":"usb.request_refused"' in log
    r = maskgate("usb", s["stick"], "--request", "--sign-key", stranger, "--gate", "nothex")
    assert r.returncode == 2 and "--gate must be" in r.stderr
    r = maskgate("usb", s["tmp"] / "not-mounted", "--request", "--sign-key", stranger)
    assert r.returncode == 2 and "no such folder" in r.stderr and not (s["tmp"] / "not-mounted").exists()
    r = maskgate("usb", s["stick"], "--request")
    assert r.returncode == 2 and "--request needs --sign-key" in r.stderr


def _decisions(r) -> list[dict]:
    return [e for e in r.json_lines() if e.get("event") == "decision"]


@pytest.mark.skipif(not HAS_MODEL, reason="models/manifest.toml not present (the embedder model)")
def test_usb_round_trip(site: dict) -> None:
    s, stick = site, site["stick"]
    folder = stick / "maskgate"
    gate, station, genv, senv = s["gate"], s["station"], s["gate_env"], s["station_env"]

    # 1. The installer's stick asks a fresh gate for its key (a flashed card has no other way out).
    r = maskgate("usb", stick, "--request", "--sign-key", s["key"], "--days", "7")
    assert r.returncode == 0, r.stderr
    assert maskgate("usb", stick, "--check-request", *gate, env=genv).returncode == 0
    r = maskgate("usb", stick, *gate, "--json", env=genv)
    assert r.returncode == 0, r.stderr
    [report] = list((folder / "from-gates").iterdir())
    pub = (report / "pubkey.txt").read_text().strip()
    assert pub == maskgate("templates", "pubkey", *gate, env=genv).stdout.strip()
    diag = [json.loads(line) for line in (report / "diag.jsonl").read_text().splitlines()]
    assert {d["check"] for d in diag} >= {"models", "vault", "audit"} and "camera" not in {d["check"] for d in diag}
    assert json.loads((report / "result.json").read_text())["done"] is True

    # 2. The station enrols the demo person and writes roster v1 for that key onto the stick.
    r = maskgate("enroll", "Ana Demo", "--from", ROOT / "edge/demo/enroll", "--consent", "form 11", *station, env=senv)
    assert r.returncode == 0, r.stderr
    r = maskgate("roster", "export", "--to", pub, "--sign-key", s["key"], "--out", folder, *station, "--json", env=senv)
    assert r.returncode == 0, r.stderr
    v1 = Path(r.json_lines()[0]["roster"])
    assert v1.parent == folder and v1.suffix == ".roster"
    # (a roster for another gate on the same stick is left alone)
    other = maskgate("templates", "pubkey", "--state", s["tmp"] / "other", env={"MASKGATE_DEVICE_ID": "other"}).stdout.strip()
    assert maskgate("roster", "export", "--to", other, "--sign-key", s["key"], "--out", folder / "other-gate.roster",
                    *station, env=senv).returncode == 0

    # 3. The gate imports it from the stick and lets her in on the replayed clip.
    r = maskgate("usb", stick, *gate, "--json", env=genv)
    assert r.returncode == 0, r.stderr
    lines = r.json_lines()
    [imp] = [e for e in lines if e.get("usb") == "roster"]
    assert imp["version"] == 1 and [p["name"] for p in imp["added"]] == ["Ana Demo"]
    assert [e["file"] for e in lines if e.get("usb") == "skipped"] == ["other-gate.roster"]
    r = maskgate("replay", CLIP, "--challenge", "blink", "--json", *gate, env=genv)
    assert r.returncode == 0, r.stderr
    [d] = _decisions(r)
    assert d["granted"] and d["who"] == "Ana Demo"

    # 4. She is removed at the station; the next roster on the stick (v1 still there) takes her off the gate.
    assert maskgate("templates", "remove", "Ana Demo", *station, env=senv).returncode == 0
    r = maskgate("roster", "export", "--to", pub, "--sign-key", s["key"], "--out", folder, *station, "--json", env=senv)
    v2 = Path(r.json_lines()[0]["roster"])
    r = maskgate("usb", stick, *gate, "--json", env=genv)
    assert r.returncode == 0, r.stderr
    [imp] = [e for e in r.json_lines() if e.get("usb") == "roster"]
    # (v3: the station numbers all its rosters, and v2 went to the other gate)
    assert imp["version"] == 3 and [p["name"] for p in imp["removed"]] == ["Ana Demo"]
    assert any(e.get("file") == v1.name and "superseded" in e["reason"] for e in r.json_lines())
    r = maskgate("replay", CLIP, "--challenge", "blink", "--json", *gate, env=genv)
    assert not any(d["granted"] for d in _decisions(r))

    # 5. A stick with only the old roster cannot bring her back: refused, audited, exit 1.
    v2.unlink()
    r = maskgate("usb", stick, *gate, "--json", env=genv)
    assert r.returncode == 1
    assert any(e.get("usb") == "refused" and "not newer than version 3" in e["reason"] for e in r.json_lines())
    assert maskgate("templates", "list", "--json", *gate, env=genv).json_lines() == []

    # The report on the stick is the whole, verifiable audit log, as JSON lines and CSV; no images.
    assert verify_file(report / "audit.jsonl").ok
    entries = [json.loads(line) for line in (report / "audit.jsonl").read_text().splitlines()]
    events = [e["event"] for e in entries]
    assert "roster.add" in events and "roster.remove" in events and "decision" in events
    assert events[-1] == "roster.refused"   # taken after this stick's rosters were dealt with
    with open(report / "audit.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(entries) and rows[0]["seq"] == str(entries[0]["seq"])
    files = sorted(p.name for p in report.iterdir())
    assert files == ["audit.csv", "audit.jsonl", "diag.jsonl", "pubkey.txt", "result.json"]
    assert not any(p.suffix.lower() in (".jpg", ".png", ".mp4", ".npy") for p in stick.rglob("*"))
    assert maskgate("audit", "verify", *gate, env=genv).returncode == 0


# ---------------------------------------------------------------- the unit's script on a real block device

def _loop_ok() -> bool:
    import os

    return os.geteuid() == 0 and all(shutil.which(t) for t in ("losetup", "mkfs.ext4", "blkid", "mount", "debugfs"))


@pytest.mark.skipif(not _loop_ok() or not HAS_MODEL, reason="needs root, losetup, mkfs.ext4, debugfs (a loop device "
                    "stands in for the stick) and the embedder model")
def test_stick_script_mounts_read_only_until_a_valid_request(site: dict, tmp_path: Path) -> None:
    """scripts/maskgate-usb on a loop device holding an ext4 stick: a roster is imported while the stick
    stays read-only; with a trusted request it is remounted read-write and the report lands on it."""
    import os
    import subprocess
    import sys

    import numpy as np

    from edge.embed import load_spec
    from edge.roster import export
    from edge.vault import Vault, read_signing_key

    s = site
    pub = maskgate("templates", "pubkey", *s["gate"], env=s["gate_env"]).stdout.strip()
    station = Vault.open(s["tmp"] / "station", device_id="station-laptop")
    spec = load_spec()
    station.add("Ana", [np.eye(1, spec.dim, 0)[0]], "form", space=spec.space)
    data, _ = export(station, s["tmp"] / "station", pub, read_signing_key(s["key"]))
    content = tmp_path / "content"
    (content / "maskgate").mkdir(parents=True)
    (content / "maskgate" / "ana.roster").write_bytes(data)
    cmd = tmp_path / "maskgate-cmd"   # stands in for the wrapper: this checkout, the test's gate
    gate = " ".join(f"'{a}'" for a in s["gate"])
    cmd.write_text(f"#!/bin/sh\ncd {ROOT} && MASKGATE_DEVICE_ID=gate-at-the-door exec {sys.executable} -m edge.cli "
                   f"\"$@\" {gate}\n")
    cmd.chmod(0o755)

    def stick_run(populate: Path) -> tuple[subprocess.CompletedProcess, Path]:
        img = tmp_path / f"{populate.name}.img"
        subprocess.run(["mkfs.ext4", "-q", "-d", str(populate), str(img), "8M"], check=True)
        loop = subprocess.run(["losetup", "-f", "--show", str(img)], capture_output=True, text=True)
        if loop.returncode != 0:
            pytest.skip(f"no loop device here: {loop.stderr.strip()}")
        dev = loop.stdout.strip()
        try:
            r = subprocess.run(["bash", str(ROOT / "scripts/maskgate-usb"), Path(dev).name], capture_output=True,
                               text=True, timeout=300, env={**os.environ, "MASKGATE_USB_MOUNT": str(tmp_path / "mnt"),
                                                            "MASKGATE_CMD": str(cmd)})
        finally:
            subprocess.run(["losetup", "-d", dev], check=False)
        return r, img

    def on_stick(img: Path, folder: str) -> str:
        return subprocess.run(["debugfs", "-R", f"ls -l {folder}", str(img)], capture_output=True, text=True).stdout

    r, img = stick_run(content)
    assert r.returncode == 0, r.stderr
    assert "mounted read-only" in r.stderr and "remounted read-write" not in r.stderr and "done" in r.stderr
    assert [p.name for p in Vault.open(s["tmp"] / "gate", device_id="gate-at-the-door").people()] == ["Ana"]
    assert "from-gates" not in on_stick(img, "/maskgate")
    # with a trusted request: remounted read-write, the report written onto the stick
    assert maskgate("usb", content, "--request", "--sign-key", s["key"]).returncode == 0
    r, img = stick_run(content)
    assert r.returncode == 1, r.stderr            # the same roster again: refused as not newer
    assert "remounted read-write" in r.stderr and "done, with refusals" in r.stderr
    listing = on_stick(img, f"/maskgate/from-gates/{pub[:16]}")
    assert all(f in listing for f in ("audit.jsonl", "audit.csv", "diag.jsonl", "pubkey.txt", "result.json"))
    assert not (tmp_path / "mnt" / "maskgate").exists()      # unmounted


def _vfat() -> bool:
    return "\tvfat\n" in Path("/proc/filesystems").read_text()


@pytest.mark.skipif(not _loop_ok() or not _vfat() or not all(shutil.which(t) for t in ("mkfs.vfat", "mcopy", "setpriv")),
                    reason="needs root, losetup, a kernel with vfat, mkfs.vfat, mtools and setpriv (a loop device "
                    "stands in for the stick; scripts/test-image.sh runs it in the image)")
def test_a_fat_stick_is_found_by_the_script_holding_only_the_units_capabilities(site: dict, tmp_path: Path) -> None:
    """maskgate-usb@.service leaves root only CAP_SYS_ADMIN, CAP_SETUID and CAP_SETGID (no CAP_DAC_*): the
    FAT stick, mounted for the service user, must still let that root find maskgate/ on it (in the QEMU
    image a 0750 mount made every stick "not a maskgate stick")."""
    import os
    import subprocess
    import sys

    import numpy as np

    from edge.embed import load_spec
    from edge.roster import export
    from edge.vault import Vault, read_signing_key

    s = site
    unit = (ROOT / "systemd/maskgate-usb@.service").read_text()
    caps = [ln.split("=", 1)[1].split() for ln in unit.splitlines() if ln.startswith("CapabilityBoundingSet=")][0]
    assert caps == ["CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID"]
    pub = maskgate("templates", "pubkey", *s["gate"], env=s["gate_env"]).stdout.strip()
    station = Vault.open(s["tmp"] / "station", device_id="station-laptop")
    spec = load_spec()
    station.add("Ana", [np.eye(1, spec.dim, 0)[0]], "form", space=spec.space)
    data, _ = export(station, s["tmp"] / "station", pub, read_signing_key(s["key"]))
    (tmp_path / "ana.roster").write_bytes(data)
    img = tmp_path / "stick.img"
    subprocess.run(["mkfs.vfat", "-n", "MGSTICK", "-C", str(img), "8192"], check=True, capture_output=True)
    subprocess.run(["mmd", "-i", str(img), "::maskgate"], check=True)
    subprocess.run(["mcopy", "-i", str(img), str(tmp_path / "ana.roster"), "::maskgate/"], check=True)
    cmd = tmp_path / "maskgate-cmd"
    gate = " ".join(f"'{a}'" for a in s["gate"])
    cmd.write_text(f"#!/bin/sh\ncd {ROOT} && MASKGATE_DEVICE_ID=gate-at-the-door exec {sys.executable} -m edge.cli "
                   f"\"$@\" {gate}\n")
    cmd.chmod(0o755)
    loop = subprocess.run(["losetup", "-f", "--show", str(img)], capture_output=True, text=True)
    if loop.returncode != 0:
        pytest.skip(f"no loop device here: {loop.stderr.strip()}")
    dev = loop.stdout.strip()
    bounding = "-all," + ",".join("+" + c[4:].lower() for c in caps)
    try:
        r = subprocess.run(["setpriv", "--bounding-set", bounding, "--inh-caps", "-all", "--",
                            "bash", str(ROOT / "scripts/maskgate-usb"), Path(dev).name],
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, "MASKGATE_USB_MOUNT": str(tmp_path / "mnt"), "MASKGATE_CMD": str(cmd),
                                "MASKGATE_USER": "nobody"})
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
    assert r.returncode == 0, r.stderr
    assert "maskgate stick mounted read-only (vfat)" in r.stderr and "done" in r.stderr, r.stderr
    assert [p.name for p in Vault.open(s["tmp"] / "gate", device_id="gate-at-the-door").people()] == ["Ana"]


# ---------------------------------------------------------------- "done" on the door's LED and buzzer

def _pulses(pin) -> list[float]:
    """The lengths of the pin's on periods, from gpiozero's mock pin history."""
    on, out = None, []
    t = 0.0
    for st in pin.states:
        t += st.timestamp
        if st.state and on is None:
            on = t
        elif not st.state and on is not None:
            out.append(t - on)
            on = None
    return out


def test_a_stick_dealt_with_says_done_on_the_led_and_buzzer_through_the_keeper(site: dict) -> None:
    """The keeper owns the LED and the buzzer; `maskgate usb` asks it to play "done" once the stick is
    synced, and "denied" when something on the stick was refused."""
    import threading

    from gpiozero.pins.mock import MockFactory

    from edge.config import Config, replace
    from edge.events import stream_line
    from edge.keeper import Keeper, KeeperDoor

    s = site
    state = s["tmp"] / "gate"
    state.mkdir(mode=0o700)
    factory = MockFactory()
    keeper = Keeper(replace(Config(), "door", led_pin=22, buzzer_pin=23), state, pin_factory=factory)
    t = threading.Thread(target=keeper.serve, daemon=True)
    t.start()
    led, buzzer = factory.pin(22), factory.pin(23)
    seen: list[dict] = []
    watcher = KeeperDoor(keeper.path)
    watcher.on_event(seen.append, every_s=0.1)   # as the daemon's screen follows the keeper
    try:
        assert maskgate("usb", s["stick"], "--request", "--sign-key", s["key"]).returncode == 0
        led.clear_states()
        r = maskgate("usb", s["stick"], *s["gate"], "--json", env=s["gate_env"])
        assert r.returncode == 0, r.stderr
        assert r.json_lines()[-1]["led"] == "done"
        time.sleep(2.0)   # the pattern lasts 1.5 s
        on = _pulses(led)
        assert len(on) == 2 and all(0.5 <= d <= 0.8 for d in on), on
        assert len(_pulses(buzzer)) == 2 and led.state is False and buzzer.state is False
        # the daemon's screen is told (Follower.door_event shows "USB stick done"); the event stream is not
        assert seen.count({"event": "stick", "action": "done"}) == 1, seen
        assert stream_line(seen[-1], "gate", False) is None

        stranger = s["tmp"] / "stranger.key"
        maskgate("templates", "keygen", "--out", stranger)
        assert maskgate("usb", s["stick"], "--request", "--sign-key", stranger).returncode == 0
        led.clear_states()
        assert maskgate("usb", s["stick"], *s["gate"], env=s["gate_env"]).returncode == 1
        time.sleep(1.2)
        on = _pulses(led)
        assert len(on) == 3 and all(d < 0.3 for d in on), on   # denied: three short beeps
    finally:
        watcher.close()
        keeper.stop.set()
        t.join(5)
        keeper.close()
    # without a keeper (a station, a bench) the stick is dealt with all the same
    r = maskgate("usb", s["stick"], *s["gate"], env=s["gate_env"])
    assert r.returncode == 1 and "done, with refusals" in r.stdout and "no door keeper" in r.stdout, r.stdout
