"""What residents see and hear: catalogues, screens, the framebuffer, the follower, sounds, diag."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from edge.config import Config, replace
from edge.display import messages as M
from edge.display.backends import FramebufferDisplay, pack
from edge.display.follow import Follower
from edge.display.i18n import LANGUAGES, po_path, translator
from edge.display.messages import Screen
from edge.display.render import CJK_FONTS, Renderer
from edge.errors import ConfigError
from tests.conftest import ROOT, Quiet, maskgate

HAVE_CJK = any(Path(p).is_file() for p in CJK_FONTS)
needs_cjk = pytest.mark.skipif(not HAVE_CJK, reason="no CJK font (apt install fonts-wqy-microhei)")


def every_screen(name: str | None = "李明") -> list[Screen]:
    out = [Screen(k) for k in M.KINDS if k not in ("challenge", "denied", "welcome", "lockout", "claim_read")]
    out += [Screen("claim_read", reason=r) for r in M.CLAIM_READ]
    out += [Screen("challenge", step=s, n=1, total=2, seconds=4) for s in M.STEP_TEXT]
    out += [Screen("denied", reason=r) for r in M.DENIED]
    out += [Screen("welcome"), Screen("welcome", name=name), Screen("lockout", seconds=75),
            Screen("lockout", seconds=9)]
    return out


def msgids() -> set[str]:
    src = (ROOT / "edge" / "display" / "messages.py").read_text()
    return {m for m in re.findall(r'N_\("((?:[^"\\]|\\.)*)"\)', src)}


def po_entries(lang: str) -> dict[str, str]:
    from babel.messages.pofile import read_po

    with po_path(lang).open("rb") as f:
        return {m.id: m.string for m in read_po(f) if m.id}


# ---- catalogues ----

@pytest.mark.parametrize("lang", LANGUAGES)
def test_catalogues_translate_every_message(lang: str) -> None:
    ids, po = msgids(), po_entries(lang)
    assert len(ids) >= 25
    assert ids == set(po), (ids ^ set(po))
    assert all(po[i] for i in ids), [i for i in ids if not po[i]]
    for i in ids:   # placeholders survive translation
        assert set(re.findall(r"{\w+}", i)) == set(re.findall(r"{\w+}", po[i])), i
    if lang == "zh_CN":
        assert all(re.search(r"[\u4e00-\u9fff]", po[i]) for i in ids)


@needs_cjk
def test_no_resident_facing_string_escapes_the_catalogue() -> None:
    """Every word drawn on a Chinese screen is Chinese: nothing reached the screen without the catalogue."""
    r = Renderer((800, 480), "zh_CN", translator("zh_CN"))
    for s in every_screen():
        r.render(s)
        assert r.drawn, s
        for text in r.drawn:
            assert not re.search(r"[A-Za-z]", text), (s, text)


def test_renderer_looks_up_only_catalogue_constants() -> None:
    """tr() is only ever called on a name from edge.display.messages, never on a literal string."""
    for path in (ROOT / "edge" / "display").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in ("tr", "gettext"):
                for a in node.args:
                    assert not isinstance(a, (ast.Constant, ast.JoinedStr)), f"{path.name}:{node.lineno}"


def test_unknown_language_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="display.language"):
        translator("fr")


# ---- screens ----

@needs_cjk
@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_screen_renders_distinctly_in_both_languages(lang: str) -> None:
    r = Renderer((800, 480), lang, translator(lang))
    images = [r.render(s) for s in every_screen()]
    for s, img in zip(every_screen(), images):
        assert img.shape == (480, 800, 3) and img.dtype == np.uint8
        bright = (img.max(axis=2) > 128).mean()
        assert 0.02 < bright < 0.5, (s, bright)         # text and icon on a dark screen
    flat = [img.tobytes() for img in images]
    assert len(set(flat)) == len(flat)                   # no two screens look alike


def test_demo_tour_holds_every_screen() -> None:
    """maskgate demo --display and the screenshots show every kind, step, denial and claim read."""
    from edge.display.demo import TOUR

    assert {s.kind for s in TOUR} == set(M.KINDS)
    assert {s.step for s in TOUR if s.kind == "challenge"} == set(M.STEP_TEXT)
    assert {s.reason for s in TOUR if s.kind == "denied"} == set(M.DENIED)
    assert {s.reason for s in TOUR if s.kind == "claim_read"} == set(M.CLAIM_READ)


@needs_cjk
def test_screenshots_are_current_for_every_screen_in_both_languages(tmp_path: Path) -> None:
    """docs/screens holds a screenshot of every screen of the tour in each language, and each is what
    the renderer draws today (python docs/screens/render.py regenerates them)."""
    import importlib.util

    from PIL import Image

    spec = importlib.util.spec_from_file_location("screenshots", ROOT / "docs" / "screens" / "render.py")
    shots = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shots)
    assert shots.main(["--out", str(tmp_path)]) == 0
    made = sorted(p.name for p in tmp_path.glob("*.png"))
    from edge.display.demo import TOUR

    assert len(made) == len(TOUR) * len(LANGUAGES)
    for lang in LANGUAGES:
        assert sum(n.startswith(f"{lang}-") for n in made) == len(TOUR)
    stale = []
    for n in made:
        kept = ROOT / "docs" / "screens" / n
        if not kept.is_file() or not np.array_equal(np.asarray(Image.open(kept).convert("RGB")),
                                                    np.asarray(Image.open(tmp_path / n).convert("RGB"))):
            stale.append(n)
    assert not stale, f"run python docs/screens/render.py: {stale}"


@needs_cjk
def test_outcomes_differ_in_shape_not_only_colour() -> None:
    """Welcome and denied stay distinguishable in greyscale (colour is never the only signal)."""
    r = Renderer((800, 480), "en", translator("en"))
    grey = [r.render(Screen(k, reason="not_recognised")).mean(axis=2)[30:230] for k in ("welcome", "denied")]
    a, b = (g > 60 for g in grey)
    assert (a ^ b).mean() > 0.01


def test_name_only_with_show_name() -> None:
    cfg = replace(Config(), "display", show_name=False)
    f, shown = follower(cfg)
    f.event({"t": 1.0, "event": "decision", "granted": True, "who": "Ann Lee", "score": 0.9, "reason": "ok"})
    assert shown[-1] == Screen("welcome")
    f, shown = follower(replace(Config(), "display", show_name=True))
    f.event({"t": 1.0, "event": "decision", "granted": True, "who": "Ann Lee", "score": 0.9, "reason": "ok"})
    assert shown[-1] == Screen("welcome", name="Ann Lee")


# ---- the follower: gate states to screens ----

class Recorder:
    def __init__(self) -> None:
        self.size = (320, 192)
        self.screens: list[Screen] = []

    def show(self, rgb: np.ndarray) -> None:
        pass

    def close(self) -> None:
        pass


class ScreenSpy:
    """A renderer stand-in that records the screens asked for (the real one is tested above)."""

    def __init__(self, into: list) -> None:
        self.into = into

    def render(self, screen: Screen, preview=None) -> np.ndarray:
        self.into.append(screen)
        return np.zeros((192, 320, 3), np.uint8)


class Beeps(list):
    def play(self, *names: str) -> None:
        self.append("+".join(names))

    def close(self) -> None:
        pass


def follower(cfg: Config | None = None):
    shown: list[Screen] = []
    f = Follower(cfg or Config(), Recorder(), ScreenSpy(shown), Beeps())
    return f, shown


def test_follower_walks_through_an_approach() -> None:
    f, shown = follower()
    f.frame(0.0, [], "idle")
    assert shown[-1] == Screen("idle")
    f.event({"t": 0.5, "event": "tracking"})
    assert shown[-1] == Screen("checking")
    f.event({"t": 0.6, "event": "challenge", "steps": ["blink", "turn-left"]})
    f.event({"t": 1.0, "event": "challenge", "step": "blink"})
    assert shown[-1] == Screen("challenge", step="blink", n=1, total=2, seconds=3)
    f.frame(2.1, [], "challenge")
    assert shown[-1].seconds == 2                       # the countdown runs on frame time
    f.event({"t": 2.2, "event": "challenge", "step": "turn-left"})
    assert shown[-1] == Screen("challenge", step="turn-left", n=2, total=2, seconds=6)
    f.event({"t": 4.0, "event": "liveness", "passed": True})
    assert shown[-1] == Screen("checking")
    f.event({"t": 4.3, "event": "decision", "granted": False, "who": None, "score": 0.2, "reason": "not recognised"})
    assert shown[-1] == Screen("denied", reason="not_recognised")
    assert f.player == ["tick+say:blink", "tick+say:turn-left", "denied+say:denied-not_recognised"]
    f.frame(5.0, [], "cooldown")
    assert shown[-1].kind == "denied"                   # stays up for display.result_s
    f.frame(7.5, [], "idle")
    assert shown[-1] == Screen("idle")


def test_claim_mode_asks_for_the_card_first_and_says_it_was_read() -> None:
    cfg = replace(Config(), "match", mode="claim")
    f, shown = follower(cfg)
    f.frame(0.0, [], "idle")
    assert shown[-1] == Screen("claim")
    f.event({"t": 0.5, "event": "tracking"})                 # a face, but no card yet: say what is needed
    assert f.player == ["say:claim"] and shown[-1] == Screen("claim")
    f.event({"t": 0.7, "event": "waiting", "on": "claim"})   # the gate holds the challenge for the card
    assert shown[-1] == Screen("claim")
    f.event({"t": 0.9, "event": "decision", "granted": False, "who": None, "score": None,
             "reason": "no card or PIN presented (match.mode = claim)"})
    assert shown[-1] == Screen("denied", reason="claim_needed")
    f.event({"t": 1.2, "event": "claim", "claim": "card 1001", "source": "keyboard"})
    assert shown[-1] == Screen("claim_read", reason="card") and f.player[-1] == "tick"   # the denial gives way
    f.frame(2.0, [], "idle")
    assert shown[-1] == Screen("claim_read", reason="card")
    f.event({"t": 2.5, "event": "tracking"})
    assert f.player[-1] == "tick"                            # the card is read: no card prompt
    f.event({"t": 4.0, "event": "decision", "granted": False, "who": None, "score": 0.3,
             "reason": "face does not match the card's holder", "claim": "card 1001"})
    assert shown[-1] == Screen("denied", reason="card_mismatch")
    assert f.player[-1] == "denied+say:denied-card_mismatch"
    f.frame(8.0, [], "idle")
    assert shown[-1] == Screen("claim")                      # the claim was used up by that decision
    f.event({"t": 9.0, "event": "claim", "claim": "PIN", "source": "keyboard"})
    assert shown[-1] == Screen("claim_read", reason="pin")
    f.event({"t": 40.0, "event": "claim", "claim": "PIN", "expired": True})
    assert shown[-1] == Screen("claim")
    f.event({"t": 41.0, "event": "claim", "claim": "card 7", "source": "keyboard", "ignored": "locked out"})
    assert shown[-1] == Screen("claim")
    f, shown = follower(replace(Config(), "match", mode="either"))   # the face alone may do: idle as ever
    f.frame(0.0, [], "idle")
    assert shown[-1] == Screen("idle")
    f.event({"t": 0.2, "event": "claim", "claim": "card 1001", "source": "wiegand-26"})
    assert shown[-1] == Screen("claim_read", reason="card")


@pytest.mark.parametrize("reason,key", [("liveness: timeout", "challenge"),
                                        ("liveness: flat object (landmarks move as one plane)", "challenge"),
                                        ("liveness: face lost", "moved"),
                                        ("two faces: one person at a time", "one_person"),
                                        ("not recognised", "not_recognised"),
                                        ("no card or PIN presented (match.mode = claim)", "claim_needed"),
                                        ("wrong PIN", "pin_wrong"),
                                        ("unknown card", "card_unknown"),
                                        ("face does not match the card's holder", "card_mismatch"),
                                        ("face does not match the PIN's holder", "pin_mismatch"),
                                        ("card of someone not allowed in now (expired or past retention)",
                                         "card_invalid"),
                                        ("PIN of someone not allowed in now (expired or past retention)",
                                         "pin_invalid"),
                                        ("door: keeper unreachable", "fault"),
                                        ("outside this person's access hours", "not_allowed")])
def test_denials_in_plain_words(reason: str, key: str) -> None:
    assert M.denial(reason) == key


def test_a_usb_stick_dealt_with_is_shown_then_the_screen_goes_back() -> None:
    f, shown = follower()
    f.frame(3.0, [], "idle")
    f.door_event({"event": "stick", "action": "done"})     # the keeper played "done" for edge.usb
    assert shown[-1] == Screen("stick_done")
    f.frame(4.0, [], "idle")
    assert shown[-1] == Screen("stick_done")                # stays up for display.result_s
    f.frame(9.0, [], "idle")
    assert shown[-1] == Screen("idle")


def test_lockout_counts_down_and_faults_and_held_door_show() -> None:
    f, shown = follower()
    f.event({"t": 10.0, "event": "decision", "granted": False, "who": None, "score": None, "reason": "liveness: timeout"})
    f.event({"t": 10.0, "event": "alarm", "kind": "lockout", "failures": 5, "seconds": 60.0})
    assert shown[-1] == Screen("lockout", seconds=60)
    f.frame(40.2, [], "lockout")
    assert shown[-1] == Screen("lockout", seconds=30)
    f.frame(70.5, [], "idle")
    assert shown[-1] == Screen("idle")
    f.door_event({"event": "alarm", "alarm": "held_open", "active": True, "seconds": 30})
    assert shown[-1] == Screen("held_open")
    f.frame(71.0, [], "idle")
    assert shown[-1] == Screen("held_open")
    f.door_event({"event": "alarm", "alarm": "held_open", "active": False})
    assert shown[-1] == Screen("idle")
    f.event({"t": 80.0, "event": "decision", "granted": False, "who": None, "score": None,
             "reason": "gate fault: no embedder"})
    assert shown[-1] == Screen("fault")


def test_too_far_too_close_one_person_from_real_faces() -> None:
    from edge.camera.replay import ReplaySource
    from edge.vision import landmarks
    from tests.conftest import FIXTURES
    import cv2

    src = ReplaySource(FIXTURES / "d12.mp4")
    img = src.read().image
    src.close()
    small = cv2.resize(img, None, fx=0.3, fy=0.3)
    far_img = np.zeros_like(img)
    far_img[:small.shape[0], :small.shape[1]] = small

    def detect(image: np.ndarray) -> list:
        with landmarks.for_video(max_faces=2) as lm:   # a fresh mesh per image: no tracking carried between them
            return lm.detect(image)

    near, far, pair = detect(img), detect(far_img), detect(np.concatenate([img, img], axis=1))
    assert near and far and len(pair) == 2
    f, shown = follower()
    f.frame(0.0, near, "idle", img)
    assert shown[-1] == Screen("idle")
    f.frame(0.1, far, "idle", far_img)
    assert shown[-1] == Screen("too_far")
    f.frame(0.2, pair, "idle", np.concatenate([img, img], axis=1))
    assert shown[-1] == Screen("one_person")
    f.frame(0.3, near, "idle", img[:, : img.shape[1] // 3 + 1])   # the same face in a narrow view
    assert shown[-1] == Screen("too_close")


# ---- the framebuffer ----

@pytest.mark.parametrize("bpp", [16, 24, 32])
def test_file_backed_framebuffer_holds_the_screen(tmp_path: Path, bpp: int) -> None:
    fb = tmp_path / "fb0"
    fb.write_bytes(b"\0" * (320 * 192 * bpp // 8))
    disp = FramebufferDisplay(str(fb), 320, 192, bpp)
    img = Renderer(disp.size, "en", translator("en")).render(Screen("denied", reason="not_recognised"))
    disp.show(img)
    disp.close()
    raw = np.frombuffer(fb.read_bytes(), np.uint8).reshape(192, -1)
    assert np.array_equal(raw, pack(img, bpp))
    if bpp == 32:   # BGRX, little-endian XRGB8888: pixel (x, y) is at 4 * (y * w + x)
        px = raw.reshape(192, 320, 4)
        assert np.array_equal(px[..., 2::-1], img) and (px[..., 3] == 255).all()
    back = FramebufferDisplay(str(fb), 320, 192, bpp).read()
    assert np.abs(back.astype(int) - img).max() <= (7 if bpp == 16 else 0)


def test_framebuffer_geometry_from_sysfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.display import backends

    sys_fb = tmp_path / "sys" / "fb7"
    sys_fb.mkdir(parents=True)
    (sys_fb / "virtual_size").write_text("200,100\n")
    (sys_fb / "bits_per_pixel").write_text("16\n")
    (sys_fb / "stride").write_text("448\n")                 # rows padded to 448 bytes (224 px)
    monkeypatch.setattr(backends, "SYSFS", tmp_path / "sys")
    assert backends.sysfs_geometry("/dev/fb7") == (200, 100, 16, 448)
    with pytest.raises(ConfigError, match="display.width"):
        FramebufferDisplay(str(tmp_path / "nothing"))


def test_framebuffer_without_geometry_or_device_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open framebuffer"):
        FramebufferDisplay(str(tmp_path / "missing"), 10, 10, 16)


# ---- the gate drives the screen ----

def test_the_demo_gate_drives_a_framebuffer(tmp_path: Path) -> None:
    """The real demo (enrolment, gate, blink, grant) with a file-backed framebuffer attached: the
    screens it wrote, read back from the file, are the real renderer's checking, blink and welcome."""
    from edge.commands import demo

    fb = tmp_path / "fb0"
    fb.write_bytes(b"\0" * (320 * 192 * 4))
    cfg = replace(Config(), "display", backend="framebuffer", device=str(fb), width=320, height=192,
                  bits_per_pixel=32)
    cfg = replace(cfg, "sound", enabled=False)

    class Watching(FramebufferDisplay):
        seen: list[bytes] = []

        def show(self, rgb: np.ndarray) -> None:
            super().show(rgb)
            self.seen.append(self.read().tobytes())

    disp = Watching(str(fb), 320, 192, 32)
    assert demo.demo(cfg, Quiet(), display=disp) == 0
    disp.close()
    r = Renderer((320, 192), "en", translator("en"))
    for s in (Screen("checking"), Screen("challenge", step="blink", n=1, total=1, seconds=3), Screen("welcome")):
        assert r.render(s).tobytes() in disp.seen, s
    assert r.render(Screen("welcome", name="demo-person")).tobytes() not in disp.seen   # show_name off


