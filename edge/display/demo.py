"""``maskgate demo --display window``: the demo with the resident's screens, then every screen in turn.

The gate part is the ordinary demo (edge.gate.demo) with its clip paced in real time and the screen
attached; the tour after it shows the screens the clip cannot reach (denied, lockout, held open...).
"""

from __future__ import annotations

import time
from typing import Any

from edge.config import Config, replace
from edge.display import messages as M
from edge.display.messages import Screen

TOUR = (Screen("idle"), Screen("claim"), Screen("claim_read", reason="card"), Screen("claim_read", reason="pin"),
        Screen("too_far"), Screen("too_close"), Screen("one_person"),
        Screen("challenge", step="blink", n=1, total=2, seconds=3),
        Screen("challenge", step="turn-left", n=2, total=2, seconds=6),
        Screen("challenge", step="turn-right", n=2, total=2, seconds=6), Screen("checking"),
        Screen("welcome", name="demo-person"),
        *(Screen("denied", reason=r) for r in M.DENIED),
        Screen("lockout", seconds=59), Screen("held_open"), Screen("fault"))


def run(cfg: Config, out: Any, backend: str, pause_s: float = 1.5) -> int:
    from edge import gate
    from edge.display.backends import open_display
    from edge.display.i18n import translator
    from edge.display.render import Renderer

    d = cfg.display
    cfg = replace(cfg, "display", backend=backend, width=d.width or (800 if backend == "window" else 0),
                  height=d.height or (480 if backend == "window" else 0))
    display = open_display(cfg.display)
    try:
        status = gate.demo(cfg, out, display=display)
        renderer = Renderer(display.size, cfg.display.language, translator(cfg.display.language), cfg.display.font)
        out.text(f"demo: every screen in turn ({len(TOUR)}, {pause_s:.1f} s each)")
        for s in TOUR:
            display.show(renderer.render(s))
            time.sleep(pause_s)
        return status
    finally:
        display.close()
