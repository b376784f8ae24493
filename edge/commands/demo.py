"""``maskgate demo [--display window|framebuffer]``: the whole gate with nothing installed but the package.

A temporary state directory, the demo person enrolled from bundled frames that are not in the clip
(edge.enroll.enroll, its lines shown as human text only, so ``--json`` stays the gate's event lines),
then the gate on the bundled clip with the relay on mock pins (``maskgate replay``'s printing).
With ``--display``: the clip paced in real time with the resident's screen attached, then the tour
of the screens the clip cannot reach (denied, lockout, held open...).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from edge import enroll
from edge.camera.replay import demo_clip
from edge.commands import gate as gate_cmd
from edge.commands.enroll import enrolled_line, warn
from edge.config import Config, replace
from edge.display.backends import open_display
from edge.display.demo import TOUR
from edge.display.i18n import translator
from edge.display.render import Renderer


def demo(cfg: Config, out: Any, display: Any = None) -> int:
    """Enrol the demo person from bundled frames, then run the gate on the bundled clip (blink).

    Exit 0 on the expected grant, 1 if the demo person was denied (then the install is not right).
    """
    # The demo person walks through after the grant: one approach, not a second one on the same clip.
    cfg = replace(cfg, "gate", cooldown_s=max(cfg.gate.cooldown_s, 60.0))
    with tempfile.TemporaryDirectory(prefix="maskgate-demo-") as tmp:
        state = Path(tmp)
        enroll_dir = Path(demo_clip()).parent / "enroll"
        out.text(f"demo: enrolling the demo person from {len(list(enroll_dir.glob('*.jpg')))} bundled frames")
        r = enroll.enroll("demo-person", [str(enroll_dir)], "demo: bundled LivePortrait frames (MIT)", cfg,
                          state, out.text, operator="maskgate demo")
        out.text(enrolled_line(r))
        warn(r, cfg, out)
        out.text(f"demo: running the gate on {Path(demo_clip()).name} (challenge: blink, relay on mock pins)")
        return gate_cmd.replay(Path(demo_clip()), cfg, state, out, challenges=["blink"], display=display)


def run(cfg: Config, out: Any, backend: str, pause_s: float = 1.5) -> int:
    """``maskgate demo --display BACKEND``: the demo on the resident's screen, then every screen in turn."""
    d = cfg.display
    cfg = replace(cfg, "display", backend=backend, width=d.width or (800 if backend == "window" else 0),
                  height=d.height or (480 if backend == "window" else 0))
    display = open_display(cfg.display)
    try:
        status = demo(cfg, out, display=display)
        renderer = Renderer(display.size, cfg.display.language, translator(cfg.display.language), cfg.display.font)
        out.text(f"demo: every screen in turn ({len(TOUR)}, {pause_s:.1f} s each)")
        for s in TOUR:
            display.show(renderer.render(s))
            time.sleep(pause_s)
        return status
    finally:
        display.close()
