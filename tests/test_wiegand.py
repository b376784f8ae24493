"""Wiegand 26/34 frames, keypad keys, and the receiver / sender on simulated GPIO lines (gpiozero's
MockFactory pins, driven as a reader drives them: 50 us low pulses about 2 ms apart)."""

from __future__ import annotations

import threading
import time

import pytest
from gpiozero.pins.mock import MockConnectedPin, MockFactory
from hypothesis import given, strategies as st

from edge import wiegand
from edge.wiegand import FrameAssembler, WiegandError, WiegandReceiver, WiegandSender, decode, encode

D0, D1 = 5, 6


def bits(text: str) -> list[int]:
    return [int(c) for c in text.replace(" ", "")]


def test_w26_known_frame_facility_1_card_1() -> None:
    # data 00000001 0000000000000001; the first 12 data bits hold one 1 -> even parity bit 1,
    # the last 12 hold one 1 -> odd parity bit 0.
    frame = bits("1 00000001 0000000000000001 0")
    assert encode(65536 + 1, 26) == frame
    assert decode(frame) == wiegand.WiegandFrame(26, 65537)


@given(st.integers(0, (1 << 24) - 1))
def test_w26_round_trip(value: int) -> None:
    frame = encode(value, 26)
    assert len(frame) == 26 and decode(frame).value == value


@given(st.integers(0, (1 << 32) - 1))
def test_w34_round_trip(value: int) -> None:
    frame = encode(value, 34)
    assert len(frame) == 34 and decode(frame).value == value


@given(st.sampled_from([26, 34]), st.integers(0, 33), st.integers(0, 1 << 20))
def test_any_single_bit_error_is_rejected(n: int, flip: int, value: int) -> None:
    frame = encode(value, n)
    flip %= n
    frame[flip] ^= 1
    with pytest.raises(WiegandError, match="parity"):
        decode(frame)


def test_keypad_keys_4_and_8_bit() -> None:
    for key in "0123456789*#":
        assert decode(wiegand.encode_key(key, 4)).key == key
        assert decode(wiegand.encode_key(key, 8)).key == key
    with pytest.raises(WiegandError, match="complement"):
        decode(bits("0000 0001"))
    with pytest.raises(WiegandError, match="not a Wiegand 26 or 34"):
        decode([1] * 27)
    with pytest.raises(WiegandError, match="does not fit"):
        encode(1 << 24, 26)


def test_assembler_ends_frames_on_silence_whatever_the_bit_rate() -> None:
    asm = FrameAssembler(gap_s=0.025)
    frame = encode(123456, 26)
    t = 10.0
    for i, b in enumerate(frame):   # a slow reader: 18 ms between bits, jittered
        assert asm.bit(b, t) is None
        t += 0.018 + (0.004 if i % 3 else -0.003)
    assert asm.poll(t) is None   # 22 ms after the last bit: not yet silent for 25 ms
    assert asm.poll(t + 0.03) == frame
    # two frames back to back with only the gap between them: the second bit ends the first frame
    second = encode(42, 34)
    t = 20.0
    for b in frame:
        asm.bit(b, t)
        t += 0.001
    done = asm.bit(second[0], t + 0.03)
    assert done == frame


def pulse(pin, hold_s: float = 50e-6) -> None:
    pin.drive_low()
    time.sleep(hold_s)
    pin.drive_high()


def drive(factory: MockFactory, frame: list[int], interval_s: float = 0.002) -> None:
    p0, p1 = factory.pin(D0), factory.pin(D1)
    for b in frame:
        pulse(p1 if b else p0)
        time.sleep(interval_s)


# The receivers here wait 0.25 s of silence (a gate: 25 ms) so that a test thread descheduled on a
# busy machine does not split a frame; FrameAssembler's own test checks the timing logic exactly.
GAP_S = 0.25


def collect(factory: MockFactory) -> tuple[WiegandReceiver, list, list]:
    got: list = []
    errors: list = []
    rx = WiegandReceiver(D0, D1, got.append, backend="mock", pin_factory=factory, on_error=errors.append,
                         gap_s=GAP_S)
    return rx, got, errors


def wait_for(items: list, n: int, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while len(items) < n and time.monotonic() < end:
        time.sleep(0.01)


def test_receiver_decodes_frames_from_pulses_on_two_lines() -> None:
    factory = MockFactory()
    rx, got, errors = collect(factory)
    try:
        drive(factory, encode(0x12ABCD, 26))
        wait_for(got, 1)
        time.sleep(GAP_S + 0.05)
        drive(factory, encode(4000000000, 34), interval_s=0.001)
        wait_for(got, 2)
        for key in "12#":
            drive(factory, wiegand.encode_key(key, 4))
            time.sleep(GAP_S + 0.05)
        wait_for(got, 5)
    finally:
        rx.close()
    assert [(f.bits, f.value) for f in got[:2]] == [(26, 0x12ABCD), (34, 4000000000)]
    assert [f.key for f in got[2:]] == ["1", "2", "#"]
    assert errors == []


def test_receiver_rejects_a_frame_with_bad_parity_and_a_short_one() -> None:
    factory = MockFactory()
    rx, got, errors = collect(factory)
    try:
        frame = encode(777, 26)
        frame[5] ^= 1
        drive(factory, frame)
        wait_for(errors, 1)
        time.sleep(GAP_S + 0.05)
        drive(factory, [1, 0, 1, 1, 0, 1, 0])
        wait_for(errors, 2)
    finally:
        rx.close()
    assert got == []
    assert "parity" in errors[0] and "7 bits" in errors[1]


def test_sender_to_receiver_over_connected_mock_pins() -> None:
    factory = MockFactory()
    rx_d0, rx_d1 = factory.pin(D0), factory.pin(D1)
    factory.pin(20, pin_class=MockConnectedPin, input_pin=rx_d0)
    factory.pin(21, pin_class=MockConnectedPin, input_pin=rx_d1)
    rx, got, errors = collect(factory)
    tx = WiegandSender(20, 21, backend="mock", pin_factory=factory)
    try:
        t0 = time.perf_counter()
        tx.send_card(0xABCDEF, 26)
        elapsed = time.perf_counter() - t0
        wait_for(got, 1)
    finally:
        tx.close()
        rx.close()
    assert [(f.bits, f.value) for f in got] == [(26, 0xABCDEF)] and errors == []
    assert 26 * 0.002 <= elapsed < 1.0   # 2 ms a bit: the sender keeps the interval


def test_same_pin_for_both_lines_is_refused() -> None:
    with pytest.raises(WiegandError, match="both GPIO 5"):
        WiegandReceiver(5, 5, lambda f: None, backend="mock", pin_factory=MockFactory())
