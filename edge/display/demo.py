"""The tour of ``maskgate demo --display``: after the demo's clip, every screen the clip cannot reach
(denied, lockout, held open...) in turn (edge/commands/demo.py shows it; scripts/screenshots.py too)."""

from __future__ import annotations

from edge.display.messages import Screen

TOUR = (Screen("idle"), Screen("too_far"), Screen("too_close"), Screen("one_person"),
        Screen("challenge", step="blink", n=1, total=2, seconds=3),
        Screen("challenge", step="turn-left", n=2, total=2, seconds=6),
        Screen("challenge", step="turn-right", n=2, total=2, seconds=6), Screen("checking"),
        Screen("welcome", name="demo-person"), Screen("denied", reason="not_recognised"),
        Screen("denied", reason="challenge"), Screen("lockout", seconds=59), Screen("held_open"),
        Screen("fault"))
