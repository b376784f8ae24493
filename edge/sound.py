"""What residents hear: a chime for granted, a low tone for denied, a tick per challenge step, and
optional spoken prompts, played through ALSA's ``aplay`` and never blocking the camera loop.

Tones are synthesised in memory (numpy, 16-bit mono WAV); spoken prompts are rendered once per
message by ``espeak-ng`` (in the configured language) and kept in memory. With no ALSA sound card
(``/proc/asound/cards``), no ``aplay``, ``sound.enabled = false`` or volume 0 the player is silent,
and a failing playback is logged once, never raised: a gate must not stop for a speaker.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import wave
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

RATE = 22050
CARDS = Path("/proc/asound/cards")
ESPEAK_VOICE = {"en": "en", "zh_CN": "cmn"}


def _tone(parts: list[tuple[float, float]], volume: float) -> bytes:
    """A WAV of (frequency Hz, seconds) parts, each with a short fade so nothing clicks."""
    chunks = []
    for freq, secs in parts:
        t = np.arange(int(RATE * secs)) / RATE
        env = np.minimum(1.0, np.minimum(t, secs - t) / 0.01)
        chunks.append(np.sin(2 * np.pi * freq * t) * env if freq else np.zeros_like(t))
    pcm = (np.concatenate(chunks) * 32767 * max(0.0, min(1.0, volume))).astype("<i2")
    return wav(pcm)


def wav(pcm: np.ndarray, rate: int = RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


TONES = {
    "granted": [(880.0, 0.12), (0, 0.03), (1175.0, 0.12), (0, 0.03), (1568.0, 0.22)],   # rising chime
    "denied": [(220.0, 0.45)],                                                          # one low tone
    "tick": [(1500.0, 0.03)],
}


def sound_card() -> bool:
    """Whether ALSA lists a sound card (``/proc/asound/cards`` says "no soundcards" otherwise)."""
    try:
        text = CARDS.read_text()
    except OSError:
        return False
    return "no soundcards" not in text and any(line.strip()[:1].isdigit() for line in text.splitlines())


class Player:
    """Plays named sounds; silent when there is nothing to play them on."""

    def __init__(self, cfg: Any, language: str = "en", tr: Any = None) -> None:
        self.cfg = cfg
        self.language = language
        self.tr = tr or (lambda s: s)
        self.aplay = shutil.which("aplay")
        self.enabled = bool(cfg.enabled and cfg.volume > 0 and self.aplay and sound_card())
        if cfg.enabled and not self.enabled:
            log.info("sound: silent (%s)", "volume 0" if cfg.volume <= 0 else
                     "no aplay (apt install alsa-utils)" if not self.aplay else "no ALSA sound card")
        self._cache: dict[str, bytes] = {}
        self._procs: list[subprocess.Popen] = []
        self._warned = False

    def clip(self, name: str) -> bytes | None:
        """The WAV for ``name``: a tone, or ``say:<msgid>`` spoken in the configured language."""
        if name not in self._cache:
            if name.startswith("say:"):
                data = self._speak(self.tr(name[4:]))
                if data is None:
                    return None
                self._cache[name] = data
            else:
                self._cache[name] = _tone(TONES[name], self.cfg.volume)
        return self._cache[name]

    def _speak(self, text: str) -> bytes | None:
        espeak = shutil.which("espeak-ng")
        if not espeak:
            if not self._warned:
                log.warning("sound.spoken needs espeak-ng (apt install espeak-ng); prompts stay silent")
                self._warned = True
            return None
        amp = str(int(200 * max(0.0, min(1.0, self.cfg.volume))))
        r = subprocess.run([espeak, "-v", ESPEAK_VOICE.get(self.language, "en"), "-a", amp, "--stdout", text],
                           capture_output=True, timeout=10)
        return r.stdout if r.returncode == 0 and r.stdout else None

    def play(self, name: str) -> None:
        """Start playing ``name`` and return at once (a tick never waits for the chime before it)."""
        if not self.enabled:
            return
        if name.startswith("say:") and not self.cfg.spoken:
            return
        data = self.clip(name)
        if data is None:
            return
        self._procs = [p for p in self._procs if p.poll() is None]
        try:
            p = subprocess.Popen([self.aplay, "-q", "-D", self.cfg.device, "-"], stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            assert p.stdin is not None
            p.stdin.write(data)
            p.stdin.close()
            self._procs.append(p)
        except (OSError, BrokenPipeError) as e:
            if not self._warned:
                log.warning("sound: playback failed (%s); carrying on silently", e)
                self._warned = True

    def close(self) -> None:
        for p in self._procs:
            try:
                p.wait(timeout=2)
            except subprocess.TimeoutExpired:
                p.kill()
        self._procs = []
