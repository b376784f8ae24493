"""Wiegand out (edge.wiegand_out, ``[door] mode``): a grant handed to an access panel as a card frame.

A keeper in this process on gpiozero MockFactory pins that record every edge with its time; the edges
are decoded back with edge.wiegand's own assembler and decoder (parity included), as a panel would.
The gate's grants go through the keeper's socket, as in ``maskgate run``.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from edge.config import Config, from_dict, replace
from edge.errors import ConfigError, DoorError
from edge.keeper import Keeper, KeeperDoor
from edge.wiegand import FrameAssembler, decode

RELAY, D0, D1 = 17, 20, 21
GAP_S = 0.25  # silence that ends a frame here (a panel: about 25 ms); generous for a busy machine


class Lines:
    """The three lines a test watches: every change as (monotonic time, pin, level)."""

    def __init__(self) -> None:
        self.edges: list[tuple[float, int, bool]] = []
        edges = self.edges

        class RecordingPin(MockPin):
            def _change_state(self, value):
                changed = super()._change_state(value)
                if changed:
                    edges.append((time.monotonic(), int(self.info.name[4:]), value))  # GPIO20 -> 20
                return changed

        self.factory = MockFactory()
        for n in (RELAY, D0, D1):
            self.factory.pin(n, pin_class=RecordingPin)

    def frames(self) -> list:
        """Falling edges on D0 / D1 as bits, cut into frames by silence, decoded (parity checked)."""
        asm, out = FrameAssembler(GAP_S), []
        falls = [(t, n) for t, n, v in self.edges if n in (D0, D1) and v is False]
        for t, n in falls:
            done = asm.bit(0 if n == D0 else 1, t)
            if done is not None:
                out.append(decode(done))
        if falls:
            out.append(decode(asm.poll(falls[-1][0] + GAP_S)))
        return out

    def pulses(self) -> tuple[list[float], list[float]]:
        """Each pulse's width (low until high again on the same line) and the gaps between pulse starts."""
        widths, starts = [], []
        low: dict[int, float] = {}
        for t, n, v in self.edges:
            if n not in (D0, D1):
                continue
            if v is False:
                low[n] = t
                starts.append(t)
            elif n in low:
                widths.append(t - low.pop(n))
        return widths, [b - a for a, b in zip(starts, starts[1:])]

    def relay_on_at(self) -> list[float]:
        return [t for t, n, v in self.edges if n == RELAY and v is True]


def start(state: Path, **door) -> tuple[Keeper, Lines, threading.Thread]:
    lines = Lines()
    cfg = replace(Config(), "door", open_s=0.5, wiegand_d0_pin=D0, wiegand_d1_pin=D1, **door)
    k = Keeper(cfg, state, pin_factory=lines.factory)
    lines.edges.clear()  # the lines' idle levels set at start are not part of any frame
    t = threading.Thread(target=k.serve, daemon=True)
    t.start()
    return k, lines, t


@pytest.fixture
def keepers(state: Path):
    running: list = []

    def make(**door):
        k, lines, t = start(state, **door)
        running.append((k, t))
        return k, lines

    yield make
    for k, t in running:
        k.stop.set()
        t.join(5)
        k.close()


def audit(state: Path, action: str) -> list[dict]:
    lines = (state / "audit.log").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == "door" and e.get("action") == action]


# ---- the frames on the lines ----

