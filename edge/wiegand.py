"""Wiegand: the two-wire protocol of most access-control card readers and keypads.

A reader holds both data lines high and sends each bit as a short low pulse (about 50 us) on D0 for
a 0 or on D1 for a 1, bits about 2 ms apart (readers vary from 0.2 to 20 ms); a frame ends with
silence. Frames this module knows:

- 26 bits: even parity over bits 1-12, 24 data bits (8-bit facility code, 16-bit card number), odd
  parity over bits 13-24. The value is facility x 65536 + card.
- 34 bits: the same with 32 data bits (parity over 16 + 16).
- 4 bits (a keypad key: 0-9, 10 = ``*``, 11 = ``#``) and 8 bits (the key in the low nibble, its
  complement in the high one).

A frame that fails its parity, its complement or has another length is rejected, never guessed at.
The receiver ends a frame after ``gap_s`` (default 25 ms) without a pulse, so it tolerates any bit
rate a reader uses; the sender (Wiegand out to a panel) pulses 50 us, 2 ms apart.

Lines: gpiozero on a Raspberry Pi (its MockFactory in tests and for ``door.backend = "mock"``), or
libgpiod v2 (``gpiod``) with kernel edge timestamps on any other Linux gpiochip, as edge.door.
The reader's 5 V lines need a level shifter or divider to the 3.3 V GPIO (docs/installer.md, "A card reader").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

from edge.errors import MaskgateError

log = logging.getLogger(__name__)

CARD_BITS = {26: 24, 34: 32}      # frame length -> data bits
KEY_NAMES = {10: "*", 11: "#"}
PULSE_S, INTERVAL_S, GAP_S = 50e-6, 2e-3, 0.025


class WiegandError(MaskgateError):
    """A frame that is not a valid Wiegand frame, or lines that cannot be opened."""


@dataclass(frozen=True)
class WiegandFrame:
    """One decoded frame: a card (``value`` = its number) or a keypad key (``key`` = "0"-"9", "*", "#")."""

    bits: int
    value: int
    key: str | None = None


def _parity(bits: Sequence[int]) -> int:
    return sum(bits) % 2


def encode(value: int, bits: int = 26) -> list[int]:
    """The bits of a card frame (26 or 34) for ``value``, parity included."""
    if bits not in CARD_BITS:
        raise WiegandError(f"Wiegand {bits}: only 26 and 34 bit card frames are supported")
    n = CARD_BITS[bits]
    if not 0 <= value < 1 << n:
        raise WiegandError(f"card number {value} does not fit a {bits}-bit frame ({n} data bits)")
    data = [(value >> (n - 1 - i)) & 1 for i in range(n)]
    half = n // 2
    return [_parity(data[:half])] + data + [1 - _parity(data[half:])]


def encode_key(key: str, bits: int = 4) -> list[int]:
    """A keypad key (``0``-``9``, ``*``, ``#``) as a 4-bit or 8-bit (with complement) frame."""
    code = {v: k for k, v in KEY_NAMES.items()}.get(key) if not key.isdigit() else int(key)
    if code is None or not 0 <= code <= 11 or bits not in (4, 8):
        raise WiegandError(f"no {bits}-bit keypad frame for key {key!r}")
    nibble = [(code >> (3 - i)) & 1 for i in range(4)]
    return nibble if bits == 4 else [1 - b for b in nibble] + nibble


def decode(frame: Sequence[int]) -> WiegandFrame:
    """A frame's card number or key; ``WiegandError`` for bad parity or an unknown length."""
    bits = [int(b) for b in frame]
    n = len(bits)
    if n in CARD_BITS:
        data = bits[1:-1]
        half = len(data) // 2
        if _parity(bits[:1] + data[:half]) != 0:
            raise WiegandError(f"Wiegand {n}: even parity of the first half fails (a misread)")
        if _parity(data[half:] + bits[-1:]) != 1:
            raise WiegandError(f"Wiegand {n}: odd parity of the second half fails (a misread)")
        return WiegandFrame(n, int("".join(map(str, data)), 2))
    if n in (4, 8):
        code = int("".join(map(str, bits[-4:])), 2)
        if n == 8 and [1 - b for b in bits[:4]] != bits[4:]:
            raise WiegandError("8-bit keypad frame: the high nibble is not the complement of the low one")
        if code > 11:
            raise WiegandError(f"{n}-bit keypad frame: no key has code {code}")
        return WiegandFrame(n, code, KEY_NAMES.get(code, str(code)))
    raise WiegandError(f"{n} bits: not a Wiegand 26 or 34 card frame nor a 4/8-bit keypad key")


class FrameAssembler:
    """Bits in with their times, frames out after ``gap_s`` of silence: no clock of its own, so the
    same logic runs on live edges and on recorded ones."""

    def __init__(self, gap_s: float = GAP_S, max_bits: int = 64) -> None:
        self.gap_s = gap_s
        self.max_bits = max_bits
        self._bits: list[int] = []
        self._last = 0.0
        self._lock = threading.Lock()

    def bit(self, value: int, t: float) -> list[int] | None:
        """Add a bit; returns the previous frame when this bit came after a gap (it starts a new one)."""
        with self._lock:
            done = self._bits if self._bits and t - self._last >= self.gap_s else None
            if done is not None:
                self._bits = []
            if len(self._bits) < self.max_bits:  # noise on a line cannot grow a frame without bound
                self._bits.append(value)
            self._last = t
            return done

    def poll(self, now: float) -> list[int] | None:
        """The frame, once the lines have been silent ``gap_s``."""
        with self._lock:
            if self._bits and now - self._last >= self.gap_s:
                done, self._bits = self._bits, []
                return done
            return None


OnFrame = Callable[[WiegandFrame], None]


class WiegandReceiver:
    """D0 / D1 on two GPIO inputs (pulled up, active low); ``on_frame`` gets each valid frame from a
    thread of its own. Invalid frames are logged and dropped (``on_error`` if given)."""

    def __init__(self, d0: int, d1: int, on_frame: OnFrame, backend: str = "gpiozero",
                 gpiochip: str = "/dev/gpiochip0", gap_s: float = GAP_S, pin_factory: Any = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        if d0 == d1:
            raise WiegandError(f"Wiegand D0 and D1 are both GPIO {d0}; wire them to two pins")
        self.on_frame, self.on_error = on_frame, on_error
        self.asm = FrameAssembler(gap_s)
        self._stop = threading.Event()
        self._devices: list[Any] = []
        self._req: Any = None
        if backend == "gpiod":
            self._open_gpiod(d0, d1, gpiochip)
        else:
            self._open_gpiozero(d0, d1, backend, pin_factory)
        self._thread = threading.Thread(target=self._run, name="wiegand-in", daemon=True)
        self._thread.start()

    def _open_gpiozero(self, d0: int, d1: int, backend: str, factory: Any) -> None:
        from gpiozero import DigitalInputDevice
        from gpiozero.exc import GPIOZeroError

        if backend == "mock" and factory is None:
            from gpiozero.pins.mock import MockFactory

            factory = MockFactory()
        try:
            for value, pin in ((0, d0), (1, d1)):
                dev = DigitalInputDevice(pin, pull_up=True, pin_factory=factory)
                dev.when_activated = lambda _d, v=value: self._edge(v, time.monotonic())
                self._devices.append(dev)
        except (GPIOZeroError, OSError, RuntimeError, ValueError) as e:
            self.close()
            raise WiegandError(f"cannot open Wiegand D0/D1 on GPIO {d0}/{d1}: {e}") from None

    def _open_gpiod(self, d0: int, d1: int, chip: str) -> None:
        try:
            import gpiod
            from gpiod.line import Bias, Direction, Edge
        except ImportError:
            raise WiegandError("door.backend = \"gpiod\" needs libgpiod's Python bindings: "
                               "pip install 'gpiod>=2.1' (or maskgate[gpiod])") from None
        settings = gpiod.LineSettings(direction=Direction.INPUT, edge_detection=Edge.FALLING, bias=Bias.PULL_UP)
        try:
            self._req = gpiod.request_lines(chip, consumer="maskgate-wiegand", config={(d0, d1): settings})
        except (OSError, ValueError) as e:
            raise WiegandError(f"cannot request Wiegand lines {d0}/{d1} on {chip}: {e}") from None
        self._offsets = {d0: 0, d1: 1}

    def _edge(self, value: int, t: float) -> None:
        done = self.asm.bit(value, t)
        if done is not None:
            self._deliver(done)

    def _deliver(self, bits: list[int]) -> None:
        try:
            frame = decode(bits)
        except WiegandError as e:
            log.warning("Wiegand: %s", e)
            if self.on_error is not None:
                self.on_error(str(e))
            return
        try:
            self.on_frame(frame)
        except Exception:  # noqa: BLE001 - a listener's bug must not stop the reader
            log.exception("Wiegand listener failed on %s", frame)

    def _run(self) -> None:
        step = self.asm.gap_s / 4
        while not self._stop.is_set():
            if self._req is not None:
                try:
                    if self._req.wait_edge_events(step):
                        for ev in self._req.read_edge_events():  # kernel timestamps: CLOCK_MONOTONIC
                            self._edge(self._offsets[ev.line_offset], ev.timestamp_ns / 1e9)
                except Exception:  # noqa: BLE001 - released while waiting, or the chip went away
                    if not self._stop.is_set():
                        log.exception("Wiegand gpiod watch failed")
                    return
            else:
                self._stop.wait(step)
            done = self.asm.poll(time.monotonic())
            if done is not None:
                self._deliver(done)

    def close(self) -> None:
        self._stop.set()
        if getattr(self, "_thread", None) is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        for dev in self._devices:
            dev.close()
        self._devices = []
        if self._req is not None:
            self._req.release()
            self._req = None


class WiegandSender:
    """Wiegand out on two GPIO outputs (idle high, a pulse pulls the line low): to hand a card
    number on to an access panel. Pulses are timed by busy-waiting (50 us is below sleep's grain)."""

    def __init__(self, d0: int, d1: int, backend: str = "gpiozero", gpiochip: str = "/dev/gpiochip0",
                 pin_factory: Any = None, pulse_s: float = PULSE_S, interval_s: float = INTERVAL_S) -> None:
        self.pulse_s, self.interval_s = pulse_s, interval_s
        self._req = None
        self._lines: list[Any] = []
        if backend == "gpiod":
            try:
                import gpiod
                from gpiod.line import Direction, Value
            except ImportError:
                raise WiegandError("door.backend = \"gpiod\" needs libgpiod's Python bindings") from None
            self._Value = Value
            settings = gpiod.LineSettings(direction=Direction.OUTPUT, output_value=Value.INACTIVE, active_low=True)
            try:
                self._req = gpiod.request_lines(gpiochip, consumer="maskgate-wiegand-out",
                                                config={(d0, d1): settings})
            except (OSError, ValueError) as e:
                raise WiegandError(f"cannot request Wiegand out lines {d0}/{d1} on {gpiochip}: {e}") from None
            self._offsets = (d0, d1)
            return
        from gpiozero import DigitalOutputDevice
        from gpiozero.exc import GPIOZeroError

        if backend == "mock" and pin_factory is None:
            from gpiozero.pins.mock import MockFactory

            pin_factory = MockFactory()
        try:
            for pin in (d0, d1):
                self._lines.append(DigitalOutputDevice(pin, active_high=False, initial_value=False,
                                                       pin_factory=pin_factory))
        except (GPIOZeroError, OSError, RuntimeError, ValueError) as e:
            self.close()
            raise WiegandError(f"cannot open Wiegand out on GPIO {d0}/{d1}: {e}") from None

    def _set(self, line: int, active: bool) -> None:
        if self._req is not None:
            self._req.set_value(self._offsets[line], self._Value.ACTIVE if active else self._Value.INACTIVE)
        else:
            self._lines[line].on() if active else self._lines[line].off()

    def send(self, bits: Sequence[int]) -> None:
        """One frame: a pulse per bit on D0 (0) or D1 (1)."""
        for b in bits:
            self._set(int(b), True)
            start = time.perf_counter()  # after the line moved: the pulse is never shorter than pulse_s
            while time.perf_counter() - start < self.pulse_s:
                pass
            self._set(int(b), False)
            rest = self.interval_s - (time.perf_counter() - start)
            if rest > 1e-3:  # sleep most of the gap, spin the end of it
                time.sleep(rest - 1e-3)
            while time.perf_counter() - start < self.interval_s:
                pass

    def send_card(self, value: int, bits: int = 26) -> None:
        self.send(encode(value, bits))

    def close(self) -> None:
        for dev in self._lines:
            dev.close()
        self._lines = []
        if self._req is not None:
            self._req.release()
            self._req = None
