"""Technician checks (``maskgate diag``) and the camera positioning aid (``maskgate preview``).

A technician at a gate has a keyboard, no internet and a fault to find. Each check looks at one
part, says ``ok`` / ``warn`` / ``fail`` with one line of what it saw and, when there is something to
do, a hint saying what. A check that does not apply here (no systemd on a laptop, a recording in
place of a camera, simulated pins) says so as ``warn``; a check never crashes the others: an
unexpected exception becomes that check's ``fail`` line. Nothing here writes a frame anywhere.

The checks live one area to a module (camera, models, door, claim, vault, audit, system for the
clock, board, disk and service; display and sound are edge.display.check's); this module holds the
registry ``CHECKS``, the runner that keeps one check's crash from stopping the others, and
``Result``, what one check says. What ``preview`` (the positioning aid) measures is in preview.py.
Nothing here prints: the table, the JSON lines and the preview's window are edge/commands/diag.py's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from edge.diag.audit import check_audit
from edge.diag.base import Context, Finding
from edge.diag.camera import check_camera
from edge.diag.claim import check_claim
from edge.diag.door import check_door
from edge.diag.models import check_models
from edge.diag.preview import Preview, distance_hint, reading
from edge.diag.system import check_board, check_clock, check_disk, check_service, clock_sources, throttle_flags
from edge.diag.vault import check_vault
from edge.display import check as display_check
from edge.errors import MaskgateError

log = logging.getLogger(__name__)

__all__ = ["CHECKS", "Context", "Finding", "Preview", "Result", "check_audit", "check_board", "check_camera",
           "check_claim", "check_clock", "check_disk", "check_display", "check_door", "check_models",
           "check_service", "check_sound", "check_vault", "clock_sources", "distance_hint", "reading", "run_one",
           "throttle_flags"]


@dataclass(frozen=True)
class Result:
    """A finding with its check's name: one line of ``maskgate diag`` output."""

    check: str
    status: str
    detail: str
    hint: str = ""
    data: dict[str, Any] | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` line: check, status, detail, hint when there is one, then the check's own
        figures (``Finding.data``), which never replace those four."""
        d: dict[str, Any] = {"check": self.check, "status": self.status, "detail": self.detail}
        if self.hint:
            d["hint"] = self.hint
        for k, v in (self.data or {}).items():
            d.setdefault(k, v)
        return d


def check_display(ctx: Context) -> Finding:
    """The resident's screen and the challenge prompt can be drawn (edge.display.check)."""
    return Finding(*display_check.check_display(ctx.cfg))


def check_sound(ctx: Context) -> Finding:
    """Sounds can play: aplay and an ALSA device that opens, and the rendered prompts (edge.display.check)."""
    return Finding(*display_check.check_sound(ctx.cfg))


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

