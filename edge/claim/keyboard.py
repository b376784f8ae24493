"""USB card readers and keypads that present as keyboards, read with python-evdev.

Such a reader "types" the card number and presses Enter; a USB numeric keypad types whatever is
pressed. The device is grabbed (``EVIOCGRAB``) so that no console, login prompt or other program
sees the digits, and decoded here from its raw key events.

What counts as what (``KeyEntry``):

- digits then Enter (or ``#``): a card number (what keyboard-wedge card readers send);
- ``*``, digits, then Enter or ``#``: a PIN (a numeric keypad's ``*``; on a full keyboard Shift+8);
- Esc, Backspace or Delete clears what was typed; so does a pause of more than ``idle_s`` (10 s).

The same ``KeyEntry`` turns Wiegand keypad keys into PINs (there every digit sequence is a PIN,
since cards arrive as their own frames). ``decode_events`` runs the decoding path on recorded
events, so tests need no ``/dev/uinput``. python-evdev is imported only here, and only when a
keyboard reader is configured: a gate without one runs without it.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Iterable
from typing import Any, Callable

from edge.claim.credentials import MAX_CARD_DIGITS, ClaimError

log = logging.getLogger(__name__)

Entry = tuple[str, str]   # ("card" | "pin", digits)
IDLE_S = 10.0


class KeyEntry:
    """Keys in (``0``-``9``, ``*``, ``#``, ``enter``, ``clear``), entries out; no clock of its own."""

    def __init__(self, plain: str = "card", idle_s: float = IDLE_S) -> None:
        self.plain = plain      # what digits without a leading "*" are: "card" (keyboard) or "pin" (keypad)
        self.idle_s = idle_s
        self._digits = ""
        self._pin = False
        self._last = None

    def _reset(self) -> None:
        self._digits, self._pin = "", False

    def key(self, symbol: str, t: float) -> Entry | None:
        """One key press at time ``t`` (seconds); a finished entry, or None."""
        if self._last is not None and t - self._last > self.idle_s:
            self._reset()
        self._last = t
        if symbol.isdigit():
            self._digits += symbol
            if len(self._digits) > MAX_CARD_DIGITS:  # a stuck key or noise, not a card
                self._reset()
        elif symbol == "*":
            self._digits, self._pin = "", True
        elif symbol in ("enter", "#"):
            done = ("pin" if self._pin or self.plain == "pin" else "card", self._digits) if self._digits else None
            self._reset()
            return done
        elif symbol == "clear":
            self._reset()
        return None


class KeyDecoder:
    """Linux key events (type, code, value) -> ``KeyEntry`` symbols, Shift followed for ``*`` and ``#``."""

    def __init__(self, entry: KeyEntry | None = None) -> None:
        from evdev import ecodes as e

        self.entry = entry or KeyEntry()
        self._e = e
        self._shift: set[int] = set()
        self._digits = {getattr(e, f"KEY_{d}"): str(d) for d in range(10)}
        self._keypad = {getattr(e, f"KEY_KP{d}"): str(d) for d in range(10)}
        self._keypad.update({e.KEY_KPASTERISK: "*", e.KEY_KPENTER: "enter", e.KEY_ENTER: "enter",
                             e.KEY_ESC: "clear", e.KEY_BACKSPACE: "clear", e.KEY_DELETE: "clear"})
        self._shifted = {e.KEY_8: "*", e.KEY_3: "#"}
        self._shift_keys = {e.KEY_LEFTSHIFT, e.KEY_RIGHTSHIFT}

    def feed(self, type_: int, code: int, value: int, t: float) -> Entry | None:
        """One event; a finished entry or None. Only key presses count (not releases or repeats)."""
        if type_ != self._e.EV_KEY:
            return None
        if code in self._shift_keys:
            (self._shift.add if value else self._shift.discard)(code)
            return None
        if value != 1:
            return None
        if self._shift:
            symbol = self._shifted.get(code)
        else:
            symbol = self._digits.get(code) or self._keypad.get(code)
        return self.entry.key(symbol, t) if symbol else None


def decode_events(events: Iterable[Any], plain: str = "card") -> list[Entry]:
    """Every entry in recorded events: ``evdev.InputEvent`` objects or (sec, usec, type, code, value)."""
    dec = KeyDecoder(KeyEntry(plain))
    found = []
    for ev in events:
        if hasattr(ev, "type"):
            sec, usec, type_, code, value = ev.sec, ev.usec, ev.type, ev.code, ev.value
        else:
            sec, usec, type_, code, value = ev
        done = dec.feed(type_, code, value, sec + usec / 1e6)
        if done is not None:
            found.append(done)
    return found


def find_device(spec: str) -> str:
    """The event device a ``[claim] device`` names: a path, or part of the device's name."""
    import evdev

    if spec.startswith("/"):
        return spec
    hits = []
    for path in evdev.list_devices():
        try:
            with evdev.InputDevice(path) as dev:
                if spec.lower() in dev.name.lower():
                    hits.append((path, dev.name))
        except OSError:
            continue
    if len(hits) != 1:
        found = "no input device" if not hits else f"{len(hits)} devices ({', '.join(n for _, n in hits)})"
        raise ClaimError(f"claim.device = {spec!r}: {found} with that in its name; give its "
                         "/dev/input/by-id/... path (ls -l /dev/input/by-id)")
    return hits[0][0]


REOPEN_S = 2.0   # an unplugged reader is looked for again this often


class KeyboardReader:
    """A grabbed keyboard-like reader; ``on_entry(kind, digits)`` from a thread of its own. A reader
    unplugged and plugged in again is picked up again (``spec`` is looked up anew)."""

    def __init__(self, spec: str, on_entry: Callable[[str, str], None], grab: bool = True) -> None:
        try:
            import evdev
        except ImportError:
            raise ClaimError("claim.reader = \"keyboard\" needs python-evdev (pip install -r requirements.txt)") from None
        self._evdev, self.spec, self._grab = evdev, spec, grab
        self.device = self._open()
        self.name = f"{self.device.name} ({self.device.path})"
        self.decoder = KeyDecoder()
        self.on_entry = on_entry
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="claim-keyboard", daemon=True)
        self._thread.start()

    def _open(self) -> Any:
        """Find, open, check and grab the device; ``ClaimError`` saying what failed."""
        ecodes = self._evdev.ecodes
        path = find_device(self.spec)
        try:
            device = self._evdev.InputDevice(path)
        except OSError as e:
            raise ClaimError(f"cannot open {path}: {e.strerror} (is the service user in group input?)") from None
        if not {ecodes.KEY_0, ecodes.KEY_KP0} & set(device.capabilities().get(ecodes.EV_KEY, [])):
            device.close()
            raise ClaimError(f"{path} ({device.name}) has no digit keys: not a card reader or keypad")
        if self._grab:
            try:
                device.grab()  # no console, getty or X server sees the digits
            except OSError as e:
                device.close()
                raise ClaimError(f"cannot grab {path}: {e.strerror} (another program holds it?)") from None
        return device

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.device is None:
                try:
                    self.device = self._open()
                    log.info("card reader %s is back", self.name)
                except ClaimError:
                    self._stop.wait(REOPEN_S)
                    continue
            try:
                ready, _, _ = select.select([self.device.fd], [], [], 0.2)
                events = list(self.device.read()) if ready else []
            except (OSError, ValueError) as e:  # unplugged, or closed while waiting
                if self._stop.is_set():
                    return
                log.error("card reader %s: %s; waiting for it to come back", self.name, e)
                self._drop()
                continue
            for ev in events:
                done = self.decoder.feed(ev.type, ev.code, ev.value, time.monotonic())
                if done is not None:
                    try:
                        self.on_entry(*done)
                    except Exception:  # noqa: BLE001 - a listener's bug must not stop the reader
                        log.exception("claim listener failed")

    def _drop(self) -> None:
        device, self.device = self.device, None
        if device is None:
            return
        try:
            device.ungrab()
        except OSError:
            pass
        try:
            device.close()
        except OSError:
            pass

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        self._drop()
