"""``maskgate identify IMAGE...``: whom the gate's recogniser takes the person in each photo for.

For technicians ("who does the gate take this person for?") and for evaluation. No liveness (a
photo cannot pass it): only the recogniser, with the gate's own decision rule: the vault of
``--state``, its keyed transform, ``Gallery.search`` and the site-calibrated threshold of
``edge.calibration`` (the same ``calibrate`` the gate uses), one image at a time.

``masked`` is null and ``used`` is "eye" in this build: the mask detector and the full-face
embedder come with issue 25 item 4, which sets them.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edge.config import Config
from edge.errors import MaskgateError

log = logging.getLogger(__name__)


def identify_images(paths: list[Path], cfg: Config, state: Path, out: Any, embedder: Any = None) -> int:
    """One result per image; exit 0 when every image was read, 2 when some could not be."""
    from edge.calibration import calibrate
    from edge.embed import Embedder, _read_rgb
    from edge.match import Gallery, decide
    from edge.vault import Vault
    from edge.vision.landmarks import Landmarker, detect_padded

    vault = Vault.open(state, cfg.vault)
    if embedder is None:
        embedder = Embedder(cfg.embed)
    stale = vault.stale_for(embedder.space)
    if stale:
        raise MaskgateError(stale)
    ids, rows = vault.gallery()
    gallery = Gallery(ids, rows)
    cal = calibrate(ids, rows, embedder, cfg.match)
    log.info("%s", cal.summary())
    status = 0
    with Landmarker(max_faces=cfg.vision.max_faces, static=True,
                    min_detection_confidence=cfg.vision.min_detection_confidence) as lm:
        for p in paths:
            try:
                image = _read_rgb(p)
            except MaskgateError as e:
                print(f"maskgate: error: {e}", file=sys.stderr)
                status = 2
                continue
            image, faces = detect_padded(lm, image)
            vec = embedder.embed_face(image, faces[0]) if faces else None
            if vec is None:
                out.event({"path": str(p), "error": "no face"}, f"{p}: no face")
                continue
            match = gallery.search(vault.protect(np.asarray(vec, np.float32))[None])
            granted = decide(match, cal.threshold)
            who = vault.name_of(match.person) if match.person is not None else None
            out.event({"path": str(p), "masked": None, "who": who, "score": round(match.score, 4),
                       "threshold": round(cal.threshold, 4), "granted": granted, "used": "eye"},
                      f"{p}: {'granted' if granted else 'denied'}: "
                      + (f"most like {who} ({match.score:.3f}, threshold {cal.threshold:.3f})"
                         if who is not None else "no one enrolled"))
    return status
