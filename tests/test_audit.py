"""The hash-chained audit log: appends, tamper detection by line number, retention that keeps the
chain verifiable, torn-line recovery, the field filter, and ``maskgate audit verify|show``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from conftest import maskgate
from edge.audit import GENESIS, AuditError, AuditLog, line_hash, verify_file
from edge.config import AuditConfig


def filled(state: Path, n: int = 6, **cfg) -> AuditLog:
    log = AuditLog(state, AuditConfig(**cfg))
    for i in range(n):
        log.append("decision", granted=i % 2 == 0, who=f"p{i}", score=0.5 + i / 100, reason="test")
    return log


def lines(state: Path) -> list[bytes]:
    return (state / "audit.log").read_bytes().splitlines()


def write(state: Path, rows: list[bytes]) -> None:
    (state / "audit.log").write_bytes(b"".join(r + b"\n" for r in rows))


def check(state: Path):
    return verify_file(state / "audit.log", state / "audit.head")


def test_entries_are_chained_json_lines(state):
    log = filled(state, 3)
    rows = [json.loads(r) for r in lines(state)]
    assert [r["seq"] for r in rows] == [0, 1, 2]
    assert rows[0]["prev"] == GENESIS
    assert rows[1]["prev"] == line_hash(lines(state)[0])
    assert rows[2] | {"ts": "x"} == {"seq": 2, "ts": "x", "event": "decision", "granted": True, "who": "p2",
                                     "score": 0.52, "reason": "test", "prev": line_hash(lines(state)[1])}
    datetime.fromisoformat(rows[0]["ts"])
    assert log.verify() == (True, "3 entries, chain intact")
    head = json.loads((state / "audit.head").read_text())
    assert head == {"seq": 2, "hash": line_hash(lines(state)[2])}


def test_a_reopened_log_continues_the_chain(state):
    filled(state, 2)
    AuditLog(state).append("service", action="start")
    assert json.loads(lines(state)[2])["seq"] == 2
    assert check(state).ok


@pytest.mark.parametrize("how, bad_line", [
    ("edit", 3), ("remove", 3), ("swap", 3), ("remove-first", 1), ("remove-last", 6), ("garbage", 4),
    ("edit-last", 6),
])
def test_verify_names_the_first_bad_line(state, how, bad_line):
    filled(state, 6)
    rows = lines(state)
    if how == "edit":
        rows[2] = rows[2].replace(b'"granted":true', b'"granted":false')
    elif how == "remove":
        del rows[2]
    elif how == "swap":
        rows[2], rows[3] = rows[3], rows[2]
    elif how == "remove-first":
        del rows[0]
    elif how == "remove-last":
        del rows[-1]
    elif how == "edit-last":
        rows[5] = rows[5].replace(b'"who":"p5"', b'"who":"p9"')
    elif how == "garbage":
        rows[3] = b"{not json"
    write(state, rows)
    v = check(state)
    assert not v.ok and v.line == bad_line, v.detail
    assert f"line {bad_line}" in v.detail


def test_edit_that_also_fixes_the_next_prev_is_still_caught_further_on(state):
    filled(state, 5)
    rows = lines(state)
    rows[1] = rows[1].replace(b'"who":"p1"', b'"who":"px"')
    rows[2] = rows[2].replace(json.loads(rows[2])["prev"].encode(), line_hash(rows[1]).encode())
    write(state, rows)
    v = check(state)
    assert not v.ok and v.line == 3  # line 3 now hashes differently from what line 4 recorded


def test_cut_off_tail_is_caught_by_the_head_and_a_crash_window_is_not(state):
    filled(state, 4)
    rows = lines(state)
    head = json.loads((state / "audit.head").read_text())
    # A crash between writing line 4 and the head: the head is one behind, which is fine.
    (state / "audit.head").write_text(json.dumps({"seq": 2, "hash": line_hash(rows[2])}))
    assert check(state).ok
    (state / "audit.head").write_text(json.dumps(head))
    write(state, rows[:2])
    v = check(state)
    assert not v.ok and "seq 1" in v.detail and "seq 3" in v.detail
    (state / "audit.log").unlink()
    assert not check(state).ok


def test_torn_last_line_is_cut_and_recorded(state):
    filled(state, 3)
    path = state / "audit.log"
    with path.open("ab") as f:
        f.write(b'{"seq":3,"ts":"2030-01-01T00:00:00')  # power cut in the middle of a write
    v = check(state)
    assert not v.ok and v.line == 4 and "incomplete" in v.detail
    log = AuditLog(state)
    rows = [json.loads(r) for r in lines(state)]
    assert rows[-1]["event"] == "audit.torn_tail" and rows[-1]["bytes"] == 34 and rows[-1]["seq"] == 3
    assert log.verify()[0]


def test_retention_drops_old_entries_behind_a_verifiable_checkpoint(state):
    filled(state, 6, retention_days=30)
    rows = lines(state)
    old = (datetime.now(timezone.utc) - timedelta(days=40)).isoformat(timespec="milliseconds")
    # Make the first four entries 40 days old, re-chaining as a real 40-day-old log would be.
    prev, chained = GENESIS, []
    for i, raw in enumerate(rows):
        e = json.loads(raw)
        e["prev"] = prev
        if i < 4:
            e["ts"] = old
        raw = json.dumps(e, separators=(",", ":")).encode()
        chained.append(raw)
        prev = line_hash(raw)
    write(state, chained)
    (state / "audit.head").write_text(json.dumps({"seq": 5, "hash": prev}))
    assert check(state).ok
    log = AuditLog(state, AuditConfig(retention_days=30))  # retention runs when the log is opened
    kept = [json.loads(r) for r in lines(state)]
    assert kept[0]["event"] == "audit.checkpoint"
    assert kept[0]["dropped"] == 4 and kept[0]["last_seq"] == 3 and kept[0]["last_hash"] == line_hash(chained[3])
    assert [e["seq"] for e in kept[1:]] == [4, 5]
    assert check(state).ok, check(state).detail
    log.append("service", action="start")
    assert check(state).ok and json.loads(lines(state)[-1])["seq"] == 6
    # The kept part still detects tampering.
    rows = lines(state)
    rows[2] = rows[2].replace(b'"who":"p5"', b'"who":"zz"')
    write(state, rows)
    assert check(state).line == 3


def test_retention_zero_keeps_everything(state):
    filled(state, 3, retention_days=0)
    assert AuditLog(state, AuditConfig(retention_days=0)).purge(datetime.now(timezone.utc) + timedelta(days=9999)) == 0
    assert len(lines(state)) == 3


def test_retention_never_drops_the_last_entry(state):
    log = filled(state, 3, retention_days=1)
    assert log.purge(datetime.now(timezone.utc) + timedelta(days=5)) == 2
    rows = [json.loads(r) for r in lines(state)]
    assert [r["event"] for r in rows] == ["audit.checkpoint", "decision"]
    assert check(state).ok
    log.append("x", n=1)
    assert check(state).ok
    # A second retention run replaces the checkpoint instead of stacking them.
    assert log.purge(datetime.now(timezone.utc) + timedelta(days=5)) == 2
    rows = [json.loads(r) for r in lines(state)]
    assert [r["event"] for r in rows] == ["audit.checkpoint", "x"] and rows[0]["last_seq"] == 2
    assert check(state).ok


@pytest.mark.parametrize("value", [
    np.zeros(128, np.float32),                 # an embedding
    [0.91, 0.12, 0.33],                        # a raw score vector
    b"\xff\xd8\xff\xe0",                       # image bytes
    np.zeros((4, 4, 3), np.uint8),             # a frame
    "x" * 201,                                 # base64 of anything
    {"nested": 1},
    [1, 2],
])
def test_refuses_images_embeddings_and_score_vectors(state, value):
    log = AuditLog(state)
    with pytest.raises(AuditError):
        log.append("decision", data=value)
    assert not (state / "audit.log").exists()


def test_scalars_and_short_string_lists_are_fine(state):
    log = AuditLog(state)
    e = log.append("challenge", steps=["blink", "turn-left"], score=np.float32(0.75), n=np.int64(3), ok=None)
    assert e["steps"] == ["blink", "turn-left"] and e["score"] == pytest.approx(0.75) and e["n"] == 3
    with pytest.raises(AuditError):
        log.append("x", seq=3)  # reserved
    with pytest.raises(AuditError):
        log.append("Bad Event")


def test_cli_verify_and_show(state):
    filled(state, 5)
    r = maskgate("audit", "verify", "--state", state, "--json")
    assert r.returncode == 0, r.stderr
    assert r.json_lines() == [{"ok": True, "entries": 5, "line": 0, "head": line_hash(lines(state)[-1]),
                               "detail": "5 entries, chain intact"}]
    r = maskgate("audit", "show", "-n", "2", "--state", state, "--json")
    assert [e["seq"] for e in r.json_lines()] == [3, 4]
    r = maskgate("audit", "show", "-n", "2", "--state", state)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2 and "decision" in r.stdout
    rows = lines(state)
    del rows[1]
    write(state, rows)
    r = maskgate("audit", "verify", "--state", state)
    assert r.returncode == 1 and "line 2" in r.stdout
    r = maskgate("audit", "show", "-n", "0", "--state", state)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_cli_on_an_empty_state(state):
    r = maskgate("audit", "verify", "--state", state)
    assert r.returncode == 0 and "no entries" in r.stdout
    assert not (state / "audit.log").exists()  # verify only reads


def test_two_writers_share_one_chain(state):
    """The daemon and an administration command append to the same log: the chain stays whole."""
    daemon, admin = AuditLog(state), AuditLog(state)
    for i in range(4):
        daemon.append("decision", granted=False, who=None, score=0.1, reason=f"test {i}")
        admin.append("vault.remove", person=f"p-{i}")
    rows = [json.loads(r) for r in lines(state)]
    assert [r["seq"] for r in rows] == list(range(8))
    v = check(state)
    assert v.ok, v.detail


def test_administration_is_recorded_with_who_did_it(state):
    r = maskgate("enroll", "Demo Person", "--from", Path(__file__).parent.parent / "edge/demo/enroll",
                 "--consent", "form #7", "--operator", "installer A", "--state", state)
    assert r.returncode == 0, r.stderr
    assert maskgate("templates", "remove", "Demo Person", "--state", state).returncode == 0
    r = maskgate("audit", "show", "--json", "--state", state)
    entries = r.json_lines()
    assert [e["event"] for e in entries] == ["vault.enroll", "vault.remove"]
    assert entries[0]["name"] == "Demo Person" and entries[0]["operator"] == "installer A"
    assert entries[0]["person"] == entries[1]["person"] and entries[1]["user"]
    assert maskgate("audit", "verify", "--state", state).returncode == 0
