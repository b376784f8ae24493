"""A V4L2 / USB camera, or a Jetson CSI camera through a GStreamer pipeline, via OpenCV.

PyPI's OpenCV wheels have no GStreamer; on a Jetson the venv is made with
``--system-site-packages`` so JetPack's own OpenCV (built with GStreamer) is the one imported.
"""

from __future__ import annotations

import logging
import re
import time

import cv2

from edge.camera.frame import Frame, rotate
from edge.errors import CameraError

log = logging.getLogger(__name__)

MAX_FAILED_READS = 10


def parse_device(device: str) -> tuple[int | str, int]:
    """Device index, /dev/videoN path or GStreamer pipeline -> (what VideoCapture takes, backend)."""
    device = device.strip()
    if re.fullmatch(r"\d+", device):
        return int(device), cv2.CAP_V4L2
    if device.startswith("/dev/"):
        return device, cv2.CAP_V4L2
    if "!" in device:  # a GStreamer pipeline ends in "! appsink"
        return device, cv2.CAP_GSTREAMER
    raise CameraError(f"camera.device {device!r}: give an index (0), a /dev/videoN path or a GStreamer pipeline")


class OpenCVSource:
    """Frames from a live camera through ``cv2.VideoCapture``."""

    def __init__(self, device: str, width: int = 640, height: int = 480, fps: float = 30.0,
                 rotate: int = 0) -> None:
        target, backend = parse_device(device)
        self.name = f"opencv:{device}"
        self.rotate = rotate
        if isinstance(target, str) and target.startswith("/dev/"):
            import os

            if not os.path.exists(target):
                raise CameraError(f"camera {target} not found (is it plugged in? `ls /dev/video*`)")
        if backend == cv2.CAP_GSTREAMER and "GStreamer:                   YES" not in cv2.getBuildInformation():
            raise CameraError("this OpenCV has no GStreamer: on a Jetson use JetPack's OpenCV "
                              "(venv with --system-site-packages, no opencv wheel in it)")
        cap = cv2.VideoCapture(target, backend)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"camera {device} could not be opened (check the cable, "
                              "`v4l2-ctl --list-devices`, and that the user is in group video)")
        if backend == cv2.CAP_V4L2:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            cap.set(cv2.CAP_PROP_FPS, fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a backlog
        self._cap: cv2.VideoCapture | None = cap
        self._index = 0

    def read(self) -> Frame | None:
        if self._cap is None:
            return None
        for _ in range(MAX_FAILED_READS):
            ok, bgr = self._cap.read()
            if ok:
                frame = Frame(rotate(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.rotate),
                              time.monotonic(), self._index)
                self._index += 1
                return frame
        raise CameraError(f"{self.name}: camera stopped delivering frames")

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