# ---- sound (through real ALSA: tests/test_sound.py) ----

def test_tones_are_real_wavs_with_volume() -> None:
    import io
    import wave

    from edge import sound

    loud = sound.Player(replace(Config(), "sound", volume=1.0).sound).clip("granted")
    soft = sound.Player(replace(Config(), "sound", volume=0.2).sound).clip("granted")
    low = sound.Player(Config().sound).clip("denied")
    with wave.open(io.BytesIO(loud)) as w:
        assert w.getframerate() == sound.RATE and w.getnchannels() == 1 and w.getnframes() > sound.RATE * 0.4
        a = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    with wave.open(io.BytesIO(soft)) as w:
        b = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert abs(np.abs(b).max() / np.abs(a).max() - 0.2) < 0.02
    with wave.open(io.BytesIO(low)) as w:   # the denied tone is low: few zero crossings
        c = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(float)
        crossings = np.sum(np.diff(np.sign(c)) != 0) / (w.getnframes() / sound.RATE) / 2
    assert 150 < crossings < 300


# ---- diag ----

def test_diag_display_fails_for_the_window_prompt_on_headless_opencv(tmp_path: Path) -> None:
    from edge.liveness import gui_available

    cfg = tmp_path / "c.toml"
    cfg.write_text('[liveness]\nprompt = "window"\n')
    r = maskgate("diag", "display", "--json", "--config", cfg, "--state", tmp_path / "s")
    line = r.json_lines()[0]
    if gui_available():
        pytest.skip("this OpenCV has a GUI")
    assert line["status"] == "fail" and "headless" in line["detail"] and "framebuffer" in line["hint"]
    assert r.returncode == 1


