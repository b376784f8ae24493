"""The door on gpiozero's own MockFactory pins: relay polarity and pulse length, contact, exit button,
alternative entry, alarms, LED / buzzer, and fail-secure exits in a real child process."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from gpiozero.pins.mock import MockFactory

from conftest import ROOT
from edge.config import DoorConfig
from edge.door import PATTERNS, Pattern, open_door
from edge.errors import DoorError

RELAY, CONTACT, REX, ALT, LED, BUZZER = 17, 22, 23, 24, 25, 27


def wait_for(pred, timeout: float = 3.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.005)
    return pred()


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


def make(factory, **kw):
    cfg = DoorConfig(**{"backend": "mock", "open_s": 0.4, "contact_pin": CONTACT, "rex_pin": REX,
                        "alt_entry_pin": ALT, "led_pin": LED, "buzzer_pin": BUZZER, **kw})
    door = open_door(cfg, pin_factory=factory)
    events: list[dict] = []
    door.on_event(events.append)
    factory.pin(CONTACT).drive_low()  # the door is shut (contact closed to ground)
    assert wait_for(lambda: {"event": "door", "action": "contact", "open": False} in events)
    events.clear()
    return door, events


@pytest.mark.parametrize("active_high, off_level", [(True, False), (False, True)])
def test_relay_is_off_from_the_start_in_either_polarity(factory, active_high, off_level):
    door = open_door(DoorConfig(backend="mock", relay_active_high=active_high), pin_factory=factory)
    relay = factory.pin(RELAY)
    try:
        assert relay.function == "output"
        assert relay.state == off_level
        # states[0] is the undriven mock input before set-up; once an output it was never "on"
        assert [s.state for s in relay.states[1:]] in ([], [off_level])
        door.grant()
        assert relay.state == (not off_level)
    finally:
        door.close()
    assert relay.state == off_level


def test_grant_pulses_for_open_s_without_blocking(factory):
    door, events = make(factory, open_s=0.4)
    relay = factory.pin(RELAY)
    relay.clear_states()
    door.grant()
    assert relay.state is True, "grant() must return while the pulse is still on"
    assert wait_for(lambda: relay.state is False, 3)
    on, off = relay.states[1], relay.states[2]
    assert on.state is True and off.state is False
    assert off.timestamp == pytest.approx(0.4, abs=0.1)  # seconds the relay stayed on
    assert events[0] == {"event": "door", "action": "unlock", "by": "grant", "open_s": 0.4}
    assert wait_for(lambda: {"event": "door", "action": "lock", "reason": "timeout"} in events)
    door.close()


def test_second_grant_extends_the_pulse(factory):
    door, _ = make(factory, open_s=0.4)
    relay = factory.pin(RELAY)
    relay.clear_states()
    door.grant()
    time.sleep(0.25)
    door.grant()
    assert wait_for(lambda: relay.state is False, 3)
    assert [s.state for s in relay.states] == [False, True, False]
    assert relay.states[2].timestamp == pytest.approx(0.65, abs=0.12)
    door.close()


def test_lock_turns_the_relay_off_now(factory):
    door, events = make(factory, open_s=10)
    door.grant()
    door.lock()
    assert factory.pin(RELAY).state is False
    assert wait_for(lambda: events[-1:] == [{"event": "door", "action": "lock", "reason": "lock"}])
    door.close()


def test_relocks_when_the_door_has_opened_and_shut(factory):
    door, events = make(factory, open_s=10)
    relay, contact = factory.pin(RELAY), factory.pin(CONTACT)
    door.grant()
    contact.drive_high()  # opened
    assert relay.state is True
    contact.drive_low()  # shut again: one opening per grant
    assert relay.state is False
    assert wait_for(lambda: {"event": "door", "action": "lock", "reason": "door closed"} in events)
    assert not door.status()["alarms"]
    door.close()


def test_forced_door_alarm_and_buzzer(factory):
    door, events = make(factory, forced_grace_s=0.2)
    contact, buzzer = factory.pin(CONTACT), factory.pin(BUZZER)
    contact.drive_high()  # opened with no grant, no exit button, no alternative entry
    assert wait_for(lambda: {"event": "alarm", "alarm": "forced", "active": True} in events)
    assert wait_for(lambda: buzzer.state is True)
    assert factory.pin(RELAY).state is False
    contact.drive_low()
    assert wait_for(lambda: {"event": "alarm", "alarm": "forced", "active": False} in events)
    assert wait_for(lambda: buzzer.state is False)
    door.close()


def test_opening_just_after_a_relock_is_not_forced(factory):
    door, events = make(factory, open_s=0.2, forced_grace_s=1.0)
    door.grant()
    assert wait_for(lambda: factory.pin(RELAY).state is False)
    factory.pin(CONTACT).drive_high()  # a slow latch: the door swings as the relay drops
    time.sleep(0.1)
    assert "forced" not in door.status()["alarms"]
    door.close()


def test_held_open_alarm_after_held_open_s(factory):
    door, events = make(factory, open_s=5, held_open_s=0.3)
    contact = factory.pin(CONTACT)
    door.grant()
    t0 = time.monotonic()
    contact.drive_high()
    assert wait_for(lambda: "held_open" in door.status()["alarms"], 3)
    assert time.monotonic() - t0 >= 0.3
    assert {"event": "alarm", "alarm": "held_open", "active": True, "seconds": 0.3} in events
    assert "forced" not in door.status()["alarms"]
    contact.drive_low()
    assert wait_for(lambda: {"event": "alarm", "alarm": "held_open", "active": False} in events)
    door.close()


@pytest.mark.parametrize("pin, name", [(REX, "rex"), (ALT, "alt_entry")])
def test_exit_button_and_alternative_entry_open_the_door(factory, pin, name):
    door, events = make(factory, open_s=0.3)
    relay, inp = factory.pin(RELAY), factory.pin(pin)
    relay.clear_states()
    inp.drive_low()  # pressed / the keypad's dry contact closes
    assert relay.state is True
    inp.drive_high()
    assert relay.state is True  # releasing the button does not cut the pulse short
    assert wait_for(lambda: relay.state is False)
    assert relay.states[2].timestamp == pytest.approx(0.3, abs=0.1)
    assert wait_for(lambda: {"event": "door", "action": "unlock", "by": name, "open_s": 0.3} in events)
    assert {"event": "door", "action": "input", "input": name} in events
    factory.pin(CONTACT).drive_high()  # the opening that follows is not forced
    time.sleep(0.05)
    assert "forced" not in door.status()["alarms"]
    door.close()


def test_pull_down_wiring_reads_inputs_the_other_way(factory):
    door = open_door(DoorConfig(backend="mock", rex_pin=REX, pull_up=False), pin_factory=factory)
    rex = factory.pin(REX)
    assert rex.pull == "down"
    rex.drive_high()
    assert factory.pin(RELAY).state is True
    door.close()


def test_denied_pattern_beeps_three_times(factory):
    door, _ = make(factory)
    buzzer = factory.pin(BUZZER)
    buzzer.clear_states()
    door.indicate("denied")
    assert wait_for(lambda: door.status()["pattern"] == "idle" and len(buzzer.states) >= 7, 3)
    assert [s.state for s in buzzer.states] == [False, True, False, True, False, True, False]
    # each beep 0.15 s: a sleep never ends early, and a loaded machine may wake the thread late
    assert all(0.13 <= s.timestamp <= 0.45 for s in buzzer.states[2::2]), [s.timestamp for s in buzzer.states]
    with pytest.raises(ValueError):
        door.indicate("party")
    door.close()


def test_led_follows_the_relay_and_the_steady_state(factory):
    door, _ = make(factory, open_s=0.3)
    led = factory.pin(LED)
    assert led.state is False
    door.grant()
    assert wait_for(lambda: led.state is True)
    assert wait_for(lambda: led.state is False and door.status()["relay"] == "off")
    door.indicate("busy")  # slow blink while a challenge runs
    assert wait_for(lambda: led.state is True) and wait_for(lambda: led.state is False)
    door.close()
    assert led.state is False


def test_pattern_timeline():
    p = Pattern(((True, False, 0.5), (False, False, 0.5)), repeat=True)
    assert p.at(0.1) == (True, False, pytest.approx(0.4))
    assert p.at(1.2)[:2] == (True, False)
    assert p.at(1.7)[:2] == (False, False)
    assert PATTERNS["denied"].at(10) == (False, False, math.inf)


def test_close_releases_pins_and_refuses_grants(factory):
    door, _ = make(factory, open_s=30)
    door.grant()
    door.close()
    relay = factory.pin(RELAY)
    assert relay.state is False and relay.function == "input"
    assert door.status()["relay"] == "off"
    with pytest.raises(DoorError):
        door.grant()
    door.close()  # idempotent


def test_two_roles_on_one_pin_is_refused(factory):
    with pytest.raises(DoorError, match="both GPIO 17"):
        open_door(DoorConfig(backend="mock", rex_pin=17), pin_factory=factory)


def test_gpiozero_on_a_board_that_is_not_a_pi_says_what_to_do(monkeypatch):
    from gpiozero.devices import Device

    monkeypatch.setattr(Device, "pin_factory", None)
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "lgpio")  # no Pi pin library here, as on a Jetson
    with pytest.raises(DoorError, match="gpiod"):
        open_door(DoorConfig(backend="gpiozero"))


def test_gpiod_backend_reports_a_clear_error_without_hardware():
    """Where libgpiod's bindings are missing the error says how to install them; where they exist
    but the chip does not, it names the chip. (No gpio-sim here: see docs/installer.md, "On a Jetson".)"""
    with pytest.raises(DoorError) as e:
        open_door(DoorConfig(backend="gpiod", gpiochip="/dev/gpiochip-missing"))
    assert "gpiod" in str(e.value) and "\n" not in str(e.value)


CHILD = textwrap.dedent("""
    import atexit, json, sys, threading, time
    from gpiozero.pins.mock import MockFactory
    from edge.config import DoorConfig
    from edge.door import open_door
    from edge import lifecycle

    factory = MockFactory()
    relay = factory.pin(17)
    def report():  # registered first, so it runs after the door's own exit hook
        print(json.dumps({"relay": relay.state, "function": relay.function,
                          "history": [s.state for s in relay.states]}), flush=True)
    atexit.register(report)
    door = open_door(DoorConfig(backend="mock", open_s=30), pin_factory=factory)
    mode = sys.argv[1]
    stop = threading.Event()
    if mode != "no-handlers":
        lifecycle.install_signal_handlers(stop, door)
    door.grant()
    print("ON", relay.state, flush=True)
    if mode == "raise":
        raise RuntimeError("a bug in the loop")
    if mode == "exit":
        sys.exit(0)
    while not stop.wait(0.05):
        pass
    print("LOOP-END relay", relay.state, flush=True)  # the handler already drove it off
