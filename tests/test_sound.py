"""What residents hear, through the real ``aplay`` and ALSA: no sound card is needed, ALSA's own
``file`` plugin over its ``null`` PCM (a ``~/.asoundrc`` in a temporary HOME) writes whatever is
played, as raw samples, to a file the test reads back. And with no ALSA device, or no aplay, the gate
runs silently after one log line."""

from __future__ import annotations

import io
import logging
import wave
from pathlib import Path

import numpy as np
import pytest

from conftest import Quiet, need
from edge import sound
from edge.config import Config, replace
from edge.display.i18n import LANGUAGES

PERIOD_PAD_S = 0.25   # aplay fills its last period with silence: at most this much after the sound


@pytest.fixture
def alsa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """ALSA's default PCM captures into a file: the path of the raw S16_LE samples of the last play."""
    need("aplay", "alsa-utils")
    home = tmp_path / "home"
    home.mkdir()
    capture = tmp_path / "capture.raw"
    (home / ".asoundrc").write_text(
        f'pcm.!default {{\n  type file\n  slave.pcm "null"\n  file "{capture}"\n  format "raw"\n}}\n')
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("ALSA_CONFIG_PATH", raising=False)
    return capture


def samples(wav_bytes: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(wav_bytes)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), "<i2"), w.getframerate()


def played(player: sound.Player, name: str, capture: Path) -> np.ndarray:
    """Play ``name`` to the end through aplay; the samples ALSA received."""
    if capture.exists():
        capture.unlink()
    player.play(name)
    player.close()
    assert capture.exists(), f"aplay never opened the PCM for {name}"
    return np.frombuffer(capture.read_bytes(), "<i2")


def dominant_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x.astype(float) * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spec.argmax()])


def assert_is(got: np.ndarray, want: np.ndarray, rate: int) -> None:
    """``got`` is exactly ``want``, then at most a period of silence."""
    assert len(got) >= len(want), (len(got), len(want))
    assert np.array_equal(got[:len(want)], want)
    assert not got[len(want):].any() and len(got) - len(want) <= PERIOD_PAD_S * rate


def test_chime_low_tone_and_tick_reach_alsa(alsa: Path) -> None:
    p = sound.Player(replace(Config(), "sound", volume=1.0).sound)
    assert p.enabled, p.why
    assert not alsa.exists() or alsa.stat().st_size == 0   # opening the device played nothing
    for name, secs in (("granted", 0.52), ("denied", 0.45), ("tick", 0.03)):
        want, rate = samples(p.clip(name))
        got = played(p, name, alsa)
        assert_is(got, want, rate)
        assert abs(len(want) / rate - secs) < 0.01, name
        rms = np.sqrt(np.mean(got[:len(want)].astype(float) ** 2))
        assert rms > 0.3 * 32767, (name, rms)              # loud, not silence
    chime = played(p, "granted", alsa)
    assert abs(dominant_hz(chime[:int(0.1 * rate)], rate) - 880) < 20       # rising: 880 Hz first,
    assert abs(dominant_hz(chime[int(0.32 * rate):int(0.5 * rate)], rate) - 1568) < 20   # 1568 Hz last
    low = played(p, "denied", alsa)
    assert abs(dominant_hz(low[:int(0.45 * rate)], rate) - 220) < 10


def test_volume_scales_what_alsa_receives(alsa: Path) -> None:
    peaks = {}
    for volume in (1.0, 0.5, 0.1):
        p = sound.Player(replace(Config(), "sound", volume=volume).sound)
        got = played(p, "denied", alsa)
        peaks[volume] = np.abs(got.astype(int)).max()
    assert peaks[1.0] > 32000
    assert abs(peaks[0.5] / peaks[1.0] - 0.5) < 0.01 and abs(peaks[0.1] / peaks[1.0] - 0.1) < 0.01


