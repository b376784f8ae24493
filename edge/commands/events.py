"""``maskgate events``: follow the gate's local event stream at a terminal (``--json``: the lines as sent)."""

from __future__ import annotations

from typing import Any

from edge.events import EventsError, follow


def human(line: dict[str, Any]) -> str:
    """A stream line for a person at a terminal."""
    head = f"{line.get('time', '?')} {line.get('gate', '?')}"
    kind = line.get("event")
    if kind == "decision":
        who = f" {line['person']}" if line.get("person") else ""
        if line.get("name"):
            who += f" ({line['name']})"
        verdict = "GRANTED" if line.get("granted") else "denied"
        return f"{head} {verdict}{who}: {line.get('reason', '')}"
    rest = " ".join(f"{k}={v}" for k, v in line.items() if k not in ("time", "gate", "event"))
    return f"{head} {kind} {rest}"


def events_cli(cfg: Any, out: Any, count: int | None = None) -> int:
    """``maskgate events``: follow the stream, one line per event (``--json``: the lines as sent)."""
    if not cfg.socket:
        raise EventsError("no event stream: [events] socket is empty in the config")
    n = 0
    for line in follow(cfg.socket):
        out.event(line, human(line))
        n += 1
        if count is not None and n >= count:
            break
    return 0
