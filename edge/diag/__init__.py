"""Technician checks (``maskgate diag``) and the camera positioning aid (``maskgate preview``).

A technician at a gate has a keyboard, no internet and a fault to find. Each check looks at one
part, says ``ok`` / ``warn`` / ``fail`` with one line of what it saw and, when there is something to
do, a hint saying what. A check that does not apply here (no systemd on a laptop, a recording in
place of a camera, simulated pins) says so as ``warn``; a check never crashes the others: an
unexpected exception becomes that check's ``fail`` line. Nothing here writes a frame anywhere.

The checks live one area to a module (camera, models, door, claim, vault, audit, system for the
clock, board, disk and service; display and sound are edge.display.check's); this module holds the
registry ``CHECKS``, the runner that keeps one check's crash from stopping the others, and
``Result``, what one check says. ``preview`` (the positioning aid) is in preview.py.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edge.config import Config
from edge.diag.audit import check_audit
from edge.diag.base import Context, Finding
from edge.diag.camera import check_camera
from edge.diag.claim import check_claim
from edge.diag.door import check_door
from edge.diag.models import check_models
from edge.diag.preview import distance_hint, preview, reading
from edge.diag.system import check_board, check_clock, check_disk, check_service, clock_sources, throttle_flags
from edge.diag.vault import check_vault
from edge.errors import ConfigError, MaskgateError

log = logging.getLogger(__name__)

__all__ = ["CHECKS", "Context", "Finding", "Result", "check_audit", "check_board", "check_camera", "check_claim",
           "check_clock", "check_disk", "check_display", "check_door", "check_models", "check_service",
           "check_sound", "check_vault", "clock_sources", "distance_hint", "format_row", "preview", "reading",
           "run_checks", "run_one", "throttle_flags"]


@dataclass(frozen=True)
class Result:
    """A finding with its check's name: one line of ``maskgate diag`` output."""

    check: str
    status: str
    detail: str
    hint: str = ""

    def as_dict(self) -> dict[str, str]:
        d = {"check": self.check, "status": self.status, "detail": self.detail}
        if self.hint:
            d["hint"] = self.hint
        return d


def check_display(ctx: Context) -> Finding:
    """The resident's screen and the challenge prompt can be drawn (edge.display.check)."""
    from edge.display.check import check_display as check

    return Finding(*check(ctx.cfg))


def check_sound(ctx: Context) -> Finding:
    """Sounds can play: aplay and an ALSA card (edge.display.check)."""
    from edge.display.check import check_sound as check

    return Finding(*check(ctx.cfg))


CHECKS: dict[str, Callable[[Context], Finding]] = {
    "camera": check_camera,
    "models": check_models,
    "door": check_door,
    "vault": check_vault,
    "audit": check_audit,
    "clock": check_clock,
    "board": check_board,
    "disk": check_disk,
    "service": check_service,
    "display": check_display,
    "sound": check_sound,
    "claim": check_claim,
}


def run_one(name: str, ctx: Context) -> Result:
    """One check, whatever happens inside it: a bug in one check is that check's ``fail``, not a crash."""
    try:
        f = CHECKS[name](ctx)
    except MaskgateError as e:
        return Result(name, "fail", str(e))
    except Exception as e:  # noqa: BLE001 - reported, with the traceback under --debug
        log.debug("check %s crashed", name, exc_info=True)
        return Result(name, "fail", f"internal error: {type(e).__name__}: {e}",
                      "run `maskgate diag --debug " + name + "` and report the traceback")
    return Result(name, *f)


# ---- output ----

_COLOURS = {"ok": "\033[32m", "warn": "\033[33m", "fail": "\033[31m"}


def _colour() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def format_row(r: Result, width: int, colour: bool = False) -> str:
    """One aligned table row (status, check, detail) and, indented under it, the hint."""
    status = f"{r.status:<4}"
    if colour:
        status = f"{_COLOURS[r.status]}{status}\033[0m"
    line = f"{status}  {r.check:<{width}}  {r.detail}"
    if r.hint:
        line += f"\n{'':<4}  {'':<{width}}  -> {r.hint}"
    return line


def run_checks(names: list[str], cfg: Config, state: Path, out: Any, yes: bool = False) -> int:
    """Run the named checks (all when none), print one line each; 1 when any fails."""
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ConfigError(f"unknown check {unknown[0]!r} (checks: {', '.join(CHECKS)})")
    selected = list(dict.fromkeys(names)) or list(CHECKS)
    ctx = Context(cfg, state, yes)
    width = max(len(n) for n in selected)
    colour = not out.json and _colour()
    counts = {"ok": 0, "warn": 0, "fail": 0}
    for name in selected:
        r = run_one(name, ctx)
        counts[r.status] += 1
        out.event(r.as_dict(), format_row(r, width, colour))
    out.text(f"{len(selected)} check{'s' if len(selected) > 1 else ''}: {counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail")
    return 1 if counts["fail"] else 0
