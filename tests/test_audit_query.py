"""audit show filters (person, event kind, time) and audit export (JSON lines byte for byte, CSV)."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import maskgate
from edge import audit as audit_mod
from edge.audit import AuditLog, verify_file
from edge.audit_query import Query, parse_time, select, to_csv


@pytest.fixture
def logged(state: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A log over three days: an enrolment, decisions, a hand unlock, a roster removal."""
    clock = [datetime(2026, 11, 1, 9, tzinfo=timezone.utc)]
    monkeypatch.setattr(audit_mod, "_now", lambda: clock[0])
    a = AuditLog(state)
    for day, (event, fields) in zip((1, 1, 2, 2, 2, 3), [
            ("vault.enroll", dict(person="p-00000000000000aa", name="Ana", templates=4)),
            ("decision", dict(granted=True, who="Ana", score=0.81, reason="recognised and live")),
            ("decision", dict(granted=False, who=None, score=0.2, reason="nobody matched")),
            ("door", dict(action="unlock", by="technician", source="diag")),
            ("door", dict(action="lock", reason="timer")),
            ("roster.remove", dict(person="p-00000000000000bb", name="=Ben+1", station="s-0123456789abcdef"))]):
        clock[0] = datetime(2026, 11, day, 9, tzinfo=timezone.utc)
        a.append(event, **fields)
    monkeypatch.undo()
    return state


def test_select_by_person_event_and_time(logged: Path) -> None:
    path = logged / "audit.log"
    by_name = [e["event"] for _, e in select(path, Query(person="Ana"))]
    assert by_name == ["vault.enroll", "decision"]                      # the decision names her by "who"
    assert [e["event"] for _, e in select(path, Query(person="p-00000000000000aa"))] == ["vault.enroll", "decision"]
    assert [e.get("action") for _, e in select(path, Query(event="door"))] == ["unlock", "lock"]
    assert [e["by"] for _, e in select(path, Query(event="door.unlock"))] == ["technician"]
    assert [e["event"] for _, e in select(path, Query(event="roster"))] == ["roster.remove"]
    assert select(path, Query(event="vault")) and not select(path, Query(event="vaul"))
    day2 = Query(since=parse_time("2026-11-02 00:00+00:00", "--since"), until=parse_time("2026-11-03T00:00Z", "--until"))
    assert [e["event"] for _, e in select(path, day2)] == ["decision", "door", "door"]
    assert len(select(path, Query())) == 6


def test_parse_time() -> None:
    assert parse_time("2026-11-02", "--until", end_of_day=True) == datetime(2026, 11, 3).astimezone()
    assert parse_time("2026-11-02 18:30", "--since") == datetime(2026, 11, 2, 18, 30).astimezone()
    assert parse_time("2026-11-02T18:30+00:00", "--since").utcoffset() == timedelta(0)
    with pytest.raises(Exception, match="--since 'last week' is not a time"):
        parse_time("last week", "--since")


def test_csv_columns_and_no_formula_injection(logged: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(select(logged / "audit.log", Query())).decode())))
    assert len(rows) == 6 and rows[0]["name"] == "Ana" and rows[3]["by"] == "technician"
    assert rows[5]["name"] == "'=Ben+1"   # a name cannot become a spreadsheet formula
    assert json.loads(rows[5]["details"]) == {"station": "s-0123456789abcdef"}
    assert all("prev" not in r["details"] for r in rows)


def test_cli_show_and_export(logged: Path, tmp_path: Path) -> None:
    r = maskgate("audit", "show", "--person", "Ana", "--event", "decision", "--json", "--state", logged)
    assert r.returncode == 0 and [e["who"] for e in r.json_lines()] == ["Ana"]
    r = maskgate("audit", "show", "--since", "2026-11-02T00:00+00:00", "--until", "2026-11-02 23:59+00:00",
                 "--state", logged)
    assert r.returncode == 0 and r.stdout.count("\n") == 3 and "door action=lock" in r.stdout
    r = maskgate("audit", "show", "--until", "yesterday", "--state", logged)
    assert r.returncode == 2 and "--until 'yesterday' is not a time" in r.stderr
    r = maskgate("audit", "export", "--json", tmp_path / "all.jsonl", "--state", logged)
    assert r.returncode == 0, r.stderr
    # byte for byte: the whole export verifies as the chain it is
    assert (tmp_path / "all.jsonl").read_bytes() == (logged / "audit.log").read_bytes()
    assert verify_file(tmp_path / "all.jsonl").ok
    r = maskgate("audit", "export", "--csv", tmp_path / "door.csv", "--event", "door", "--state", logged, "-v")
    assert r.returncode == 0 and "wrote 2 entries" in r.stdout
    assert (tmp_path / "door.csv").read_text().splitlines()[0].startswith("seq,ts,event,action,person,name")
    r = maskgate("audit", "export", "--state", logged)
    assert r.returncode == 2 and "--csv" in r.stderr
    r = maskgate("audit", "export", "--csv", tmp_path / "no/such/dir/x.csv", "--state", logged)
    assert r.returncode == 2 and "cannot write the export" in r.stderr and len(r.stderr.strip().splitlines()) == 1