@pytest.mark.parametrize("bits, card", [(26, "16777215"), (26, "8456789"), (34, "4294967295"), (34, "305419896")])
def test_the_frame_on_the_lines_decodes_to_the_card_sent(keepers, state, bits, card):
    k, lines = keepers(mode="wiegand", wiegand_bits=bits)
    KeeperDoor(k.path).grant(card=card)
    frames = lines.frames()
    assert [(f.bits, f.value) for f in frames] == [(bits, int(card))]
    widths, gaps = lines.pulses()
    assert len(widths) == bits and min(widths) >= 45e-6       # 50 us pulses (sender busy-waits them)
    assert len(gaps) == bits - 1 and min(gaps) >= 1.9e-3       # 2 ms apart
    assert sorted(gaps)[len(gaps) // 2] < 10e-3                # and not a slow trickle
    assert lines.relay_on_at() == []                           # mode "wiegand": the relay stays off
    assert [(e["sent"], e["bits"], e["source"]) for e in audit(state, "wiegand")] == [(True, bits, "card")]


def test_a_flipped_bit_on_the_recorded_lines_fails_parity(keepers):
    """The check is real: the same recording with one bit moved to the other line is refused."""
    from edge.wiegand import WiegandError

    k, lines = keepers(mode="wiegand")
    KeeperDoor(k.path).grant(card="1234567")
    i = next(j for j, (_, n, v) in enumerate(lines.edges) if n == D0 and v is False)
    t, _, _ = lines.edges[i]
    lines.edges[i] = (t, D1, False)
    with pytest.raises(WiegandError, match="parity"):
        lines.frames()


# ---- the gate's grant, through the keeper ----

class Vault:
    def __init__(self, card: str | None) -> None:
        self.card = card

    def find(self, pid):  # what the access rules and Wiegand out read
        return SimpleNamespace(id=pid, groups=(), valid_from=None, valid_until=None, card=self.card)

    def name_of(self, pid):
        return "Demo Person"

    def touch(self, pid):
        pass


def gate_grant(k: Keeper, card: str | None) -> dict:
    from edge.gate import Gate
    from edge.match import Match

    gate = Gate(k.cfg, Vault(card), None, KeeperDoor(k.path), None, lambda ev: None)
    gate._grant(2.0, Match("p-0123456789abcdef", 0.9, 0.1))
    return gate.decisions[-1]


def test_a_gate_grant_in_mode_wiegand_sends_the_persons_card_and_leaves_the_relay_off(keepers, state):
    k, lines = keepers(mode="wiegand")
    d = gate_grant(k, "12345678")
    assert d["granted"] is True and d["who"] == "Demo Person"
    assert [(f.bits, f.value) for f in lines.frames()] == [(26, 12345678)]
    assert lines.relay_on_at() == []
    assert audit(state, "unlock") == []


def test_a_gate_grant_in_mode_both_pulses_the_relay_first_then_sends_the_card(keepers, state):
    k, lines = keepers(mode="both", wiegand_bits=34)
    d = gate_grant(k, "3000000000")
    assert d["granted"] is True
    assert [(f.bits, f.value) for f in lines.frames()] == [(34, 3000000000)]
    on = lines.relay_on_at()
    first_bit = min(t for t, n, v in lines.edges if n in (D0, D1))
    assert len(on) == 1 and on[0] < first_bit
    assert [e["by"] for e in audit(state, "unlock")] == ["grant"]


def test_a_card_too_big_for_the_frame_is_refused_said_and_audited(keepers, state):
    k, lines = keepers(mode="both")  # 26 bits: 24 data bits, at most 16777215
    d = gate_grant(k, "16777216")
    assert d["granted"] is True                     # the relay still opens: door behaviour unchanged
    assert len(lines.relay_on_at()) == 1
    assert lines.frames() == []                     # and no frame cut down to fit
    [a] = audit(state, "wiegand")
    assert a["sent"] is False and "does not fit a 26-bit frame" in a["error"]


def test_in_mode_wiegand_a_refused_card_lets_nobody_in_and_says_why(keepers, state):
    k, lines = keepers(mode="wiegand")
    d = gate_grant(k, "99999999999")
    assert d["granted"] is False
    assert "sent no Wiegand frame" in d["reason"] and "does not fit a 26-bit frame" in d["reason"]
    assert lines.edges == []


def test_a_person_without_a_card_and_no_default_gets_nothing_sent_and_is_not_let_in(keepers, state):
    k, lines = keepers(mode="wiegand")
    d = gate_grant(k, None)
    assert d["granted"] is False and "no card and door.wiegand_default is empty" in d["reason"]
    assert lines.edges == [] and audit(state, "wiegand")[0]["sent"] is False


def test_a_person_without_a_card_gets_the_configured_default(keepers, state):
    k, lines = keepers(mode="wiegand", wiegand_default="12,3456")  # facility 12, card 3456
    d = gate_grant(k, None)
    assert d["granted"] is True
    assert [f.value for f in lines.frames()] == [12 * 65536 + 3456]
    assert audit(state, "wiegand")[-1]["source"] == "default"


def test_mode_relay_sends_no_frame_and_opens_no_wiegand_lines(state):
    lines = Lines()
    k = Keeper(replace(Config(), "door", open_s=0.5), state, pin_factory=lines.factory)
    try:
        assert k.wiegand is None
        k.handle({"op": "grant", "card": "42"})
        assert [n for _, n, _ in lines.edges if n in (D0, D1)] == []
        assert lines.relay_on_at()
    finally:
        k.close()


# ---- configuration ----

@pytest.mark.parametrize("door, claim, says", [
    ({"mode": "wiegand"}, {}, 'door.mode = "wiegand" needs door.wiegand_d0_pin and door.wiegand_d1_pin'),
    ({"mode": "both", "wiegand_d0_pin": 17, "wiegand_d1_pin": 21}, {},
     "door.relay_pin and door.wiegand_d0_pin are both GPIO 17"),
    ({"mode": "both", "wiegand_d0_pin": 20, "wiegand_d1_pin": 20}, {},
     "door.wiegand_d0_pin and door.wiegand_d1_pin are both GPIO 20"),
    ({"mode": "both", "wiegand_d0_pin": 20, "wiegand_d1_pin": 5, "led_pin": 5}, {},
     "door.led_pin and door.wiegand_d1_pin are both GPIO 5"),
    ({"mode": "both", "wiegand_d0_pin": 20, "wiegand_d1_pin": 21},
     {"reader": "wiegand", "wiegand_d0_pin": 21, "wiegand_d1_pin": 22},
     "claim.wiegand_d0_pin and door.wiegand_d1_pin are both GPIO 21"),
    ({"mode": "both", "wiegand_d0_pin": 20, "wiegand_d1_pin": 21, "wiegand_bits": 37}, {},
     "door.wiegand_bits must be 26 or 34, not 37"),
    ({"mode": "wiegand", "wiegand_d0_pin": 20, "wiegand_d1_pin": 21, "wiegand_default": "99999999"}, {},
     "door.wiegand_default 99999999 does not fit a 26-bit frame (at most 16777215)"),
    ({"mode": "wiegand", "wiegand_d0_pin": 20, "wiegand_d1_pin": 21, "wiegand_default": "x"}, {},
     "door.wiegand_default must be a card number"),
    ({"mode": "wiegand", "wiegand_d0_pin": 20, "wiegand_d1_pin": 21, "contact_pin": 4}, {},
     'door.mode = "wiegand": the access panel drives the lock, so door.contact_pin'),
    ({"mode": "panel"}, {}, "door.mode must be one of relay, wiegand, both"),
])
def test_config_errors_name_the_keys(door, claim, says):
    with pytest.raises(ConfigError) as e:
        from_dict({"door": door, **({"claim": claim} if claim else {})})
    assert says in str(e.value)


def test_a_keeper_whose_wiegand_lines_cannot_be_opened_says_so_and_leaves_the_relay_off(state):
    factory = MockFactory()
    from gpiozero import DigitalOutputDevice

    held = DigitalOutputDevice(D1, pin_factory=factory)  # another device owns D1
    try:
        with pytest.raises(DoorError, match="Wiegand out on GPIO 20/21"):
            Keeper(replace(Config(), "door", mode="wiegand", wiegand_d0_pin=D0, wiegand_d1_pin=D1), state,
                   pin_factory=factory)
        assert factory.pin(RELAY).state is False
    finally:
        held.close()
