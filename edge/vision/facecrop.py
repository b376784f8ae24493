"""The aligned whole-face crop: dlib's 150 px face chip, cut from MediaPipe landmarks.

dlib's face network was trained on ``get_face_chip(size=150, padding=0.25)`` chips: a similarity
transform taking its 5-point landmarks (eye corners, base of the nose) to a fixed template. The gate
has no dlib landmark detector, so the chip is cut from face-mesh points whose template positions
were fitted on LFW: each mesh point's average position in dlib's own chips of the same photos
(``models/training/eval_face.py fit``). On LFW fold 5, dlib's own 5 points land 2.8 px (median 2.4) from their
template positions in these chips (150 px; the two landmark detectors differ by that much).

Yaw beyond ``eyecrop.MAX_YAW_DEG`` or a tiny face: no crop (None), as for the eye crop.
"""

from __future__ import annotations

import logging

import numpy as np

from edge.vision import eyecrop
from edge.vision.geometry import head_pose

log = logging.getLogger(__name__)

CHIP = 150   # px, square
# Mesh points (outer and inner eye corners, both sides; the base of the nose) and where dlib's chips
# put them on average (x, y in chip px), fitted on LFW View 2 folds 1-4 by ``eval_face.py fit``.
POINTS = (33, 133, 362, 263, 2)
TEMPLATE = np.array([
    [37.12, 46.30],
    [59.50, 47.56],
    [89.04, 47.62],
    [111.75, 46.33],
    [74.42, 86.28],
])


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares 2x3 similarity (rotation, scale, shift) taking points ``src`` to ``dst``
    (as dlib's ``find_similarity_transform``), by the complex-number closed form."""
    z = src[:, 0] + 1j * src[:, 1]
    w = dst[:, 0] + 1j * dst[:, 1]
    zc, wc = z - z.mean(), w - w.mean()
    k = complex(np.vdot(zc, wc) / max(float(np.vdot(zc, zc).real), 1e-12))
    b = w.mean() - k * z.mean()
    return np.array([[k.real, -k.imag, b.real], [k.imag, k.real, b.imag]])


def chip_transform(landmarks: np.ndarray) -> np.ndarray:
    """The 2x3 matrix taking image pixels to face-chip pixels for one face's landmarks."""
    return similarity(landmarks[list(POINTS), :2].astype(np.float64), TEMPLATE)


def face_crop(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
    """The CHIP x CHIP RGB face chip of one face; None when turned too far or too small."""
    right, left = landmarks[468, :2], landmarks[473, :2]
    if float(np.linalg.norm(left - right)) < eyecrop.MIN_PUPIL_DISTANCE_PX:
        return None
    yaw = head_pose(landmarks).yaw
    if abs(yaw) > eyecrop.MAX_YAW_DEG:
        log.debug("face crop rejected: yaw %.1f deg beyond %.0f", yaw, eyecrop.MAX_YAW_DEG)
        return None
    return eyecrop.warp_affine(image, chip_transform(landmarks), CHIP, CHIP)
