"""``maskgate preview``, the camera positioning aid: what it measures on each frame.

The face box, head pose, pupil distance and a distance hint for the largest face, from the
configured source, frame after frame until the source ends or the caller stops. Frames stay in
memory; nothing is saved. Showing them (a window, a terminal readout, JSON lines) is the command's
job (edge/commands/diag.py).
"""

from __future__ import annotations

import threading
from typing import Any, Iterator

from edge.camera import open_source
from edge.config import Config
from edge.vision import geometry, landmarks


def distance_hint(face_pd: float, box: tuple[float, float, float, float], size: tuple[int, int],
                  min_pd: float) -> str:
    """What the person (or the installer aiming the camera) should do for a usable face."""
    w, h = size
    x0, y0, x1, y1 = box
    margin = 0.02 * min(w, h)
    if x0 < margin or y0 < margin or x1 > w - margin or y1 > h - margin or face_pd > 0.3 * w:
        return "move further"
    if face_pd < min_pd:
        return "move closer"
    if face_pd < 1.3 * min_pd:
        return "a little closer"
    return "good distance"


def reading(t: float, faces: list[Any], size: tuple[int, int], min_pd: float) -> dict[str, Any]:
    """The preview's figures for one frame: pose, pupil distance and the hint for its largest face."""
    if not faces:
        return {"t": round(t, 2), "face": False, "hint": "no face"}
    face = faces[0]
    pose = geometry.head_pose(face.landmarks)
    pd = geometry.pupil_distance(face.landmarks)
    return {"t": round(t, 2), "face": True, "box": [round(v) for v in face.box], "yaw": round(pose.yaw, 1),
            "pitch": round(pose.pitch, 1), "roll": round(pose.roll, 1), "pupil_distance": round(pd, 1),
            "hint": distance_hint(pd, face.box, size, min_pd)}


class Preview:
    """The configured camera and a face-mesh tracker, open until closed (a context manager)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.source = open_source(cfg.camera)
        try:
            self.landmarker = landmarks.for_video(cfg.vision, max_faces=1)
        except BaseException:
            self.source.close()
            raise

    @property
    def name(self) -> str:
        return self.source.name

    def readings(self, stop: threading.Event) -> Iterator[tuple[Any, list[Any], dict[str, Any]]]:
        """(frame, faces, reading) for each frame until the source ends or ``stop`` is set."""
        min_pd = self.cfg.vision.min_pupil_distance_px
        while not stop.is_set() and (frame := self.source.read()) is not None:
            faces = self.landmarker.detect(frame.image)  # the Landmarker keeps MediaPipe's first-face warning quiet
            h, w = frame.image.shape[:2]
            yield frame, faces, reading(frame.t, faces, (w, h), min_pd)

    def close(self) -> None:
        """The tracker, then the camera."""
        try:
            self.landmarker.close()
        finally:
            self.source.close()

    def __enter__(self) -> Preview:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
