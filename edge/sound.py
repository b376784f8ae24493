"""What residents hear: a chime for granted, a low tone for denied, a tick per challenge step, and
optional spoken prompts, played through ALSA's ``aplay`` and never blocking the camera loop.

Tones are synthesised in memory (numpy, 16-bit mono WAV). Spoken prompts are WAV files rendered
once, at install time, by ``espeak-ng`` for every language (``python -m edge.sound render DIR``,
run by scripts/install.sh and scripts/build-image.sh into ``$MASKGATE_MODELS/sounds``): the gate
never runs a speech synthesiser, and without the files it stays silent for speech while the tones
still play. Whether ALSA can play at all is found by opening ``sound.device`` once with an empty
WAV (a card, a USB speaker, or any PCM an ``asound.conf`` defines); with none, no ``aplay``,
``sound.enabled = false`` or volume 0 the player is silent after one log line, and a failing
playback is logged once, never raised: a gate must not stop for a speaker.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np

from edge.display.i18n import LANGUAGES, translator
from edge.display.messages import SPOKEN
from edge.embed import models_dir
from edge.errors import MaskgateError

log = logging.getLogger(__name__)

RATE = 22050
ESPEAK_VOICE = {"en": "en", "zh_CN": "cmn"}


class SoundError(MaskgateError):
    """Spoken prompts cannot be rendered (no espeak-ng, or it failed)."""


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


# ---- spoken prompts: rendered at install time ----

def sounds_dir() -> Path:
    """Where the rendered prompts live: ``$MASKGATE_MODELS/sounds`` (the unit sets MASKGATE_MODELS)."""
    return models_dir() / "sounds"


def prompt_path(language: str, key: str, base: Path | None = None) -> Path:
    return (base or sounds_dir()) / language / f"{key}.wav"


def render(out: Path, languages: tuple[str, ...] | None = None) -> list[Path]:
    """Every spoken prompt (:data:`edge.display.messages.SPOKEN`) in every language as a WAV under
    ``out/<language>/<key>.wav``, through espeak-ng at full level (the player applies the volume)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SoundError("spoken prompts need espeak-ng to render them (apt install espeak-ng)")
    written = []
    for lang in languages or LANGUAGES:
        tr = translator(lang)
        (out / lang).mkdir(parents=True, exist_ok=True)
        for key, msgid in SPOKEN.items():
            dest = prompt_path(lang, key, out)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".tmp")
            os.close(fd)
            r = subprocess.run([espeak, "-v", ESPEAK_VOICE[lang], "-s", "150", "-w", tmp, tr(msgid)],
                               capture_output=True, text=True, timeout=60)
            if r.returncode != 0 or os.path.getsize(tmp) <= 44:
                os.unlink(tmp)
                raise SoundError(f"espeak-ng could not say {key!r} in {lang}: "
                                 f"{(r.stderr.strip().splitlines() or ['no sound'])[-1]}")
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
            written.append(dest)
    return written


def _scaled(data: bytes, volume: float) -> bytes | None:
    """A 16-bit PCM WAV with its samples scaled by ``volume`` (0-1), as mono at its own rate."""
    try:
        with wave.open(io.BytesIO(data)) as w:
            if w.getsampwidth() != 2:
                return None
            rate, ch = w.getframerate(), w.getnchannels()
            pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    except (wave.Error, EOFError):
        return None
    if ch > 1:
        pcm = pcm.reshape(-1, ch).mean(axis=1)
    return wav((pcm.astype(np.float64) * max(0.0, min(1.0, volume))).round().astype("<i2"), rate)


def _joined(parts: list[bytes]) -> bytes:
    """One WAV of several played back to back (all are mono 16-bit; a part at another rate is left out)."""
    pcms, rate = [], None
    for data in parts:
        with wave.open(io.BytesIO(data)) as w:
            if rate is None:
                rate = w.getframerate()
            if w.getframerate() == rate and w.getnchannels() == 1:
                pcms.append(np.frombuffer(w.readframes(w.getnframes()), "<i2"))
            else:
                log.warning("sound: a clip at %d Hz after one at %d Hz is left out", w.getframerate(), rate)
    return wav(np.concatenate(pcms), rate or RATE)


# ---- ALSA ----

def alsa_configured(proc: Path = Path("/proc/asound/cards")) -> bool:
    """Whether ALSA has anything to open: a sound card, or an ``asound.conf`` (a PCM of its own, a
    Bluetooth or network sink). When it has neither, the gate is silent without starting ``aplay``
    to ask (a gate with no speaker starts no program, restart after restart)."""
    home = os.environ.get("HOME")
    if os.environ.get("ALSA_CONFIG_PATH") or Path("/etc/asound.conf").exists() \
            or (home and (Path(home) / ".asoundrc").exists()):
        return True
    try:
        cards = proc.read_text()
    except OSError:
        return False
    return any(line.strip() and "no soundcards" not in line for line in cards.splitlines())


