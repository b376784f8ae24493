"""``maskgate diag`` and ``maskgate preview``: what a technician sees of edge.diag.

edge.diag runs the checks and measures the preview's frames; this module turns that into output:
an aligned table with hints (coloured on a terminal) or one JSON line per check, and for the preview
a window, a readout updated in place, or JSON lines. Exit status 1 when any check fails.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge import diag
from edge.config import Config
from edge.diag.preview import Preview
from edge.errors import ConfigError

_COLOURS = {"ok": "\033[32m", "warn": "\033[33m", "fail": "\033[31m"}


def _colour() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def format_row(r: diag.Result, width: int, colour: bool = False) -> str:
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
    unknown = [n for n in names if n not in diag.CHECKS]
    if unknown:
        raise ConfigError(f"unknown check {unknown[0]!r} (checks: {', '.join(diag.CHECKS)})")
    selected = list(dict.fromkeys(names)) or list(diag.CHECKS)
    ctx = diag.Context(cfg, state, yes)
    width = max(len(n) for n in selected)
    colour = not out.json and _colour()
    counts = {"ok": 0, "warn": 0, "fail": 0}
    for name in selected:
        r = diag.run_one(name, ctx)
        counts[r.status] += 1
        out.event(r.as_dict(), format_row(r, width, colour))
    out.text(f"{len(selected)} check{'s' if len(selected) > 1 else ''}: {counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail")
    return 1 if counts["fail"] else 0


# ---- preview ----

def _has_display() -> bool:
    """A window can be shown: a display is set and this OpenCV was built with a GUI backend."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    return "GUI:                           NONE" not in cv2.getBuildInformation()


def _reading_text(r: dict[str, Any]) -> str:
    if not r["face"]:
        return f"{r['t']:7.2f}s  no face"
    return (f"{r['t']:7.2f}s  yaw {r['yaw']:+4.0f}  pitch {r['pitch']:+4.0f}  roll {r['roll']:+4.0f}  "
            f"pupils {r['pupil_distance']:4.0f} px  {r['hint']}")


def _draw(image: np.ndarray, faces: list[Any], r: dict[str, Any]) -> np.ndarray:
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if faces:
        x0, y0, x1, y1 = (int(v) for v in faces[0].box)
        good = r["hint"] == "good distance"
        colour = (0, 200, 0) if good else (0, 200, 255)
        cv2.rectangle(bgr, (x0, y0), (x1, y1), colour, 2)
        for p in faces[0].pupils:
            cv2.circle(bgr, (int(p[0]), int(p[1])), 3, colour, -1)
    text = _reading_text(r).split("s  ", 1)[1]
    cv2.putText(bgr, text, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(bgr, text, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return bgr


def preview(cfg: Config, out: Any, text_only: bool = False) -> int:
    """Show the camera with face box, pose, pupil distance and a distance hint until Ctrl-C (or 'q').

    A window when there is a display, else a readout in the terminal (updated in place on a TTY, one
    line per reading otherwise, five readings a second). Nothing is saved. A recording ends the
    preview when it ends.
    """
    window = not text_only and not out.json and _has_display()
    in_place = not window and not out.json and sys.stdout.isatty()
    next_t = -1.0
    # Ctrl-C sets a flag the loop reads between frames: a KeyboardInterrupt raised inside MediaPipe's
    # Python wrapper can leave its graph mid-packet, and closing it then may never return.
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set()) \
        if threading.current_thread() is threading.main_thread() else None
    try:
        with Preview(cfg) as pv:
            if not window:
                out.text(f"preview of {pv.name} (Ctrl-C to stop; nothing is saved)")
            for frame, faces, r in pv.readings(stop):
                if window:
                    cv2.imshow("maskgate preview (q to quit)", _draw(frame.image, faces, r))
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        break
                    continue
                if frame.t < next_t:
                    continue
                next_t = frame.t + 0.2
                if in_place:
                    sys.stdout.write("\r" + _reading_text(r) + "\033[K")
                    sys.stdout.flush()
                else:
                    out.event(r, _reading_text(r))
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if in_place:
            sys.stdout.write("\n")
        if window:
            cv2.destroyAllWindows()
    return 0
