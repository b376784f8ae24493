"""The aligned eye-region crop: what the embedder sees, the part of a face a mask leaves visible.

A similarity transform (rotation, scale, shift; no shear) puts the iris centres (face-mesh points
468 and 473) at fixed pixels of a fixed-size crop, so the embedder never has to learn roll, distance
or position. With the pupils ``PUPIL_DISTANCE`` px apart the crop spans about half that distance
above the pupil line (eyebrows) and 0.65 below it (upper nose bridge, under-eye), which stops above
where a worn mask's top edge sits on most faces; a mask pulled high shows only in the bottom rows.

Yaw: beyond ``MAX_YAW_DEG`` the far eye is foreshortened and half hidden by the nose, so the crop
is *rejected* (None), never mirrored: mirroring swaps the two eyes, which are not identical on a
real person (scars, lids, brows), and the gate can always wait for the next, more frontal frame.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from edge.vision.geometry import head_pose
from edge.vision.landmarks import LEFT_PUPIL, RIGHT_PUPIL

log = logging.getLogger(__name__)

CROP_H, CROP_W = 56, 112
PUPIL_DISTANCE = 48.0                # px between the pupils in the crop
PUPIL_Y = 25.0                       # both pupils on this row
RIGHT_PUPIL_XY = ((CROP_W - PUPIL_DISTANCE) / 2, PUPIL_Y)   # person's right eye: crop left
LEFT_PUPIL_XY = ((CROP_W + PUPIL_DISTANCE) / 2, PUPIL_Y)
MAX_YAW_DEG = 30.0
MIN_PUPIL_DISTANCE_PX = 8.0          # below this the face is too small to say anything


def crop_transform(right_pupil: np.ndarray, left_pupil: np.ndarray) -> np.ndarray:
    """The 2x3 similarity matrix taking the image's pupils (x, y) to their fixed crop positions."""
    src = np.asarray(left_pupil, np.float64) - np.asarray(right_pupil, np.float64)
    dst = np.subtract(LEFT_PUPIL_XY, RIGHT_PUPIL_XY)
    # Complex-number view: z_dst = s * e^(i a) * z_src.
    k = complex(*dst) / complex(*src)
    a, b = k.real, k.imag
    m = np.array([[a, -b, 0.0], [b, a, 0.0]])
    m[:, 2] = np.asarray(RIGHT_PUPIL_XY) - m[:, :2] @ np.asarray(right_pupil, np.float64)
    return m


def warp(image: np.ndarray, right_pupil: np.ndarray, left_pupil: np.ndarray) -> np.ndarray:
    """Cut the aligned crop given the two pupils; area-averages when shrinking so small print survives."""
    return warp_affine(image, crop_transform(right_pupil, left_pupil), CROP_W, CROP_H)


def warp_affine(image: np.ndarray, m: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` through the 2x3 similarity ``m`` into width x height; area-averages when shrinking."""
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    if scale < 0.6:  # strong down-scaling: blur first, as warpAffine samples without averaging
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=0.4 / scale)
    return cv2.warpAffine(image, m, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def eye_crop(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
    """The CROP_H x CROP_W eye-region crop of one face (same dtype/channels as ``image``).

    None when the head is turned more than ``MAX_YAW_DEG`` or the face is too small.
    """
    right, left = landmarks[RIGHT_PUPIL, :2], landmarks[LEFT_PUPIL, :2]
    if float(np.linalg.norm(left - right)) < MIN_PUPIL_DISTANCE_PX:
        return None
    yaw = head_pose(landmarks).yaw
    if abs(yaw) > MAX_YAW_DEG:
        log.debug("eye crop rejected: yaw %.1f deg beyond %.0f", yaw, MAX_YAW_DEG)
        return None
    return warp(image, right, left)
