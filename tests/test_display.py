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
from tests.conftest import ROOT, maskgate

HAVE_CJK = any(Path(p).is_file() for p in CJK_FONTS)
needs_cjk = pytest.mark.skipif(not HAVE_CJK, reason="no CJK font (apt install fonts-wqy-microhei)")


def every_screen(name: str | None = "李明") -> list[Screen]:
    out = [Screen(k) for k in M.KINDS if k not in ("challenge", "denied", "welcome", "lockout")]
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
    def play(self, name: str) -> None:
        self.append(name)

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
    assert f.player == ["tick", "say:Please blink", "tick", "say:" + M.STEP_TEXT["turn-left"], "denied"]
    f.frame(5.0, [], "cooldown")
    assert shown[-1].kind == "denied"                   # stays up for display.result_s
    f.frame(7.5, [], "idle")
    assert shown[-1] == Screen("idle")


@pytest.mark.parametrize("reason,key", [("liveness: timeout", "challenge"),
                                        ("liveness: flat object (landmarks move as one plane)", "challenge"),
                                        ("liveness: face lost", "moved"),
                                        ("two faces: one person at a time", "one_person"),
                                        ("not recognised", "not_recognised"),
                                        ("no card or PIN presented (match.mode = claim)", "claim_needed"),
                                        ("wrong PIN", "claim_refused"),
                                        ("face does not match Ann", "not_recognised"),
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
    from edge.vision.landmarks import Landmarker
    from tests.conftest import FIXTURES
    import cv2

    src = ReplaySource(FIXTURES / "d12.mp4")
    img = src.read().image
    src.close()
    small = cv2.resize(img, None, fx=0.3, fy=0.3)
    far_img = np.zeros_like(img)
    far_img[:small.shape[0], :small.shape[1]] = small

    def detect(image: np.ndarray) -> list:
        with Landmarker(2) as lm:   # a fresh mesh per image: no tracking carried between them
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
    from edge import gate

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

    class Quiet:
        json = True

        def event(self, *a, **k) -> None:
            pass

        def text(self, line: str) -> None:
            pass

    disp = Watching(str(fb), 320, 192, 32)
    assert gate.demo(cfg, Quiet(), display=disp) == 0
    disp.close()
    r = Renderer((320, 192), "en", translator("en"))
    for s in (Screen("checking"), Screen("challenge", step="blink", n=1, total=1, seconds=3), Screen("welcome")):
        assert r.render(s).tobytes() in disp.seen, s
    assert r.render(Screen("welcome", name="demo-person")).tobytes() not in disp.seen   # show_name off


# ---- sound ----

def test_sound_is_silent_without_a_card(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from edge import sound

    monkeypatch.setattr(sound, "CARDS", tmp_path / "cards")
    p = sound.Player(Config().sound)
    assert not p.enabled
    p.play("granted")   # nothing to play on: no error, no process
    assert p._procs == []
    (tmp_path / "cards").write_text("--- no soundcards ---\n")
    assert not sound.sound_card()
    (tmp_path / "cards").write_text(" 0 [vc4hdmi0      ]: vc4-hdmi - vc4-hdmi-0\n")
    assert sound.sound_card()


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


def test_player_plays_through_aplay_when_a_card_exists(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With a card listed, a tone goes to ``aplay -D device -`` as a WAV on its stdin."""
    import os
    import stat

    from edge import sound

    fake = tmp_path / "aplay"      # stands in for the ALSA tool only: records what it was given
    log = tmp_path / "got"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {log}.args\ncat > {log}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "cards").write_text(" 0 [Device]: USB-Audio - USB Audio Device\n")
    monkeypatch.setattr(sound, "CARDS", tmp_path / "cards")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    p = sound.Player(replace(Config(), "sound", device="plughw:1").sound)
    assert p.enabled
    p.play("tick")
    p.close()
    assert log.read_bytes()[:4] == b"RIFF"
    assert "-D plughw:1 -" in Path(f"{log}.args").read_text()


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