""")


def _child(mode: str, sig: int | None = None) -> tuple[int, list[str]]:
    p = subprocess.Popen([sys.executable, "-c", CHILD, mode], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    first = p.stdout.readline()
    assert first.strip() == "ON True", p.stderr.read()
    if sig is not None:
        p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    return p.returncode, [first.strip(), *out.splitlines()], err


@pytest.mark.parametrize("mode, sig, code", [("signals", signal.SIGTERM, 0), ("signals", signal.SIGINT, 0),
                                             ("raise", None, 1), ("exit", None, 0)])
def test_fail_secure_in_a_real_process(mode, sig, code):
    rc, lines, err = _child(mode, sig)
    assert rc == code, (lines, err)
    report = json.loads(lines[-1])
    assert report == {"relay": False, "function": "input", "history": [False, True, False]}, (lines, err)
    if sig is not None:
        assert "LOOP-END relay False" in lines


def test_without_the_service_handlers_sigterm_skips_every_exit_hook():
    """Why service.run installs handlers: Python's default SIGTERM ends the process with no
    atexit and no finally, leaving the relay as it was (the wiring's pull-down is the last line)."""
    rc, lines, _ = _child("no-handlers", signal.SIGTERM)
    assert rc == -signal.SIGTERM
    assert lines == ["ON True"]


# ---- the gpiod backend against a stand-in for libgpiod's v2 bindings (no gpio-sim here) ----

class FakeRequest:
    """What ``gpiod.request_lines`` returns: line values by offset, edge events fed by the test."""

    def __init__(self, config: dict, Value) -> None:
        self.Value = Value
        self.settings = dict(config)
        self.values = {off: s.output_value if s.direction == "output" else
                       (Value.INACTIVE if s.active_low else Value.ACTIVE) for off, s in config.items()}
        self.history: dict[int, list] = {off: [v] for off, v in self.values.items()}
        self.events: list = []
        self.released = False
        import threading

        self.cv = threading.Condition()

    def set_value(self, off, v):
        assert not self.released and self.settings[off].direction == "output"
        self.values[off] = v
        self.history[off].append(v)

    def get_value(self, off):
        return self.values[off]

    def wait_edge_events(self, timeout):
        with self.cv:
            return self.cv.wait_for(lambda: self.events or self.released, timeout) and not self.released

    def read_edge_events(self):
        with self.cv:
            out, self.events = self.events, []
        return out

    def press(self, off, active: bool):  # a switch on an input line (levels as the request reports them)
        import types as _t

        with self.cv:
            self.values[off] = self.Value.ACTIVE if active else self.Value.INACTIVE
            self.events.append(_t.SimpleNamespace(line_offset=off))
            self.cv.notify_all()

    def reconfigure_lines(self, config):
        self.settings.update(config)

    def release(self):
        with self.cv:
            self.released = True
            self.cv.notify_all()


@pytest.fixture
def fake_gpiod(monkeypatch):
    import enum
    import types

    line = types.ModuleType("gpiod.line")

    class Value(enum.Enum):
        INACTIVE = 0
        ACTIVE = 1

    line.Value = Value
    line.Direction = types.SimpleNamespace(INPUT="input", OUTPUT="output")
    line.Bias = types.SimpleNamespace(PULL_UP="pull-up", PULL_DOWN="pull-down")
    line.Edge = types.SimpleNamespace(BOTH="both")
    gpiod = types.ModuleType("gpiod")
    gpiod.line = line
    requests: list[FakeRequest] = []

    class LineSettings:
        def __init__(self, direction="input", output_value=Value.INACTIVE, active_low=False, bias=None,
                     edge_detection=None, debounce_period=None):
            self.direction, self.output_value, self.active_low = direction, output_value, active_low
            self.bias, self.edge_detection, self.debounce_period = bias, edge_detection, debounce_period

    def request_lines(chip, consumer, config):
        if chip != "/dev/gpiochip0":
            raise OSError(2, "No such file or directory")
        requests.append(FakeRequest(config, Value))
        return requests[-1]

    gpiod.LineSettings, gpiod.request_lines = LineSettings, request_lines
    monkeypatch.setitem(sys.modules, "gpiod", gpiod)
    monkeypatch.setitem(sys.modules, "gpiod.line", line)
    return requests, Value


def test_gpiod_backend_drives_the_relay_reads_inputs_and_releases_it_pulled_down(fake_gpiod):
    requests, Value = fake_gpiod
    cfg = DoorConfig(backend="gpiod", open_s=0.3, contact_pin=CONTACT, rex_pin=REX, relay_active_high=False)
    door = open_door(cfg)
    req = requests[0]
    events: list[dict] = []
    door.on_event(events.append)
    relay = req.settings[RELAY]
    assert relay.direction == "output" and relay.active_low is True  # polarity is libgpiod's job
    assert req.history[RELAY] == [Value.INACTIVE, Value.INACTIVE]  # requested off, and driven off again
    assert req.settings[CONTACT].bias == "pull-up" and req.settings[CONTACT].active_low is True
    door.grant()
    assert req.values[RELAY] is Value.ACTIVE
    assert wait_for(lambda: req.values[RELAY] is Value.INACTIVE, 2)  # the pulse ends by itself
    req.press(REX, True)  # the exit button: an edge, then the level read back
    assert wait_for(lambda: {"event": "door", "action": "input", "input": "rex"} in events)
    assert wait_for(lambda: req.values[RELAY] is Value.ACTIVE)
    door.close()
    assert req.values[RELAY] is Value.INACTIVE
    assert req.settings[RELAY].direction == "input" and req.settings[RELAY].bias == "pull-down"
    assert req.released


def test_gpiod_backend_names_the_chip_it_cannot_open(fake_gpiod):
    with pytest.raises(DoorError, match="cannot request lines .* on /dev/gpiochip9: .*gpioinfo"):
        open_door(DoorConfig(backend="gpiod", gpiochip="/dev/gpiochip9"))