def alsa_problem(aplay: str, device: str) -> str | None:
    """Why ``aplay -D device`` cannot play here (its last error line), or None when it can: the device
    is opened with an empty WAV, so nothing is heard."""
    try:
        r = subprocess.run([aplay, "-q", "-D", device, "-"], input=wav(np.zeros(0, "<i2")),
                           capture_output=True, timeout=5)
    except subprocess.TimeoutExpired:   # waiting on a busy device: it exists
        return None
    except OSError as e:
        return str(e)
    if r.returncode == 0:
        return None
    lines = r.stderr.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"aplay exit {r.returncode}"


class Player:
    """Plays named sounds; silent when there is nothing to play them on."""

    def __init__(self, cfg: Any, language: str = "en") -> None:
        self.cfg = cfg
        self.language = language
        self.aplay = shutil.which("aplay")
        why = ("volume 0" if cfg.volume <= 0 else "no aplay (apt install alsa-utils)" if not self.aplay
               else None) if cfg.enabled else None
        if cfg.enabled and why is None and not alsa_configured():
            why = "no sound card (/proc/asound/cards) and no asound.conf"
        if cfg.enabled and why is None:
            problem = alsa_problem(str(self.aplay), cfg.device)
            if problem:
                why = f"no ALSA device {cfg.device!r}: {problem}"
        self.enabled = bool(cfg.enabled and why is None)
        self.why = why or ("sound.enabled = false" if not cfg.enabled else "")
        if cfg.enabled and why:
            log.info("sound: silent (%s)", why)
        self._cache: dict[str, bytes] = {}
        self._procs: list[subprocess.Popen] = []
        self._warned: set[str] = set()

    def _once(self, what: str, msg: str, *args: Any) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning(msg, *args)

    def clip(self, name: str) -> bytes | None:
        """The WAV for ``name``: a tone, or ``say:<key>`` (a key of SPOKEN) as rendered at install."""
        if name not in self._cache:
            if name.startswith("say:"):
                path = prompt_path(self.language, name[4:])
                try:
                    data = _scaled(path.read_bytes(), self.cfg.volume)
                except OSError:
                    data = None
                if data is None:
                    self._once("say", "sound: spoken prompts not rendered (%s missing or unreadable; "
                               "sudo scripts/install.sh renders them); tones still play", path)
                    return None
                self._cache[name] = data
            else:
                self._cache[name] = _tone(TONES[name], self.cfg.volume)
        return self._cache[name]

    def play(self, *names: str) -> None:
        """Start playing ``names`` one after the other (a tone, then its words) and return at once.
        Whatever is still playing is cut off: the newest state is the one the resident must hear."""
        if not self.enabled:
            return
        parts = []
        for name in names:
            if name.startswith("say:") and not self.cfg.spoken:
                continue
            data = self.clip(name)
            if data is not None:
                parts.append(data)
        if not parts:
            return
        data = parts[0] if len(parts) == 1 else _joined(parts)
        self._stop()
        try:
            p = subprocess.Popen([str(self.aplay), "-q", "-D", self.cfg.device, "-"], stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            assert p.stdin is not None
            p.stdin.write(data)
            p.stdin.close()
            self._procs.append(p)
        except OSError as e:   # BrokenPipeError included: aplay gave up before reading
            self._once("play", "sound: playback failed (%s); carrying on silently", e)

    def _stop(self) -> None:
        """Cut off what is still playing (interrupted, not broken: nothing is logged for it)."""
        self._reap()
        for p in self._procs:
            p.terminate()
            try:
                p.wait(timeout=2)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stderr:
                p.stderr.close()
        self._procs = []

    def _reap(self) -> None:
        """Forget finished players; one that failed (a speaker unplugged) is logged once."""
        live = []
        for p in self._procs:
            if p.poll() is None:
                live.append(p)
                continue
            err = p.stderr.read().decode(errors="replace").strip() if p.stderr else ""
            if p.stderr:
                p.stderr.close()
            if p.returncode:
                self._once("play", "sound: aplay failed (%s); carrying on",
                           (err.splitlines() or [f"exit {p.returncode}"])[-1])
        self._procs = live

    def close(self) -> None:
        for p in self._procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._reap()


def main(argv: list[str] | None = None) -> int:
    """``python -m edge.sound render DIR``: the spoken prompts for every language (install time)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m edge.sound",
                                 description="render the spoken prompts (espeak-ng) for every language")
    sub = ap.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("render", help="write DIR/<language>/<prompt>.wav")
    rp.add_argument("dir", type=Path, nargs="?", help="default: $MASKGATE_MODELS/sounds")
    args = ap.parse_args(argv)
    try:
        files = render(args.dir or sounds_dir())
    except (SoundError, OSError, subprocess.TimeoutExpired) as e:
        print(f"edge.sound: {e}", file=sys.stderr)
        return 2
    print(f"{len(files)} spoken prompts in {(args.dir or sounds_dir())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
