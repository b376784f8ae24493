"""Is the lower face covered (a mask, a scarf, a hand)? Decides whether the whole-face score may count.

A covered face still gets a full face mesh (MediaPipe guesses the hidden mouth and chin), so the
landmarks alone cannot tell. Two things can: the colour and texture of the mouth and chin against
the skin above the mask line, and the whole-face descriptor itself (dlib's network was trained on
bare faces; a covered lower face moves its descriptor in a consistent direction). A logistic
regression over both (12 colour/texture features of the aligned face chip and the 128-D face
descriptor) was fitted on LFW photos with synthetic masks (the MaskTheFace photographs drawn by
``models/training/embedder_data.py``) and checked, never fitted, on real masked photos (MODEL_CARD.md).
Its weights and threshold are in ``models/manifest.toml`` under ``[face.mask]``.

When in doubt the gate treats the face as covered: that only drops the face score, never adds one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.errors import ModelError

log = logging.getLogger(__name__)

# Regions of dlib's 150 px face chip (edge.vision.facecrop): rows y0:y1, columns x0:x1. Pupils sit
# near row 46, the base of the nose near row 88, the mouth near row 110, the chin near the bottom.
FOREHEAD = (12, 28, 52, 98)
UNDER_EYES = ((54, 64, 36, 58), (54, 64, 92, 114))
MOUTH_CHIN = (98, 138, 50, 100)
LOW_CHEEKS = ((92, 122, 26, 46), (92, 122, 104, 124))
N_COLOUR = 12


def _mean_std(lab: np.ndarray, boxes: tuple) -> tuple[np.ndarray, np.ndarray]:
    px = np.concatenate([lab[y0:y1, x0:x1].reshape(-1, 3) for y0, y1, x0, x1 in boxes])
    return px.mean(axis=0), px.std(axis=0)


def colour_features(chip: np.ndarray) -> np.ndarray:
    """12 numbers about the lower face against the skin above any mask line (RGB uint8 chip):
    Lab mean differences (mouth/chin and lower cheeks minus forehead, minus under-eyes), the
    mouth/chin Lab spread, its chroma, and its edge energy relative to the under-eye skin."""
    lab = cv2.cvtColor(chip, cv2.COLOR_RGB2LAB).astype(np.float32)
    low, low_sd = _mean_std(lab, (MOUTH_CHIN,) + LOW_CHEEKS)
    fore, _ = _mean_std(lab, (FOREHEAD,))
    eyes, _ = _mean_std(lab, UNDER_EYES)
    g = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mag = np.abs(cv2.Sobel(g, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(g, cv2.CV_32F, 0, 1))

    def energy(boxes: tuple) -> float:
        return float(np.mean([mag[y0:y1, x0:x1].mean() for y0, y1, x0, x1 in boxes]))

    ratio = np.log((energy((MOUTH_CHIN,)) + 1.0) / (energy(UNDER_EYES) + 1.0))
    return np.concatenate([(low - fore) / 32.0, (low - eyes) / 32.0, low_sd / 32.0,
                           (low[1:] - 128.0) / 32.0, [ratio]]).astype(np.float32)


def features(chip: np.ndarray, face_embedding: np.ndarray) -> np.ndarray:
    """The classifier's input: colour features and the unit face descriptor."""
    return np.concatenate([colour_features(chip), np.asarray(face_embedding, np.float32)])


@dataclass(frozen=True)
class MaskCheck:
    """The fitted rule: covered when ``weights . features + bias`` exceeds ``threshold``."""

    weights: np.ndarray
    bias: float
    threshold: float

    @classmethod
    def from_manifest(cls, table: dict, where: Path) -> "MaskCheck":
        """From the manifest's ``[face.mask]`` table (``where``: the manifest, for the message)."""
        try:
            w = np.asarray(table["weights"], np.float32)
            check = cls(w, float(table["bias"]), float(table["threshold"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{where} [face.mask] is damaged ({e}); reinstall maskgate") from None
        if w.shape != (N_COLOUR + 128,):
            raise ModelError(f"{where} [face.mask] has {w.size} weights, expected {N_COLOUR + 128}; "
                             "reinstall maskgate")
        return check

    def score(self, chip: np.ndarray, face_embedding: np.ndarray) -> float:
        """The log-odds that the lower face is covered."""
        return float(self.weights @ features(chip, face_embedding) + self.bias)

    def covered(self, chip: np.ndarray, face_embedding: np.ndarray) -> bool:
        return self.score(chip, face_embedding) > self.threshold
