"""Finding and exporting audit entries: by person, event kind and time; as JSON lines or CSV.

Why a module of its own: ``edge.audit`` writes and verifies the chain; this only reads it, for an
administrator's questions ("when did Ana come in last week?", "who unlocked the door by hand?") and
for handing the log over (``audit export``, the USB stick). The JSON-lines export keeps each selected
line byte for byte, so an unfiltered export still verifies as a chain. The log never holds images or
embeddings (``edge.audit`` refuses them), so neither can an export.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Iterator

from edge.errors import ConfigError

CSV_COLUMNS = ("seq", "ts", "event", "action", "person", "name", "who", "granted", "by", "user", "details")


@dataclass(frozen=True)
class Query:
    """What to select; every part optional."""

    person: str | None = None
    event: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def parse_time(text: str, option: str, end_of_day: bool = False) -> datetime:
    """``YYYY-MM-DD`` or ``YYYY-MM-DD HH:MM[:SS]`` (local time unless it names a zone), as aware time.

    A bare date given to ``--until`` means the end of that day, as ``--expires`` does."""
    try:
        if len(text.strip()) == 10:
            day = date.fromisoformat(text.strip())
            t = datetime.combine(day + timedelta(days=1) if end_of_day else day, time())
        else:
            t = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not a time like 2026-12-31 or 2026-12-31 18:30") from None
    return t if t.tzinfo else t.astimezone()   # naive: the gate's local time


def _entries(path: Path) -> Iterator[tuple[bytes, dict[str, Any]]]:
    if not path.exists():
        return
    for raw in path.read_bytes().split(b"\n"):
        if not raw:
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            entry = {"event": "unreadable", "bytes": len(raw)}
        if not isinstance(entry, dict):
            entry = {"event": "unreadable", "bytes": len(raw)}
        yield raw, entry


def _event_matches(entry: dict[str, Any], kind: str) -> bool:
    """``door`` matches every door entry, ``roster`` every ``roster.*``, ``door.unlock`` a door entry
    whose action is unlock."""
    ev = str(entry.get("event", ""))
    return ev == kind or ev.startswith(kind + ".") or f"{ev}.{entry.get('action', '')}" == kind


def select(path: Path, q: Query) -> list[tuple[bytes, dict[str, Any]]]:
    """The entries of the log at ``path`` that match ``q``, oldest first, each with its raw line."""
    rows = list(_entries(path))
    ids, names = {q.person}, {q.person}
    if q.person:  # a name finds the entries that carry only the id, an id those that carry only the name
        for _, e in rows:
            if q.person in (e.get("name"), e.get("who")) and isinstance(e.get("person"), str):
                ids.add(e["person"])
            if e.get("person") == q.person and isinstance(e.get("name"), str):
                names.add(e["name"])
    out = []
    for raw, e in rows:
        if q.person and e.get("person") not in ids and e.get("name") not in names and e.get("who") not in names:
            continue
        if q.event and not _event_matches(e, q.event):
            continue
        if q.since or q.until:
            try:
                ts = datetime.fromisoformat(str(e.get("ts")))
            except ValueError:
                continue
            if (q.since and ts < q.since) or (q.until and ts >= q.until):
                continue
        out.append((raw, e))
    return out


def to_jsonl(rows: list[tuple[bytes, dict[str, Any]]]) -> bytes:
    return b"".join(raw + b"\n" for raw, _ in rows)


def to_csv(rows: list[tuple[bytes, dict[str, Any]]]) -> bytes:
    """One row per entry: the common fields in columns, the rest as compact JSON in ``details``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for _, e in rows:
        rest = {k: v for k, v in e.items() if k not in CSV_COLUMNS and k != "prev"}
        w.writerow([_cell(e.get(c)) for c in CSV_COLUMNS[:-1]] + [json.dumps(rest, separators=(",", ":")) if rest else ""])
    return buf.getvalue().encode()


def _cell(v: Any) -> str:
    if v is None:
        return ""
    text = v if isinstance(v, str) else json.dumps(v)
    # A spreadsheet runs a cell that starts with = + - @ as a formula: names come from people.
    return "'" + text if text[:1] in ("=", "+", "-", "@") and isinstance(v, str) else text


def query_from(args: Any) -> Query:
    return Query(person=getattr(args, "person", None), event=getattr(args, "event", None),
                 since=parse_time(args.since, "--since") if getattr(args, "since", None) else None,
                 until=parse_time(args.until, "--until", end_of_day=True) if getattr(args, "until", None) else None)
