"""Claim mode end to end on real clips: real landmarks, embedder, vault, liveness and mock pins.

The demo person (card 1001, a PIN) is enrolled from the bundled frames, which are not in the clip,
and a second person (card 2002) from d18.mp4. On the demo clip, the demo person is let in with their
own card or PIN and kept out with the other person's card, an unknown card, a wrong PIN or nothing;
the other person (d18.mp4) is kept out with the demo person's card. (d6.mp4 is not used: its one
blink comes before the gate's blink prompt, so it fails liveness before any claim is judged.) Cards also arrive as reader input: Wiegand
pulses on simulated GPIO lines and a USB reader's recorded key events.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, ROOT, Events, maskgate
from edge import claim as claims
from edge.camera import Frame, frames
from edge.camera.replay import ReplaySource, demo_clip
from edge.config import Config, replace
from edge.door import open_door
from edge.gate import Gate, build
from edge.vault import Vault
from edge.vision import landmarks

ENROLL = Path(demo_clip()).parent / "enroll"
DEMO_CARD, OTHER_CARD, PIN = "1001", "2002", "2468"
CLAIM = replace(Config(), "match", mode="claim")


def footage(path: Path) -> list:
    with landmarks.for_video(max_faces=2) as lm:
        return [(f, lm.detect(f.image)) for f in frames(ReplaySource(path))]


@pytest.fixture(scope="module")
def demo_footage() -> list:
    return footage(Path(demo_clip()))


@pytest.fixture(scope="module")
def d18_footage() -> list:
    return footage(FIXTURES / "d18.mp4")


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("state")
    # --pin asks on the terminal; without one (a session of its own) getpass reads stdin
    p = subprocess.run([sys.executable, "-m", "edge.cli", "enroll", "Demo Person", "--from", str(ENROLL),
                        "--consent", "form 1", "--card", "00" + DEMO_CARD, "--pin", "--state", str(state)],
                       input=f"{PIN}\n{PIN}\n", text=True, capture_output=True, timeout=300, cwd=ROOT,
                       start_new_session=True)
    assert p.returncode == 0 and PIN not in p.stdout, p.stderr
    r = maskgate("enroll", "Other Person", "--from", FIXTURES / "d18.mp4", "--consent", "form 2", "--card",
                 OTHER_CARD, "--state", state)
    assert r.returncode == 0, r.stderr
    r = maskgate("enroll", "Third Person", "--from", FIXTURES / "d19.mp4", "--consent", "form 3", "--card",
                 OTHER_CARD, "--state", state)
    assert r.returncode == 2 and "card 2002 is already Other Person's" in r.stderr
    return state


def run(state: Path, clip: list, cfg: Config = CLAIM, claim=None, gate_hook=None,
        on_wait=None) -> tuple[Gate, Events]:
    events = Events()
    door = open_door(cfg.door)
    gate = build(cfg, state, door, None, events, challenges=["blink"])
    gate.rng = random.Random(1)
    if claim is not None:
        gate.present(claim)
    if gate_hook is not None:
        gate_hook(gate)
    try:
        for frame, faces in clip:
            gate.process(frame, faces)
            if on_wait is not None and events.of("waiting"):
                gate.present(on_wait)   # the resident takes out the card once asked for it
                on_wait = None
    finally:
        gate.close()
        door.close()
    return gate, events


def first(events: Events) -> dict:
    decisions = events.of("decision")
    assert decisions, "no decision"
    return decisions[0]


# ---------------------------------------------------------------- recordings through `maskgate replay --claim`

def test_replay_with_own_card_grants_and_with_another_persons_card_denies(state: Path, tmp_path: Path) -> None:
    config = tmp_path / "claim.toml"
    config.write_text('[match]\nmode = "claim"\n')
    args = ["replay", demo_clip(), "--challenge", "blink", "--config", config, "--state", state, "--json"]
    r = maskgate(*args, "--claim", DEMO_CARD)
    assert r.returncode == 0, r.stderr
    lines = r.json_lines()
    assert [c["claim"] for c in lines if c["event"] == "claim"] == [f"card {DEMO_CARD}"]
    d = [x for x in lines if x["event"] == "decision"][0]
    assert d["granted"] and d["who"] == "Demo Person" and d["claim"] == f"card {DEMO_CARD}", d
    [m] = [x for x in lines if x["event"] == "match"][:1]
    assert m["score"] >= m["threshold"] and m["claimed"] == ["Demo Person"]

    r = maskgate(*args, "--claim", OTHER_CARD)
    assert r.returncode == 1, r.stderr
    d = [x for x in r.json_lines() if x["event"] == "decision"][0]
    assert not d["granted"] and d["who"] is None
    assert d["reason"] == "face does not match the card's holder" and d["claimed"] == ["Other Person"], d
    audit = maskgate("audit", "show", "--json", "--state", state).json_lines()
    claimed = [a for a in audit if a.get("event") == "decision" and a.get("claim")]
    assert [(a["granted"], a["claim"], a["reason"]) for a in claimed[-2:]] == [
        (True, f"card {DEMO_CARD}", "recognised and live"),
        (False, f"card {OTHER_CARD}", "face does not match the card's holder")]

    r = maskgate("replay", demo_clip(), "--claim", "12ab", "--config", config, "--state", state)
    assert r.returncode == 2 and "is not a card number" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------- the same decisions, in process

def test_unknown_card_or_none_is_denied(state: Path, demo_footage: list) -> None:
    gate, ev = run(state, demo_footage, claim=claims.card("9999"))
    d = first(ev)
    assert not d["granted"] and d["reason"] == "unknown card" and d["claim"] == "card 9999"
    assert not any(e["granted"] for e in ev.of("decision")) and not ev.of("door")
    gate, ev = run(state, demo_footage, cfg=replace(CLAIM, "claim", timeout_s=1.0))
    assert first(ev)["reason"] == "no card or PIN presented (match.mode = claim)"
    assert not any(e["granted"] for e in ev.of("decision"))
    # no challenge asked of a face that no card came with: the gate waited for one, then said so
    wait = ev.of("waiting")[0]
    assert wait["on"] == "claim" and first(ev)["t"] - wait["t"] >= 1.0
    assert not [e for e in ev.of("challenge") if e.get("step")]


def test_a_card_shown_while_the_gate_waits_starts_the_challenge(state: Path, demo_footage: list) -> None:
    gate, ev = run(state, demo_footage, on_wait=claims.card(DEMO_CARD))
    kinds = [e["event"] for e in ev]
    assert kinds.index("waiting") < kinds.index("claim") < kinds.index("challenge")
    d = first(ev)
    assert d["granted"] and d["who"] == "Demo Person" and d["claim"] == f"card {DEMO_CARD}"


def test_the_other_person_with_the_demo_persons_card_is_denied(state: Path, d18_footage: list) -> None:
    gate, ev = run(state, d18_footage, claim=claims.card(DEMO_CARD))
    decisions = ev.of("decision")
    assert decisions and not any(d["granted"] for d in decisions)
    assert decisions[0]["reason"] == "face does not match the card's holder", decisions[0]
    assert decisions[0]["score"] < gate.threshold


def test_own_pin_grants_a_wrong_pin_denies_and_counts_toward_lockout(state: Path, demo_footage: list) -> None:
    vault = Vault.open(state)
    gate, ev = run(state, demo_footage, claim=claims.pin(PIN, vault, source="test"))
    d = first(ev)
    assert d["granted"] and d["who"] == "Demo Person" and d["claim"] == "PIN", d
    assert all(PIN not in str(e) for e in ev)
    cfg = replace(CLAIM, "gate", max_failures=1, lockout_s=30.0)
    gate, ev = run(state, demo_footage, cfg=cfg, claim=claims.pin("1357", vault))
    d = first(ev)
    assert not d["granted"] and d["reason"] == "wrong PIN"
    [alarm] = ev.of("alarm")
    assert alarm["kind"] == "lockout" and alarm["failures"] == 1


def test_a_claim_during_lockout_or_in_identify_mode_is_ignored(state: Path, demo_footage: list) -> None:
    vault = Vault.open(state)
    cfg = replace(CLAIM, "gate", max_failures=1, lockout_s=300.0)
    later = claims.card(DEMO_CARD)

    def present_after_lockout(gate: Gate) -> None:
        real = gate._emit

        def emit(e: dict) -> None:
            real(e)
            if e["event"] == "alarm":
                gate.present(later)
        gate._emit = emit

    gate, ev = run(state, demo_footage, cfg=cfg, claim=claims.pin("0000", vault), gate_hook=present_after_lockout)
    assert [d["reason"] for d in ev.of("decision")] == ["wrong PIN"]
    assert ev.of("claim")[-1] == {"t": ev.of("claim")[-1]["t"], "event": "claim", "claim": f"card {DEMO_CARD}",
                                  "source": "", "ignored": "locked out"}
    gate, ev = run(state, demo_footage, cfg=Config(), claim=claims.card(OTHER_CARD))
    assert ev.of("claim")[0]["ignored"] == "match.mode = identify"
    d = first(ev)
    assert d["granted"] and d["who"] == "Demo Person" and "claim" not in d   # the face alone decided


def test_either_mode_identifies_without_a_claim_and_honours_one(state: Path, demo_footage: list) -> None:
    either = replace(Config(), "match", mode="either")
    gate, ev = run(state, demo_footage, cfg=either)
    d = first(ev)
    assert d["granted"] and d["who"] == "Demo Person" and d["reason"] == "recognised and live"
    gate, ev = run(state, demo_footage, cfg=either, claim=claims.card(OTHER_CARD))
    assert first(ev)["reason"] == "face does not match the card's holder"


def test_a_claim_expires_when_no_face_comes(state: Path, demo_footage: list) -> None:
    cfg = replace(CLAIM, "claim", timeout_s=1.0)
    blank = np.zeros((64, 64, 3), np.uint8)
    empty = [(Frame(blank, i / 10, i), []) for i in range(20)]          # 2 s of nobody
    later = [(Frame(f.image, f.t + 2.0, f.index + 20), faces) for f, faces in demo_footage]
    gate, ev = run(state, empty + later, cfg=cfg, claim=claims.card(DEMO_CARD))
    assert ev.of("claim")[-1]["expired"] is True
    assert first(ev)["reason"] == "no card or PIN presented (match.mode = claim)"


def test_claim_threshold_is_the_one_person_threshold(state: Path) -> None:
    from edge.embed import Embedder
    from edge.match import gate_threshold

    emb = Embedder(Config().embed)
    assert claims.claim_threshold(emb, Config().match) == gate_threshold(1, emb, Config().match)[0]
    assert claims.claim_threshold(emb, Config().match, 2) >= claims.claim_threshold(emb, Config().match)


# ---------------------------------------------------------------- reader input events into the gate

def test_wiegand_pulses_on_simulated_lines_open_for_the_cards_holder(state: Path, demo_footage: list) -> None:
    from gpiozero.pins.mock import MockFactory

    from edge import wiegand

    factory = MockFactory()
    cfg = replace(replace(CLAIM, "claim", reader="wiegand", wiegand_d0_pin=5, wiegand_d1_pin=6,
                          wiegand_gap_ms=200.0), "door", backend="mock")
    events = Events()
    door = open_door(cfg.door)
    gate = build(cfg, state, door, None, events, challenges=["blink"])
    presented: list = []

    def present(c: claims.Claim) -> None:
        presented.append(c)
        gate.present(c)

    def pulses(frame: list[int]) -> None:
        for b in frame:            # as a reader drives the lines: a short low pulse per bit
            pin = factory.pin(6 if b else 5)
            pin.drive_low()
            pin.drive_high()
            time.sleep(0.002)

    def wait(n: int) -> None:
        end = time.monotonic() + 5
        while len(presented) < n and time.monotonic() < end:
            time.sleep(0.01)

    reader = claims.open_reader(cfg, present, gate.vault, pin_factory=factory)
    try:
        bad = wiegand.encode(3003, 26)
        bad[3] ^= 1                # a misread: parity fails, nothing is presented
        pulses(bad)
        time.sleep(0.5)
        for i, card in enumerate((OTHER_CARD, DEMO_CARD)):   # the last card presented counts
            pulses(wiegand.encode(int(card), 26))
            wait(i + 1)
            time.sleep(0.3)
        for frame, faces in demo_footage:
            gate.process(frame, faces)
    finally:
        reader.close()
        gate.close()
        door.close()
    assert [(c.card, c.source) for c in presented] == [(OTHER_CARD, "wiegand-26"), (DEMO_CARD, "wiegand-26")]
    d = first(events)
    assert d["granted"] and d["who"] == "Demo Person" and d["claim"] == f"card {DEMO_CARD}"


def test_usb_reader_key_events_present_the_card(state: Path, demo_footage: list) -> None:
    evdev = pytest.importorskip("evdev")
    from test_claim import TOP, typed

    from edge.claim.keyboard import decode_events

    events = typed([TOP[c] for c in "0000002002"] + [evdev.ecodes.KEY_ENTER])
    entries = decode_events(events)
    assert entries == [("card", "0000002002")]
    gate, ev = run(state, demo_footage, claim=claims.card(entries[0][1], source="keyboard"))
    d = first(ev)
    assert not d["granted"] and d["reason"] == "face does not match the card's holder"
    assert d["claim"] == "card 2002" and ev.of("claim")[0]["source"] == "keyboard"


# ---------------------------------------------------------------- what the resident sees in claim mode

class Screens:
    """A display that keeps every image it is shown (drawn by the real renderer, from the gate's events)."""

    size = (320, 192)

    def __init__(self) -> None:
        self.seen: list[bytes] = []

    def show(self, rgb: np.ndarray) -> None:
        self.seen.append(rgb.tobytes())

    def close(self) -> None:
        pass


def test_claim_mode_screens_ask_for_the_card_and_say_what_went_wrong(state: Path, demo_footage: list,
                                                                     d18_footage: list) -> None:
    """The gate's own claim and decision events drive the screen: "present your card" before one is
    read, "card read" after, and the claim-mode denials in plain words, in the configured language."""
    from edge.display.follow import attach
    from edge.display.i18n import translator
    from edge.display.messages import Screen
    from edge.display.render import Renderer

    cfg = replace(replace(replace(CLAIM, "sound", enabled=False), "display", language="zh_CN"), "claim", timeout_s=1.0)
    draw = Renderer(Screens.size, "zh_CN", translator("zh_CN"))

    def seen(clip: list, claim=None) -> list[bytes]:
        disp = Screens()
        nobody = (Frame(np.zeros_like(clip[0][0].image), clip[0][0].t, 0), [])   # before the person arrives
        run(state, [nobody, *clip], cfg=cfg, claim=claim, gate_hook=lambda g: attach(g, cfg, display=disp))
        return disp.seen

    def at(shown: list[bytes], screen: Screen) -> int:
        img = draw.render(screen).tobytes()
        assert img in shown, screen
        return shown.index(img)

    shown = seen(demo_footage)
    # no card: "present your card" all along (no challenge is asked), then the denial in plain words
    assert at(shown, Screen("claim")) < at(shown, Screen("denied", reason="claim_needed"))
    assert draw.render(Screen("checking")).tobytes() not in shown
    assert draw.render(Screen("claim_read", reason="card")).tobytes() not in shown
    shown = seen(demo_footage, claims.card("9999"))
    assert at(shown, Screen("claim_read", reason="card")) < at(shown, Screen("denied", reason="card_unknown"))
    assert draw.render(Screen("claim")).tobytes() not in shown[:at(shown, Screen("denied", reason="card_unknown"))]
    shown = seen(d18_footage, claims.card(DEMO_CARD))
    assert at(shown, Screen("claim_read", reason="card")) < at(shown, Screen("denied", reason="card_mismatch"))
    shown = seen(demo_footage, claims.pin("1357", Vault.open(state)))
    assert at(shown, Screen("claim_read", reason="pin")) < at(shown, Screen("denied", reason="pin_wrong"))
    assert draw.render(Screen("welcome")).tobytes() not in shown
    shown = seen(demo_footage, claims.card(DEMO_CARD))
    assert at(shown, Screen("claim_read", reason="card")) < at(shown, Screen("welcome"))
