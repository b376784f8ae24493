"""``maskgate identify IMAGE...``: whom the gate's recogniser takes the person in each photo for.

For technicians ("who does the gate take this person for?") and for evaluation. No liveness (a
photo cannot pass it): only the recogniser, with the gate's own decision rule: the vault of
``--state``, its keyed transform, ``Gallery.search`` and the site-calibrated threshold of
``edge.calibration`` (the same ``edge.fusion.thresholds`` the gate uses), one image at a time.
``masked``: the lower face judged covered (always true without the face model); ``used``: "eye", or
"face+eye" when the whole face was fused with the eye region, as the gate does for a bare face.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any


from edge.config import Config
from edge.errors import MaskgateError

log = logging.getLogger(__name__)


def identify_images(paths: list[Path], cfg: Config, state: Path, out: Any, embedder: Any = None) -> int:
    """One result per image; exit 0 when every image was read, 2 when some could not be."""
    from edge import fusion
    from edge.commands.embed import still_images
    from edge.embed import Embedder
    from edge.vault import Vault
    from edge.vision.landmarks import detect_padded

    vault = Vault.open(state, cfg.vault)
    if embedder is None:
        embedder = Embedder(cfg.embed)
    stale = vault.stale_for(embedder.space)
    if stale:
        raise MaskgateError(stale)
    face_model = fusion.load(cfg.embed)
    src = vault.gallery()
    rows = vault.face_gallery(face_model.space) if face_model is not None else None
    limits = fusion.thresholds(src, rows, face_model, embedder, cfg.match)
    log.info("%s", limits.eye.summary())
    status = 0
    for p, image, lm in still_images(paths, cfg):
        if image is None:
            status = 2
            continue
        image, faces = detect_padded(lm, image)
        r = (fusion.recognise(vault, embedder, face_model, image, faces[0].landmarks, cfg.match, limits)
             if faces else None)
        if r is None:
            out.event({"path": str(p), "error": "no face"}, f"{p}: no face")
            continue
        match = r.match
        who = vault.name_of(match.person) if match.person is not None else None
        out.event({"path": str(p), "masked": r.masked, "who": who, "score": round(match.score, 4),
                   "threshold": round(r.threshold, 4), "granted": r.granted, "used": r.used},
                  f"{p}: {'granted' if r.granted else 'denied'} ({r.used}): "
                  + (f"most like {who} ({match.score:.3f}, threshold {r.threshold:.3f})"
                     if who is not None else "no one enrolled"))
    return status
