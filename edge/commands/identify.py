"""``maskgate identify IMAGE...``: one line per photo, whom the recogniser takes its face for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.commands.embed import still_images
from edge.config import Config
from edge.identify import Identifier


def identify_images(paths: list[Path], cfg: Config, state: Path, out: Any, embedder: Any = None) -> int:
    """One result per image; exit 0 when every image was read, 2 when some could not be."""
    identifier = Identifier(cfg, state, embedder)
    status = 0
    for p, image, lm in still_images(paths, cfg):
        if image is None:
            status = 2
            continue
        r = identifier.identify(lm, image)
        if r is None:
            out.event({"path": str(p), "error": "no face"}, f"{p}: no face")
            continue
        out.event({"path": str(p), "masked": r.masked, "who": r.who, "score": round(r.score, 4),
                   "threshold": round(r.threshold, 4), "granted": r.granted, "used": r.used},
                  f"{p}: {'granted' if r.granted else 'denied'} ({r.used}): "
                  + (f"most like {r.who} ({r.score:.3f}, threshold {r.threshold:.3f})"
                     if r.who is not None else "no one enrolled"))
    return status