def test_diag_display_draws_into_the_framebuffer(tmp_path: Path) -> None:
    fb = tmp_path / "fb0"
    fb.write_bytes(b"\x07" * (64 * 48 * 2))
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[display]\nbackend = "framebuffer"\ndevice = "{fb}"\nwidth = 64\nheight = 48\n'
                   'bits_per_pixel = 16\n')
    r = maskgate("diag", "display", "sound", "--json", "--config", cfg, "--state", tmp_path / "s")
    by = {x["check"]: x for x in r.json_lines()}
    assert by["display"]["status"] == "ok" and "64x48" in by["display"]["detail"], by
    assert fb.read_bytes() == b"\x07" * (64 * 48 * 2)        # what was on the screen is put back
    assert by["sound"]["status"] in ("ok", "warn")
    cfg.write_text(f'[display]\nbackend = "framebuffer"\ndevice = "{tmp_path / "none"}"\n')
    r = maskgate("diag", "display", "--json", "--config", cfg, "--state", tmp_path / "s")
    line = r.json_lines()[0]
    assert line["status"] == "fail" and "display.width" in line["detail"]


# ---- the window, on a real X server ----

def xwd_rgb(data: bytes) -> np.ndarray:
    """The pixels of an XWD image (the screen file Xvfb keeps with -fbdir) as RGB, decoded through
    the header's own masks and byte order."""
    import struct

    h = struct.unpack(">25I", data[:100])
    header_size, pixmap_format, width, height, byte_order, bpp, bpl = h[0], h[2], h[4], h[5], h[7], h[11], h[12]
    assert pixmap_format == 2 and bpp == 32, h[:12]          # ZPixmap, 32 bits a pixel (depth 24)
    offset = header_size + h[19] * 12                          # after the colour map
    px = np.frombuffer(data, "<u4" if byte_order == 0 else ">u4", count=bpl // 4 * height,
                       offset=offset).reshape(height, bpl // 4)[:, :width]
    chans = []
    for mask in h[14:17]:
        shift = (mask & -mask).bit_length() - 1
        chans.append(((px & mask) >> shift).astype(np.uint8))
    return np.stack(chans, -1)


def test_demo_window_appears_on_a_real_x_server(tmp_path: Path) -> None:
    """``maskgate demo --display window`` under Xvfb (a real X server, not SDL's dummy driver): the
    X server's own screen memory, read while the demo runs, holds each screen of the tour pixel for
    pixel as the renderer draws it, in a window filling the 800x480 screen."""
    import os
    import select
    import subprocess
    import sys

    from conftest import need
    from edge.display.demo import TOUR

    xvfb = need("Xvfb", "xvfb")
    pytest.importorskip("pygame", reason="pygame is missing (bash scripts/setup.sh installs it)")
    r, w = os.pipe()
    server = subprocess.Popen([xvfb, "-displayfd", str(w), "-screen", "0", "800x480x24", "-fbdir", str(tmp_path),
                               "-nolisten", "tcp", "-br"], pass_fds=(w,), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    os.close(w)
    demo = None
    try:
        assert select.select([r], [], [], 30)[0], "Xvfb did not start"
        number = os.read(r, 16).decode().strip()
        screen_file = tmp_path / "Xvfb_screen0"
        blank = xwd_rgb(screen_file.read_bytes())
        assert blank.shape == (480, 800, 3) and not blank.any()   # -br: a black root, no window yet
        env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
        env.update(DISPLAY=f":{number}", SDL_VIDEODRIVER="x11")
        log = (tmp_path / "demo.out").open("w")
        demo = subprocess.Popen([sys.executable, "-m", "edge.cli", "demo", "--display", "window", "--pause", "0.8"],
                                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        renderer = Renderer((800, 480), "en", translator("en"))
        want = {renderer.render(s).tobytes(): s for s in TOUR}
        seen: set = set()
        frames = 0
        while demo.poll() is None:
            now = xwd_rgb(screen_file.read_bytes()).tobytes()
            frames += 1
            if now in want:
                seen.add(want[now])
            select.select([], [], [], 0.05)
        out = (tmp_path / "demo.out").read_text()
        assert demo.returncode == 0, out
        assert "ACCESS GRANTED" in out
        missing = [s for s in TOUR if s not in seen]
        assert not missing, (missing, frames)
    finally:
        if demo is not None and demo.poll() is None:
            demo.kill()
            demo.wait()
        server.terminate()
        server.wait(timeout=10)
        os.close(r)
