"""The 478-point MediaPipe face mesh (with iris) -> ``Face``; the one place a ``Landmarker`` is made.

The models are the ``.tflite`` files inside the pinned ``mediapipe==0.10.18`` wheel; nothing is
downloaded. The mesh finds faces with its own detector (on every image in static mode, and in video
mode only when its tracking loses a face) and gives their landmarks; a face's box is its landmarks'
extent. Faces are reported largest first, so ``faces[0]`` is the person nearest the gate.

Why no separate face detector: an extra MediaPipe ``FaceDetection`` ran on every frame only to give
each face a confidence that no decision read, about a third of the landmark stage's time (issue 21).

Build one with ``for_video`` (a camera stream or a clip, tracking between frames) or ``for_images``
(each image on its own), so every command uses the same MediaPipe settings from ``[vision]``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from edge.config import VisionConfig
from edge.errors import ModelError
from edge.native import quiet_stderr

log = logging.getLogger(__name__)

# MediaPipe's C++ side logs through glog; keep its start-up chatter off the technician's terminal.
os.environ.setdefault("GLOG_minloglevel", "2")

N_LANDMARKS = 478
RIGHT_PUPIL = 468  # the person's right eye (image left in an unmirrored camera)
LEFT_PUPIL = 473
# Another face at least this large (area, relative to the face served) is a second person near enough
# to matter: the gate serves one person at a time, a liveness challenge aborts, the screen says so.
# 0.35 of the area is a head about 0.6 as wide, someone up to about 1.7x as far from the camera.
SECOND_FACE_RATIO = 0.35


@dataclass(frozen=True)
class Face:
    """One face in one frame, in pixel coordinates of that frame.

    ``landmarks`` is (478, 3) float32: x, y in pixels and z (relative depth, same scale as x, smaller
    is nearer the camera). ``box`` is (x0, y0, x1, y1), the landmarks' extent.
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)

    @property
    def center(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    @property
    def pupils(self) -> tuple[np.ndarray, np.ndarray]:
        """(right pupil, left pupil) as (x, y) pixels; the person's right and left."""
        return self.landmarks[RIGHT_PUPIL, :2], self.landmarks[LEFT_PUPIL, :2]


def second_face(faces: list[Face], face: Face) -> bool:
    """Whether another face in ``faces`` is at least ``SECOND_FACE_RATIO`` of ``face``'s area."""
    return any(f is not face and f.area >= SECOND_FACE_RATIO * face.area for f in faces)


class Landmarker:
    """Finds faces and their landmarks in RGB frames.

    ``static=True`` treats every image on its own (photos, enrolment images); ``False`` lets the
    mesh track between video frames, which is faster and steadier on a camera stream.
    """

    def __init__(self, max_faces: int = 2, static: bool = False, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5) -> None:
        try:
            from mediapipe.python.solutions import face_mesh  # lazy: seconds of start-up
        except ImportError as e:
            raise ModelError(f"MediaPipe is not installed or broken ({e}); run scripts/setup.sh") from None
        self._seen_face = False  # MediaPipe warns once, on fd 2, at the first face it projects
        with quiet_stderr():  # the graphs log their start-up on first use; warm them up silently
            self._mesh = face_mesh.FaceMesh(
                static_image_mode=static, max_num_faces=max_faces, refine_landmarks=True,
                min_detection_confidence=min_detection_confidence,
                min_tracking_confidence=min_tracking_confidence)
            self.detect(np.zeros((64, 64, 3), np.uint8))

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in an RGB uint8 image, largest first; an empty list when there is none."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image, got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        image = np.ascontiguousarray(image)
        if self._seen_face:
            mesh = self._mesh.process(image)
        else:
            with quiet_stderr():
                mesh = self._mesh.process(image)
        if not mesh.multi_face_landmarks:
            return []
        self._seen_face = True
        faces = []
        for lm in mesh.multi_face_landmarks:
            pts = np.array([(p.x * w, p.y * h, p.z * w) for p in lm.landmark], dtype=np.float32)
            box = (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()),
                   float(pts[:, 1].max()))
            faces.append(Face(box, pts))
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> "Landmarker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def for_video(vision: VisionConfig | None = None, max_faces: int | None = None) -> Landmarker:
    """The landmarker for a camera stream or a recorded clip: the mesh tracks a face between frames,
    with ``[vision]``'s confidences (the defaults without it); ``max_faces`` defaults to ``vision.max_faces``."""
    vision = vision or VisionConfig()
    return Landmarker(vision.max_faces if max_faces is None else max_faces, static=False,
                      min_detection_confidence=vision.min_detection_confidence,
                      min_tracking_confidence=vision.min_tracking_confidence)


def for_images(vision: VisionConfig | None = None, max_faces: int | None = None) -> Landmarker:
    """The landmarker for still images, each found on its own (photos, enrolment images); without
    ``vision``, the defaults (a known-answer check must not depend on the site's config)."""
    vision = vision or VisionConfig()
    return Landmarker(vision.max_faces if max_faces is None else max_faces, static=True,
                      min_detection_confidence=vision.min_detection_confidence)


def detect_padded(lm: Landmarker, image: np.ndarray) -> tuple[np.ndarray, list[Face]]:
    """(image, faces) of a still photo; a tight face crop with no face found is retried inside a
    black border of a third of its size, as the detector needs some context around a face. The
    landmarks are in the returned (possibly bordered) image's pixels."""
    faces = lm.detect(image)
    if not faces:
        pad = max(image.shape[:2]) // 3
        image = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
        faces = lm.detect(image)
    return image, faces
