"""The door behind one small interface: relay, door contact, exit button, alternative entry, alarms.

Fail secure is the rule everything here serves: the relay is driven off when the door object is
made, when a pulse ends, when the door shuts after an opening, on ``close()``, at interpreter exit
(``atexit``) and, through :mod:`edge.service`, on SIGTERM / SIGINT. After ``close()`` the relay pin
is released as an input, so the external pull-down (docs/installer.md, "Wiring") holds a dead process's relay
off as well.

Two hardware backends share the same logic: ``gpiozero`` (a Raspberry Pi; ``mock`` is gpiozero's
own ``MockFactory``, the same code path with simulated pins) and ``gpiod`` (libgpiod v2 bindings,
for a Jetson or any Linux gpiochip, which gpiozero refuses because it needs a Pi revision code).

Timing runs on one small thread per door: relay pulses, the held-open alarm and the LED / buzzer
patterns never block the camera loop, and listeners (the audit log, the gate) are called from that
thread, never from inside a GPIO callback, so a slow listener cannot delay an input.

Input semantics (``pull_up = true``, the default): every input is a switch to ground, "active"
while closed. The door contact is closed while the door is shut, so a cut wire reads as an open
door (and raises the forced-door alarm) instead of hiding one.

Why one module of over 500 lines: the two backends, the pulse/alarm thread and the input semantics
are one state (what the relay is doing and why); split, each part would need the others' locks.
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from edge.config import DoorConfig
from edge.errors import DoorError

log = logging.getLogger(__name__)

Event = dict[str, Any]
Listener = Callable[[Event], None]

INPUTS = ("contact", "rex", "alt_entry")
OUTPUTS = ("relay", "led", "buzzer")


@dataclass(frozen=True)
class Pattern:
    """An LED / buzzer pattern: ``(led, buzzer, seconds)`` steps, played once or repeated."""

    steps: tuple[tuple[bool, bool, float], ...]
    repeat: bool = False

    def at(self, elapsed: float) -> tuple[bool, bool, float]:
        """(led, buzzer, seconds until the next change; ``inf`` when it holds) ``elapsed`` s in."""
        period = sum(s[2] for s in self.steps)
        if self.repeat and period > 0:
            elapsed %= period
        t = 0.0
        for led, buzzer, dur in self.steps:
            if elapsed < t + dur:
                return led, buzzer, t + dur - elapsed
            t += dur
        led, buzzer, _ = self.steps[-1]
        return led, buzzer, math.inf


# What a resident or a technician sees and hears. "granted"/"denied" play once over the steady
# state; the others are steady states (the gate picks one with ``indicate``).
PATTERNS: dict[str, Pattern] = {
    "idle": Pattern(((False, False, math.inf),)),
    "busy": Pattern(((True, False, 0.5), (False, False, 0.5)), repeat=True),   # follow the prompt
    "open": Pattern(((True, False, math.inf),)),                                # relay on
    "granted": Pattern(((True, True, 0.15), (True, False, 0.0))),              # one short beep
    "denied": Pattern(((True, True, 0.15), (False, False, 0.1)) * 3),          # three beeps
    # A USB stick was dealt with and synced (edge.usb): two long flashes and beeps, "you may pull it".
    "done": Pattern(((True, True, 0.6), (False, False, 0.3), (True, True, 0.6), (False, False, 0.0))),
    "lockout": Pattern(((True, False, 0.1), (False, False, 0.4)), repeat=True),
    "alarm": Pattern(((True, True, 0.5), (False, False, 0.5)), repeat=True),
    "fault": Pattern(((True, False, 0.1), (False, False, 0.1), (True, False, 0.1), (False, False, 1.0)),
                     repeat=True),                                               # camera lost, etc.
    # The liveness prompt on the door's LED (liveness.prompt = "led"; the sign beside the camera
    # explains the code): fast flicker = blink, long-on = turn left, short-on = turn right.
    "prompt-blink": Pattern(((True, False, 0.1), (False, False, 0.1)), repeat=True),
    "prompt-turn-left": Pattern(((True, False, 0.6), (False, False, 0.2)), repeat=True),
    "prompt-turn-right": Pattern(((True, False, 0.2), (False, False, 0.6)), repeat=True),
}
STEADY = ("idle", "busy", "lockout", "fault", "prompt-blink", "prompt-turn-left", "prompt-turn-right")
TRANSIENT = ("granted", "denied", "done")


class Pins(Protocol):
    """What a backend offers the door: named outputs, named inputs with a change callback."""

    name: str
    inputs: tuple[str, ...]

    def set(self, output: str, on: bool) -> None: ...

    def active(self, input_name: str) -> bool: ...

    def close(self) -> None: ...


OnChange = Callable[[str, bool], None]


def _pin_map(cfg: DoorConfig) -> dict[str, int]:
    pins = {"relay": cfg.relay_pin, "contact": cfg.contact_pin, "rex": cfg.rex_pin,
            "alt_entry": cfg.alt_entry_pin, "led": cfg.led_pin, "buzzer": cfg.buzzer_pin}
    used = {k: v for k, v in pins.items() if v is not None}
    seen: dict[int, str] = {}
    for k, v in used.items():
        if v in seen:
            raise DoorError(f"door.{seen[v]}_pin and door.{k}_pin are both GPIO {v}; give each its own pin")
        seen[v] = k
    return used


class GpiozeroPins:
    """gpiozero devices: ``OutputDevice`` relay (configurable polarity), LED, buzzer, input devices."""

    def __init__(self, cfg: DoorConfig, on_change: OnChange, factory: Any = None, name: str = "gpiozero") -> None:
        try:
            from gpiozero import Buzzer, DigitalInputDevice, LED, OutputDevice
            from gpiozero.exc import GPIOZeroError
        except ImportError as e:  # pragma: no cover - gpiozero is a runtime dependency
            raise DoorError(f"gpiozero is not installed ({e}); run scripts/setup.sh") from None
        self.name = name
        pins = _pin_map(cfg)
        self._devices: dict[str, Any] = {}
        try:
            # The relay first, off, before any input can call back.
            self._devices["relay"] = OutputDevice(pins["relay"], active_high=cfg.relay_active_high,
                                                  initial_value=False, pin_factory=factory)
            for out, cls in (("led", LED), ("buzzer", Buzzer)):
                if out in pins:
                    self._devices[out] = cls(pins[out], initial_value=False, pin_factory=factory)
            for inp in INPUTS:
                if inp in pins:
                    dev = DigitalInputDevice(pins[inp], pull_up=cfg.pull_up,
                                             bounce_time=cfg.bounce_s or None, pin_factory=factory)
                    dev.when_activated = lambda _d, n=inp: on_change(n, True)
                    dev.when_deactivated = lambda _d, n=inp: on_change(n, False)
                    self._devices[inp] = dev
        except (GPIOZeroError, ImportError, OSError, RuntimeError, ValueError) as e:
            self.close()
            raise DoorError(f"cannot open the door pins with gpiozero: {e} (on a board that is not a "
                            f"Raspberry Pi use door.backend = \"gpiod\")") from None
        self.inputs = tuple(i for i in INPUTS if i in self._devices)

    def set(self, output: str, on: bool) -> None:
        dev = self._devices.get(output)
        if dev is not None:
            dev.on() if on else dev.off()

    def active(self, input_name: str) -> bool:
        return bool(self._devices[input_name].is_active)

    def close(self) -> None:
        relay = self._devices.pop("relay", None)
        if relay is not None:
            try:
                relay.off()  # off before release: a released mock/RPi pin keeps its last level
            finally:
                relay.close()
        for dev in self._devices.values():
            try:
                dev.close()
            except Exception:  # noqa: BLE001 - releasing the rest matters more
                log.exception("closing %r", dev)
        self._devices.clear()


class GpiodPins:
    """libgpiod v2 lines requested by offset on ``cfg.gpiochip``; a thread turns edges into callbacks."""

    def __init__(self, cfg: DoorConfig, on_change: OnChange) -> None:
        try:
            import gpiod
            from gpiod.line import Bias, Direction, Edge, Value
        except ImportError:
            raise DoorError("door.backend = \"gpiod\" needs libgpiod's Python bindings: "
                            "pip install 'gpiod>=2.1' (or maskgate[gpiod])") from None
        self.name = "gpiod"
        self._gpiod, self._Value, self._Direction, self._Bias = gpiod, Value, Direction, Bias
        from datetime import timedelta

        pins = _pin_map(cfg)
        self._offsets = pins
        out_settings = {"relay": gpiod.LineSettings(direction=Direction.OUTPUT, output_value=Value.INACTIVE,
                                                    active_low=not cfg.relay_active_high)}
        for out in ("led", "buzzer"):
            if out in pins:
                out_settings[out] = gpiod.LineSettings(direction=Direction.OUTPUT, output_value=Value.INACTIVE)
        in_settings = gpiod.LineSettings(
            direction=Direction.INPUT, edge_detection=Edge.BOTH,
            bias=Bias.PULL_UP if cfg.pull_up else Bias.PULL_DOWN, active_low=cfg.pull_up,
            debounce_period=timedelta(seconds=cfg.bounce_s))
        config: dict[int, Any] = {pins[o]: s for o, s in out_settings.items()}
        config.update({pins[i]: in_settings for i in INPUTS if i in pins})
        try:
            self._req = gpiod.request_lines(cfg.gpiochip, consumer="maskgate", config=config)
        except (OSError, ValueError) as e:
            raise DoorError(f"cannot request lines {sorted(config)} on {cfg.gpiochip}: {e} (check "
                            f"door.gpiochip, the pin offsets (gpioinfo lists them) and membership of "
                            f"the gpio group)") from None
        self.inputs = tuple(i for i in INPUTS if i in pins)
        self._by_offset = {pins[i]: i for i in self.inputs}
        self._last = {i: self.active(i) for i in self.inputs}
        self._on_change = on_change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.inputs:
            self._thread = threading.Thread(target=self._watch, name="door-gpiod", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._req.wait_edge_events(0.2):
                    continue
                offsets = {e.line_offset for e in self._req.read_edge_events()}
            except Exception:  # noqa: BLE001 - released while waiting, or the chip went away
                if not self._stop.is_set():
                    log.exception("gpiod input watch failed")
                return
            for off in sorted(offsets):
                name = self._by_offset.get(off)
                if name is None:
                    continue
                now = self.active(name)  # the level now, not the edge type: bounces settle here
                if now != self._last[name]:
                    self._last[name] = now
                    self._on_change(name, now)

    def set(self, output: str, on: bool) -> None:
        if output in self._offsets:
            self._req.set_value(self._offsets[output], self._Value.ACTIVE if on else self._Value.INACTIVE)

    def active(self, input_name: str) -> bool:
        return self._req.get_value(self._offsets[input_name]) == self._Value.ACTIVE

    def close(self) -> None:
        if not self._req:
            return
        self._stop.set()
        try:
            self.set("relay", False)
            # Hand the relay line back as an input with a pull-down: whatever the driver does with a
            # released line, the external pull-down (and this bias, where the SoC supports it) win.
            self._req.reconfigure_lines({self._offsets["relay"]: self._gpiod.LineSettings(
                direction=self._Direction.INPUT, bias=self._Bias.PULL_DOWN)})
        finally:
            self._req.release()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)


class Door:
    """The door's logic over a set of pins; see the module docstring for the rules it keeps."""

    def __init__(self, cfg: DoorConfig, make_pins: Callable[[OnChange], Pins]) -> None:
        self.cfg = cfg
        self._cond = threading.Condition(threading.RLock())
        self._listeners: list[Listener] = []
        self._events: deque[Event] = deque()
        self._closed = False
        self._relay = False
        self._relay_until = 0.0
        self._relocked_at = -math.inf
        self._unlocked_by: str | None = None
        self._contact_open: bool | None = None
        self._opened_at = 0.0
        self._opened_in_grant = False
        self._alarms: set[str] = set()
        self._steady = "idle"
        self._transient: tuple[str, float] | None = None
        self._done_count = 0   # "done" patterns played (a USB stick dealt with), for status watchers
        self._shown: tuple[str, float] = ("idle", time.monotonic())
        self._outputs = (None, None)
        self._pins = make_pins(self._on_input)
        try:
            self._pins.set("relay", False)
            if "contact" in self._pins.inputs:
                self._contact_open = not self._pins.active("contact")
                self._opened_at = time.monotonic()
                if self._contact_open:
                    log.warning("door contact reads open at start (door ajar or contact wiring cut)")
        except Exception:
            self._pins.close()
            raise
        self._thread = threading.Thread(target=self._run, name="door", daemon=True)
        self._thread.start()
        atexit.register(self.close)
        log.info("door ready: backend %s, relay GPIO %d (%s), inputs %s", self._pins.name, cfg.relay_pin,
                 "active high" if cfg.relay_active_high else "active low", ", ".join(self._pins.inputs) or "none")

    # ---- the interface the gate and the service use ----

    def grant(self, by: str = "grant", card: str | None = None) -> None:
        """Pulse the relay for ``open_s`` (returns at once); a second grant extends the pulse.
        ``card`` is for Wiegand out, which only the door keeper sends (edge.keeper): this in-process
        door (replay, diag) pulses its relay in every ``door.mode``."""
        with self._cond:
            if self._closed:
                raise DoorError("the door is closed; open it again with open_door()")
            now = time.monotonic()
            was_on = self._relay
            self._relay_until = now + self.cfg.open_s
            self._unlocked_by = by
            if not was_on:
                # Pin first, state second: a signal handler's lock() landing in between leaves
                # the state "on" with the pin off, never the other way round.
                self._pins.set("relay", True)
                self._relay = True
                self._opened_in_grant = False
            if by == "grant":
                self._transient = ("granted", now)
            self._queue({"event": "door", "action": "unlock", "by": by, "open_s": self.cfg.open_s})
            self._cond.notify_all()

    def lock(self, reason: str = "lock") -> None:
        """Relay off now (safe to call any time, from any thread, also from a signal handler)."""
        with self._cond:
            self._relock(reason)
            self._cond.notify_all()

    def indicate(self, pattern: str) -> None:
        """Show a state on the LED / buzzer: steady ``idle``/``busy``/``lockout``/``fault``, or play
        ``granted``/``denied`` once. An alarm or an open relay take precedence."""
        if pattern not in PATTERNS or pattern in ("open", "alarm"):
            raise ValueError(f"unknown pattern {pattern!r} (one of {', '.join(STEADY + TRANSIENT)})")
        with self._cond:
            if pattern in TRANSIENT:
                self._transient = (pattern, time.monotonic())
                if pattern == "done":   # counted: a status watcher cannot miss a short pattern
                    self._done_count += 1
            else:
                self._steady = pattern
            self._cond.notify_all()

    def on_event(self, callback: Listener) -> None:
        """Call ``callback(event)`` for every door event (from the door's own thread)."""
        with self._cond:
            self._listeners.append(callback)

    def status(self) -> dict[str, Any]:
        with self._cond:
            contact = "none" if self._contact_open is None else "open" if self._contact_open else "closed"
            return {"backend": self._pins.name if not self._closed else "closed",
                    "relay": "on" if self._relay else "off", "locked": not self._relay,
                    "unlocked_by": self._unlocked_by if self._relay else None, "contact": contact,
                    "alarms": sorted(self._alarms), "pattern": self._shown[0], "done": self._done_count}

    @property
    def relay_on(self) -> bool:
        return self._relay

    @property
    def closed(self) -> bool:
        """True once ``close()`` has driven the relay off and released the pins."""
        return self._closed

    def close(self) -> None:
        """Relay off, LED and buzzer off, pins released. Idempotent; also runs at exit."""
        with self._cond:
            if self._closed:
                return
            try:
                self._relock("close")
            finally:
                self._closed = True  # from here no thread touches the pins but this one
                self._cond.notify_all()
        try:
            self._pins.set("led", False)
            self._pins.set("buzzer", False)
        finally:
            self._pins.close()  # outside the lock: an input thread may be waiting for it
        atexit.unregister(self.close)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._dispatch()
        log.info("door closed: relay off, pins released")

    def __enter__(self) -> "Door":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- inside (call with the lock held) ----

    def _queue(self, event: Event) -> None:
        self._events.append(event)

    def _relock(self, reason: str) -> None:
        if self._closed:
            return
        self._pins.set("relay", False)  # always, even if we think it is off
        if self._relay:
            self._relay = False
            self._relocked_at = time.monotonic()
            self._queue({"event": "door", "action": "lock", "reason": reason})

    def _alarm(self, name: str, active: bool, **info: Any) -> None:
        if active == (name in self._alarms):
            return
        (self._alarms.add if active else self._alarms.discard)(name)
        self._queue({"event": "alarm", "alarm": name, "active": active, **info})
        (log.warning if active else log.info)("alarm %s %s", name, "raised" if active else "cleared")

    def _on_input(self, name: str, active: bool) -> None:
        """A GPIO callback (any thread): record and queue; the door thread does the rest."""
        with self._cond:
            if self._closed:
                return
            now = time.monotonic()
            if name == "contact":
                is_open = not active
                if is_open == self._contact_open:
                    return
                self._contact_open = is_open
                self._queue({"event": "door", "action": "contact", "open": is_open})
                if is_open:
                    self._opened_at = now
                    allowed = self._relay or now - self._relocked_at <= self.cfg.forced_grace_s
                    self._opened_in_grant = self._relay
                    if not allowed:
                        self._alarm("forced", True)
                else:
                    if self._relay and self._opened_in_grant:
                        self._relock("door closed")  # one opening per grant: no tailgating on it
                    self._alarm("held_open", False)
                    self._alarm("forced", False)
            elif active:  # rex / alt_entry: a press or a keypad's dry contact closing
                self._queue({"event": "door", "action": "input", "input": name})
                self._cond.notify_all()
                self.grant(by=name)
                return
            self._cond.notify_all()

    def _pattern(self, now: float) -> tuple[str, float]:
        """The pattern to show now and when it started (its phase)."""
        if self._alarms:
            name = "alarm"
        elif self._transient is not None and PATTERNS[self._transient[0]].at(now - self._transient[1])[2] < math.inf:
            return self._transient
        else:
            self._transient = None
            name = "open" if self._relay else self._steady
        return name, self._shown[1] if name == self._shown[0] else now

    def _tick(self, now: float) -> float:
        """Apply every rule due at ``now``; return the seconds until the next one."""
        wait = math.inf
        if self._relay:
            if now >= self._relay_until:
                self._relock("timeout")
            else:
                wait = min(wait, self._relay_until - now)
        if self._contact_open and "held_open" not in self._alarms:
            due = self._opened_at + self.cfg.held_open_s
            if now >= due:
                self._alarm("held_open", True, seconds=self.cfg.held_open_s)
            else:
                wait = min(wait, due - now)
        self._shown = self._pattern(now)
        name, start = self._shown
        led, buzzer, nxt = PATTERNS[name].at(now - start)
        if (led, buzzer) != self._outputs:
            self._outputs = (led, buzzer)
            self._pins.set("led", led)
            self._pins.set("buzzer", buzzer)
        return min(wait, nxt)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                try:
                    wait = self._tick(time.monotonic())
                except Exception:  # noqa: BLE001 - whatever broke, the door must end up locked
                    log.exception("door timing failed; relay off")
                    self._relock("fault")
                    wait = 0.5
                if not self._events:
                    self._cond.wait(None if wait == math.inf else max(wait, 0.0))
            self._dispatch()

    def _dispatch(self) -> None:
        while True:
            with self._cond:
                if not self._events:
                    return
                event = self._events.popleft()
                listeners = list(self._listeners)
            for cb in listeners:
                try:
                    cb(event)
                except Exception:  # noqa: BLE001 - a broken listener must not stop the door
                    log.exception("door listener %r failed on %s", cb, event)


def open_door(cfg: DoorConfig, pin_factory: Any = None) -> Door:
    """The door on the backend the config names, relay off; ``pin_factory`` overrides gpiozero's
    (tests pass a ``MockFactory`` to look at the pins)."""
    if cfg.backend == "gpiod":
        return Door(cfg, lambda cb: GpiodPins(cfg, cb))
    if cfg.backend == "mock" and pin_factory is None:
        from gpiozero.pins.mock import MockFactory

        pin_factory = MockFactory()
    name = "mock" if cfg.backend == "mock" else "gpiozero"
    return Door(cfg, lambda cb: GpiozeroPins(cfg, cb, pin_factory, name=name))
