"""Claim mode's parts: card numbers and PINs, the sealed credentials, the key decoding of USB card
readers and keypads (from recorded events, and through /dev/uinput where it exists), the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, maskgate
from edge import claim as claims
from edge.claim.credentials import ClaimError, check_pin, normalise_card
from edge.claim.keyboard import KeyEntry, decode_events
from edge.config import Config, VaultConfig, from_dict
from edge.errors import ConfigError, VaultError
from edge.vault import VAULT_FILE, Vault

evdev = pytest.importorskip("evdev")
e = evdev.ecodes
BOARD = "board-a"

# HID usage ids of the keys (what a USB reader's MSC_SCAN event carries before each key)
SCAN = {**{e.KEY_1 + i: 0x7001E + i for i in range(9)}, e.KEY_0: 0x70027, e.KEY_ENTER: 0x70028,
        **{e.KEY_KP1 + i: 0x70059 + i for i in range(3)}, **{e.KEY_KP4 + i: 0x7005C + i for i in range(3)},
        **{e.KEY_KP7 + i: 0x7005F + i for i in range(3)}, e.KEY_KP0: 0x70062, e.KEY_KPENTER: 0x70058,
        e.KEY_KPASTERISK: 0x70055, e.KEY_LEFTSHIFT: 0x700E1, e.KEY_3: 0x70020, e.KEY_8: 0x70025,
        e.KEY_ESC: 0x70029}
TOP = {str(d): getattr(e, f"KEY_{d}") for d in range(10)}
PAD = {**{str(d): getattr(e, f"KEY_KP{d}") for d in range(10)}, "*": e.KEY_KPASTERISK}


def press(code: int, t: float, events: list, value: int = 1) -> None:
    """One key as a USB HID keyboard reports it: scan code, key event, report boundary."""
    sec, usec = int(t), int(round((t - int(t)) * 1e6))
    events += [(sec, usec, e.EV_MSC, e.MSC_SCAN, SCAN.get(code, 0)), (sec, usec, e.EV_KEY, code, value),
               (sec, usec, e.EV_SYN, e.SYN_REPORT, 0)]


def typed(keys: list[int], t0: float = 1000.0, dt: float = 0.008, shift: set[int] = frozenset()) -> list:
    """Key down and up for each key, ``dt`` apart (a card reader types a key every few ms); the keys
    at the positions in ``shift`` are typed with Shift held."""
    events: list = []
    t = t0
    for i, code in enumerate(keys):
        if i in shift:
            press(e.KEY_LEFTSHIFT, t, events)
        press(code, t, events)
        press(code, t + dt / 2, events, value=0)
        if i in shift:
            press(e.KEY_LEFTSHIFT, t + dt / 2, events, value=0)
        t += dt
    return events


# ---------------------------------------------------------------- numbers and PINs

def test_card_numbers_are_canonical() -> None:
    assert normalise_card("0012345678") == normalise_card(" 12345678 ") == "12345678"
    assert normalise_card("12,3456") == normalise_card("12:3456") == str(12 * 65536 + 3456)
    for bad in ("", "12a4", "1" * 21, "70000,1", "-5"):
        with pytest.raises(ClaimError):
            normalise_card(bad)


def test_pins_are_4_to_12_digits_and_errors_never_quote_them() -> None:
    assert check_pin("0042") == "0042"
    for bad in ("123", "1234567890123", "12a4", "١٢٣٤"):
        with pytest.raises(ClaimError) as err:
            check_pin(bad)
        assert bad not in str(err.value)


# ---------------------------------------------------------------- key decoding (recorded events)

def test_usb_card_reader_digits_then_enter_is_a_card() -> None:
    events = typed([TOP[c] for c in "0012345678"] + [e.KEY_ENTER])
    assert decode_events(events) == [("card", "0012345678")]
    assert claims.card("0012345678").card == "12345678"


def test_keypad_star_digits_enter_or_hash_is_a_pin() -> None:
    events = typed([PAD[c] for c in "*2580"] + [e.KEY_KPENTER], dt=0.4)          # a person: slower
    events += typed([e.KEY_8, TOP["7"], TOP["1"], TOP["3"], TOP["9"], e.KEY_3], t0=1010, dt=0.3,
                    shift={0, 5})                                  # Shift+8 = *, Shift+3 = #
    assert decode_events(events) == [("pin", "2580"), ("pin", "7139")]


def test_key_repeats_releases_and_shifted_digits_are_not_digits() -> None:
    events = typed([TOP["1"], TOP["2"]])
    press(TOP["2"], 1000.02, events, value=2)                      # autorepeat of a held key
    events += typed([e.KEY_5], t0=1000.03, shift={0})              # Shift+5 = "%"
    events += typed([TOP["3"], e.KEY_ENTER], t0=1000.05)
    assert decode_events(events) == [("card", "123")]


def test_clear_and_a_long_pause_forget_what_was_typed() -> None:
    events = typed([TOP["9"], TOP["9"], e.KEY_ESC, TOP["4"], e.KEY_ENTER])
    events += typed([PAD["*"], PAD["1"], PAD["2"]], t0=2000, dt=0.5)
    events += typed([PAD["3"], PAD["4"], e.KEY_KPENTER], t0=2020, dt=0.5)   # 18 s later: a new entry
    assert decode_events(events) == [("card", "4"), ("card", "34")]
    assert decode_events(typed([e.KEY_ENTER, e.KEY_KPENTER])) == []          # Enter alone: nothing


def test_wiegand_keypad_entries_are_pins() -> None:
    keys = KeyEntry(plain="pin")
    got = [keys.key(k, 5 + i) for i, k in enumerate("4711#")]
    assert got[-1] == ("pin", "4711") and got[:-1] == [None] * 4


@pytest.mark.skipif(not os.access("/dev/uinput", os.W_OK), reason="no writable /dev/uinput here (CI, dev machines)")
def test_keyboard_reader_through_uinput() -> None:
    import time

    from edge.claim.keyboard import KeyboardReader

    caps = {e.EV_KEY: sorted(set(TOP.values()) | set(PAD.values()) | {e.KEY_ENTER, e.KEY_KPENTER})}
    got: list = []
    with evdev.UInput(caps, name="maskgate test card reader") as ui:
        time.sleep(0.3)   # udev makes the node
        reader = KeyboardReader(ui.device.path, lambda kind, digits: got.append((kind, digits)))
        try:
            for code in [TOP[c] for c in "0099887766"] + [e.KEY_ENTER] + [PAD[c] for c in "*1357"] + [e.KEY_KPENTER]:
                ui.write(e.EV_KEY, code, 1)
                ui.syn()
                ui.write(e.EV_KEY, code, 0)
                ui.syn()
            end = time.monotonic() + 3
            while len(got) < 2 and time.monotonic() < end:
                time.sleep(0.02)
        finally:
            reader.close()
    assert got == [("card", "0099887766"), ("pin", "1357")]


# ---------------------------------------------------------------- credentials in the vault

def unit(rng: np.random.Generator, n: int, dim: int = 64) -> list[np.ndarray]:
    x = rng.standard_normal((n, dim))
    return list((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))


def test_cards_and_pin_hashes_are_sealed_unique_and_survive_rekey(state: Path) -> None:
    rng = np.random.default_rng(3)
    v = Vault.open(state, VaultConfig(), device_id=BOARD)
    a = v.add("alice", unit(rng, 2), "form 1", card="1001", pin=v.pin_record("2468"))
    b = v.add("bob", unit(rng, 2), "form 2")
    with pytest.raises(VaultError, match="card 1001 is already alice's"):
        v.add("carol", unit(rng, 2), "form 3", card="1001")
    with pytest.raises(VaultError, match="already alice's"):
        v.set_credentials("bob", card="1001")
    v.set_credentials("bob", card="2002", pin=v.pin_record("2468"))     # the same PIN is allowed
    raw = (state / VAULT_FILE).read_bytes()
    assert b"1001" not in raw and b"2468" not in raw                    # sealed
    again = Vault.open(state, VaultConfig(), device_id=BOARD)
    assert again.card_holder("1001").id == a and again.card_holder("9") is None
    assert [p.pin for p in again.people()] == [True, True]
    assert "pin" not in str(again.people()[0].to_dict()).replace("'pin': True", "")   # no hash shown
    holders = {p.id for p in again.pin_holders(claims.pin("2468", again).digests)}
    assert holders == {a, b}
    assert again.pin_holders(claims.pin("2469", again).digests) == []
    again.rekey()
    assert {p.id for p in again.pin_holders(claims.pin("2468", again).digests)} == {a, b}
    again.set_credentials("alice", card=None, pin=None)
    assert again.card_holder("1001") is None
    assert [p.id for p in again.pin_holders(claims.pin("2468", again).digests)] == [b]


def test_credentials_travel_in_bundles_and_verify_on_the_other_gate(tmp_path: Path) -> None:
    from nacl.signing import SigningKey

    rng = np.random.default_rng(4)
    installer = SigningKey.generate()
    old = Vault.open(tmp_path / "old", device_id="old-board")
    new = Vault.open(tmp_path / "new", VaultConfig(trusted_keys=[bytes(installer.verify_key).hex()]),
                     device_id="new-board")
    pid = old.add("gina", unit(rng, 2), "form 4", card="555", pin=old.pin_record("9753"))
    new.add("hal", unit(rng, 2), "form 5", pin=new.pin_record("9753"))
    [p] = new.import_bundle(old.export_bundle(new.public_key(), bytes(installer)))
    assert p.card == "555" and p.pin
    assert len(new.pin_salts()) == 2      # hers was made under the old gate's salt, and still verifies
    assert {q.name for q in new.pin_holders(claims.pin("9753", new).digests)} == {"gina", "hal"}
    clash = Vault.open(tmp_path / "clash", VaultConfig(trusted_keys=[bytes(installer.verify_key).hex()]),
                       device_id="c-board")
    clash.add("ivan", unit(rng, 2), "form 6", card="555")
    with pytest.raises(VaultError, match="card 555 is already ivan's"):
        clash.import_bundle(old.export_bundle(clash.public_key(), bytes(installer)))
    assert pid not in {q.id for q in clash.people()}


def test_config_mode_and_claim_section() -> None:
    cfg = from_dict({"match": {"mode": "either"}, "claim": {"reader": "wiegand", "wiegand_d0_pin": 5,
                                                             "wiegand_d1_pin": 6}})
    assert cfg.match.mode == "either" and cfg.claim.wiegand_gap_ms == 25.0
    assert Config().match.mode == "identify" and Config().claim.reader == "none"
    with pytest.raises(ConfigError, match="match.mode must be one of identify, claim, either"):
        from_dict({"match": {"mode": "card"}})
    with pytest.raises(ConfigError, match="claim.wiegand_d1_pin"):
        claims.open_reader(from_dict({"claim": {"reader": "wiegand", "wiegand_d0_pin": 5}}), print, None)
    with pytest.raises(ConfigError, match="also \\[door\\] pins"):
        claims.open_reader(from_dict({"claim": {"reader": "wiegand", "wiegand_d0_pin": 17, "wiegand_d1_pin": 6}}),
                           print, None)
    with pytest.raises(ConfigError, match="needs claim.device"):
        claims.open_reader(from_dict({"claim": {"reader": "keyboard"}}), print, None)


# ---------------------------------------------------------------- the CLI (PINs typed, never in argv)

def run_typing(args: list[str], typed_in: str) -> subprocess.CompletedProcess:
    """The command in a session of its own (no controlling terminal), so getpass reads stdin."""
    return subprocess.run([sys.executable, "-m", "edge.cli", *map(str, args)], input=typed_in, text=True,
                          capture_output=True, timeout=300, cwd=ROOT, start_new_session=True)


def test_templates_set_card_and_pin_from_the_cli(state: Path) -> None:
    rng = np.random.default_rng(5)
    v = Vault.open(state, VaultConfig())
    v.add("alice", unit(rng, 2), "form 1")
    v.add("bob", unit(rng, 2), "form 2", card="77")
    r = maskgate("templates", "set-card", "alice", "0000077", "--state", state)
    assert r.returncode == 2 and "card 77 is already bob's" in r.stderr and "Traceback" not in r.stderr
    r = maskgate("templates", "set-card", "alice", "12,3456", "--state", state)
    assert r.returncode == 0 and f"card {12 * 65536 + 3456}" in r.stdout, r.stderr
    r = run_typing(["templates", "set-pin", "alice", "--state", state], "1234\n1243\n")
    assert r.returncode == 2 and "the two PINs differ" in r.stderr
    r = run_typing(["templates", "set-pin", "alice", "--state", state], "12\n12\n")
    assert r.returncode == 2 and "4 to 12 digits" in r.stderr
    r = run_typing(["templates", "set-pin", "alice", "--state", state], "8642\n8642\n")
    assert r.returncode == 0 and "alice" in r.stdout and "8642" not in r.stdout + r.stderr, r.stderr
    r = maskgate("templates", "list", "--json", "--state", state)
    rows = {p["name"]: p for p in r.json_lines()}
    assert (rows["alice"]["card"], rows["alice"]["pin"]) == (str(12 * 65536 + 3456), True)
    assert (rows["bob"]["card"], rows["bob"]["pin"]) == ("77", False)
    assert "8642" not in r.stdout
    text = maskgate("templates", "list", "--state", state).stdout
    assert f"card={12 * 65536 + 3456} pin=set" in text and "card=77 pin=-" in text
    assert maskgate("templates", "clear-pin", "alice", "--state", state).returncode == 0
    assert maskgate("templates", "clear-card", "bob", "--state", state).returncode == 0
    again = Vault.open(state, VaultConfig())
    assert not again.find("alice").pin and again.card_holder("77") is None
    log = maskgate("audit", "show", "--json", "--state", state).stdout
    assert "vault.set-pin" in log and "vault.clear-card" in log and "8642" not in log


# ---------------------------------------------------------------- diag, the daemon's reader, enrolment input

def test_diag_claim_checks_the_reader(state: Path) -> None:
    import threading
    import time

    from gpiozero.pins.mock import MockFactory

    from edge import diag, wiegand

    def ctx(data: dict, yes: bool = False, factory=None) -> diag.Context:
        return diag.Context(from_dict(data), state, yes, factory)

    assert diag.check_claim(ctx({})).status == "ok"
    f = diag.check_claim(ctx({"match": {"mode": "claim"}}))
    assert f.status == "fail" and "nobody can present a card" in f.detail
    assert diag.check_claim(ctx({"match": {"mode": "either"}})).status == "warn"
    f = diag.check_claim(ctx({"match": {"mode": "claim"}, "claim": {"reader": "keyboard", "device": "/dev/input/nope"}}))
    assert f.status == "fail" and "/dev/input/nope" in f.detail
    wiring = {"match": {"mode": "claim"}, "claim": {"reader": "wiegand", "wiegand_d0_pin": 5, "wiegand_d1_pin": 6,
                                                     "wiegand_gap_ms": 100.0}}
    f = diag.check_claim(ctx(wiring, factory=MockFactory()))
    assert f.status == "ok" and "Wiegand D0=GPIO5 D1=GPIO6" in f.detail

    factory = MockFactory()

    def present_card() -> None:
        time.sleep(0.5)
        for b in wiegand.encode(65536 * 12 + 3456, 26):
            pin = factory.pin(6 if b else 5)
            pin.drive_low()
            pin.drive_high()
            time.sleep(0.002)

    threading.Thread(target=present_card, daemon=True).start()
    f = diag.check_claim(ctx(wiring, yes=True, factory=factory))
    assert f.status == "ok" and f.detail.endswith(f"read card {65536 * 12 + 3456}"), f


def test_a_reader_that_will_not_open_leaves_the_daemon_running(state: Path) -> None:
    from edge import service
    from edge.audit import AuditLog

    audit = AuditLog(state, Config().audit)
    cfg = from_dict({"match": {"mode": "claim"}, "claim": {"reader": "keyboard", "device": "/dev/input/nope"}})

    class G:
        vault = None

        def present(self, c) -> None:
            raise AssertionError("nothing to present")

    assert service._open_claim_reader(cfg, G(), audit) is None
    assert service._open_claim_reader(Config(), G(), audit) is None
    [entry] = [e for e in audit.tail(10) if e.get("event") == "service"]
    assert entry["action"] == "degraded" and entry["reason"].startswith("claim reader: ")


def test_enrol_refuses_a_bad_card_before_anything_else(state: Path) -> None:
    r = maskgate("enroll", "x", "--from", ROOT / "edge/demo/enroll", "--consent", "form", "--card", "12ab",
                 "--state", state)
    assert r.returncode == 2 and "is not a card number" in r.stderr and "Traceback" not in r.stderr
    assert Vault.open(state).people() == []
