"""The tour of ``maskgate demo --display``: after the demo's clip, every screen the clip cannot reach
(denied, lockout, held open...) in turn (edge/commands/demo.py shows it; docs/screens/render.py too)."""

from __future__ import annotations

from edge.display import messages as M
from edge.display.messages import Screen

TOUR = (Screen("idle"), Screen("claim"), Screen("claim_read", reason="card"), Screen("claim_read", reason="pin"),
        Screen("too_far"), Screen("too_close"), Screen("one_person"),
        Screen("challenge", step="blink", n=1, total=2, seconds=3),
        Screen("challenge", step="turn-left", n=2, total=2, seconds=6),
        Screen("challenge", step="turn-right", n=2, total=2, seconds=6), Screen("checking"),
        Screen("welcome", name="demo-person"),
        *(Screen("denied", reason=r) for r in M.DENIED),
        Screen("lockout", seconds=59), Screen("held_open"), Screen("fault"), Screen("stick_done"))
