"""Whom the gate's recogniser takes the person in one photo for (``maskgate identify``, evaluation).

For technicians ("who does the gate take this person for?") and for evaluation. No liveness (a
photo cannot pass it): only the recogniser, with the gate's own decision rule: the vault of
``--state``, its keyed transform, ``Gallery.search`` and the site-calibrated threshold of
``edge.calibration`` (the same ``edge.fusion.thresholds`` the gate uses), one image at a time.
``masked``: the lower face judged covered (always true without the face model); ``used``: "eye", or
"face+eye" when the whole face was fused with the eye region, as the gate does for a bare face.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge import fusion
from edge.config import Config
from edge.embed import Embedder
from edge.errors import MaskgateError
from edge.vault import Vault
from edge.vision.landmarks import Landmarker, detect_padded

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Identified:
    """The recogniser's decision for one photo: the closest person (``who``, None with nobody
    enrolled), their score, the threshold it had to reach, and which embedding decided (``used``)."""

    who: str | None
    score: float
    threshold: float
    granted: bool
    masked: bool
    used: str


class Identifier:
    """The vault of ``state`` with its site calibration, kept across photos (calibrated once)."""

    def __init__(self, cfg: Config, state: Path, embedder: Any = None) -> None:
        self.cfg = cfg
        self.vault = Vault.open(state, cfg.vault)
        self.embedder = embedder if embedder is not None else Embedder(cfg.embed)
        stale = self.vault.stale_for(self.embedder.space)
        if stale:
            raise MaskgateError(stale)
        self.face_model = fusion.load(cfg.embed)
        rows = self.vault.face_gallery(self.face_model.space) if self.face_model is not None else None
        self.limits = fusion.thresholds(self.vault.gallery(), rows, self.face_model, self.embedder, cfg.match)
        log.info("%s", self.limits.eye.summary())

    def identify(self, lm: Landmarker, image: np.ndarray) -> Identified | None:
        """The decision for the largest face in ``image`` (a tight crop retried with a border);
        None when there is no face or its eye region cannot be cut."""
        image, faces = detect_padded(lm, image)
        if not faces:
            return None
        r = fusion.recognise(self.vault, self.embedder, self.face_model, image, faces[0].landmarks,
                             self.cfg.match, self.limits)
        if r is None:
            return None
        who = self.vault.name_of(r.match.person) if r.match.person is not None else None
        return Identified(who, r.match.score, r.threshold, r.granted, r.masked, r.used)