def test_spoken_prompts_play_from_the_rendered_files_only(alsa: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    need("espeak-ng", "espeak-ng")
    models = tmp_path / "models"
    monkeypatch.setenv("MASKGATE_MODELS", str(models))
    cfg = replace(Config(), "sound", spoken=True, volume=0.5).sound
    # Not rendered: speech is silent, said once, and the tones still play.
    p = sound.Player(cfg, "zh_CN")
    with caplog.at_level(logging.INFO, logger="edge.sound"):
        if alsa.exists():
            alsa.unlink()
        p.play("say:blink")
        p.play("say:turn-left")
        p.close()
        assert not alsa.exists()
        assert len(played(p, "tick", alsa)) > 0
    said = [r.getMessage() for r in caplog.records if r.name == "edge.sound"]
    assert len(said) == 1 and "not rendered" in said[0] and "install.sh" in said[0], said
    # Rendered (as install.sh does): the file's samples, scaled by the volume, reach ALSA.
    sound.render(models / "sounds")
    for lang in LANGUAGES:
        p = sound.Player(cfg, lang)
        want, rate = samples(sound.prompt_path(lang, "blink").read_bytes())
        got = played(p, "say:blink", alsa)
        assert_is(got, (want.astype(float) * 0.5).round().astype("<i2"), rate)
        assert len(want) / rate > 0.5 and np.abs(got).max() > 1000
    off = sound.Player(replace(Config(), "sound", spoken=False).sound, "en")
    alsa.unlink()
    off.play("say:blink")
    off.close()
    assert not alsa.exists()                                  # sound.spoken = false: never spoken


def test_outcome_then_its_words_in_one_stream_and_a_new_sound_cuts_the_old(alsa: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    need("espeak-ng", "espeak-ng")
    monkeypatch.setenv("MASKGATE_MODELS", str(tmp_path / "models"))
    sound.render(tmp_path / "models" / "sounds", ("en",))
    p = sound.Player(replace(Config(), "sound", spoken=True, volume=1.0).sound, "en")
    chime, rate = samples(p.clip("granted"))
    words, _ = samples(p.clip("say:welcome"))
    alsa.unlink(missing_ok=True)
    p.play("granted", "say:welcome")                         # never the two on top of each other
    p.close()
    assert_is(np.frombuffer(alsa.read_bytes(), "<i2"), np.concatenate([chime, words]), rate)
    with caplog.at_level(logging.INFO, logger="edge.sound"):
        p.play("say:turn-left")                              # 2-3 s of words...
        first = p._procs[0]
        p.play("tick")                                       # ...cut off by the next step's tick
        assert first.returncode is not None and len(p._procs) == 1
        p.close()
    assert_is(np.frombuffer(alsa.read_bytes(), "<i2"), samples(p.clip("tick"))[0], rate)
    assert not [r for r in caplog.records if r.name == "edge.sound"]   # an interruption is no failure


def test_diag_sound_plays_a_tick_and_checks_the_rendered_prompts(alsa: Path, tmp_path: Path) -> None:
    from conftest import maskgate

    cfg = tmp_path / "c.toml"
    cfg.write_text('[sound]\nspoken = true\n[display]\nlanguage = "zh_CN"\n')
    env = {"MASKGATE_MODELS": str(tmp_path / "models")}
    alsa.unlink(missing_ok=True)
    r = maskgate("diag", "sound", "--json", "--config", cfg, "--state", tmp_path / "s", env=env)
    [line] = r.json_lines()
    assert line["status"] == "warn" and "not rendered" in line["detail"] and "install.sh" in line["hint"], line
    need("espeak-ng", "espeak-ng")
    sound.render(tmp_path / "models" / "sounds")
    r = maskgate("diag", "sound", "--json", "--config", cfg, "--state", tmp_path / "s", env=env)
    [line] = r.json_lines()
    assert line["status"] == "ok" and "spoken prompts (zh_CN)" in line["detail"], line
    got = np.frombuffer(alsa.read_bytes(), "<i2")
    want, rate = samples(sound.Player(replace(Config(), "sound", volume=0.6).sound).clip("tick"))
    assert_is(got, want, rate)      # the technician heard a tick
    cfg.write_text('[sound]\ndevice = "nothing_here"\n')
    r = maskgate("diag", "sound", "--json", "--config", cfg, "--state", tmp_path / "s", env=env)
    [line] = r.json_lines()
    assert line["status"] == "warn" and "no ALSA device 'nothing_here'" in line["detail"], line


def test_no_alsa_device_or_no_aplay_is_silent_with_one_log_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    need("aplay", "alsa-utils")
    empty = tmp_path / "alsa.conf"    # an ALSA with no PCM defined at all: no card, no default
    empty.write_text("")
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(empty))
    with caplog.at_level(logging.INFO, logger="edge.sound"):
        p = sound.Player(Config().sound)
        for name in ("granted", "tick", "denied", "say:blink"):
            p.play(name)
        p.close()
    assert not p.enabled and p._procs == []
    said = [r.getMessage() for r in caplog.records if r.name == "edge.sound"]
    assert len(said) == 1 and "silent" in said[0] and "no ALSA device 'default'" in said[0], said
    caplog.clear()
    monkeypatch.setenv("PATH", str(tmp_path))                  # no aplay anywhere
    with caplog.at_level(logging.INFO, logger="edge.sound"):
        p = sound.Player(Config().sound)
        p.play("granted")
        p.close()
    said = [r.getMessage() for r in caplog.records if r.name == "edge.sound"]
    assert not p.enabled and len(said) == 1 and "no aplay" in said[0], said


def test_the_demo_gate_chimes_through_alsa_and_runs_silently_without_it(alsa: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    """The real demo (enrolment, gate, blink, grant) with sound on: ALSA last received the granted chime.
    Then with no ALSA device: the same demo grants, and the speaker costs one log line."""
    from edge.commands.demo import demo

    from edge.display.backends import FramebufferDisplay

    cfg = replace(Config(), "sound", volume=0.8)
    fb = tmp_path / "fb"   # the demo's screens go to a file-backed framebuffer
    fb.write_bytes(b"\0" * (64 * 48 * 2))
    assert demo(cfg, Quiet(), display=FramebufferDisplay(str(fb), 64, 48, 16)) == 0
    got = np.frombuffer(alsa.read_bytes(), "<i2")
    want, rate = samples(sound.Player(cfg.sound).clip("granted"))
    assert_is(got, want, rate)

    empty = tmp_path / "alsa.conf"
    empty.write_text("")
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(empty))
    alsa.unlink()
    with caplog.at_level(logging.INFO):
        assert demo(cfg, Quiet(), display=FramebufferDisplay(str(fb), 64, 48, 16)) == 0
    assert not alsa.exists()
    said = [r.getMessage() for r in caplog.records if r.name == "edge.sound"]
    assert len(said) == 1 and "silent" in said[0], said
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and "sound" in r.getMessage()]


