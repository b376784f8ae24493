"""``maskgate replay VIDEO``: the gate's events as they happen, as JSON lines or for a person reading.

The gate itself (edge.gate.replay) hands every event to an ``emit`` function; ``printer`` is the one
that prints them. ``maskgate run`` prints nothing (its events go to the journal and the event socket).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge import gate
from edge.config import Config
from edge.gate import Emit


def _human(ev: dict[str, Any]) -> str:
    """An event as a line for a person reading the terminal."""
    t = f"{ev['t']:7.2f}s"
    if ev["event"] == "decision":
        claim = f" with {ev['claim']}" if ev.get("claim") else ""
        if ev["granted"]:
            return f"{t} ACCESS GRANTED: {ev['who']} (score {ev['score']}){claim}"
        score = "" if ev["score"] is None else f" (score {ev['score']})"
        if ev.get("who"):  # recognised, refused by the access rules
            score = f" ({ev['who']}, score {ev['score']})"
        return f"{t} access denied: {ev['reason']}{score}{claim}"
    rest = " ".join(f"{k}={v}" for k, v in ev.items() if k not in ("t", "event"))
    return f"{t} {ev['event']} {rest}".rstrip()


def printer(out: Any) -> Emit:
    """Every event as a JSON line, or, for people, everything but the per-frame face lines."""
    def emit(ev: dict[str, Any]) -> None:
        if out.json:
            out.event(ev)
        elif ev["event"] != "face":
            out.text(_human(ev))
    return emit


def replay(video: Path, cfg: Config, state: Path, out: Any, challenges: list[str] | None = None,
           claim: str | None = None, at: Any = None, display: Any = None) -> int:
    """``maskgate replay``: the gate on a recording, its events printed. Exit 1 when the recording
    ended in denials only (access denied), else 0."""
    decisions = gate.replay(video, cfg, state, printer(out), challenges=challenges, claim=claim, at=at,
                            display=display)
    if not decisions:
        out.text("no decision: nobody completed an approach in this recording")
        return 0
    return 0 if any(d["granted"] for d in decisions) else 1