def test_no_card_and_no_asound_conf_is_silence_without_starting_aplay(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A gate with no speaker starts no program: not even aplay to ask (the image test checks that a
    restarted daemon starts none)."""
    monkeypatch.delenv("ALSA_CONFIG_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    cards = tmp_path / "cards"
    cards.write_text("--- no soundcards ---\n")
    assert not sound.alsa_configured(cards)
    assert not sound.alsa_configured(tmp_path / "absent")      # no ALSA in the kernel at all
    cards.write_text(" 0 [vc4hdmi0       ]: vc4-hdmi - vc4-hdmi-0\n                      vc4-hdmi-0\n")
    assert sound.alsa_configured(cards)
    (tmp_path / ".asoundrc").write_text("pcm.!default { type null }\n")
    assert sound.alsa_configured(tmp_path / "absent")          # a PCM of its own, no card needed
    (tmp_path / ".asoundrc").unlink()
    if sound.alsa_configured():
        pytest.skip("this machine has a sound card or /etc/asound.conf")

    def no_program(*a, **k):
        raise AssertionError(f"started {a[0]!r}")

    monkeypatch.setattr(sound.subprocess, "run", no_program)
    monkeypatch.setattr(sound.subprocess, "Popen", no_program)
    player = sound.Player(Config().sound)
    assert not player.enabled and "no sound card" in player.why
    player.play("granted")
    player.close()
