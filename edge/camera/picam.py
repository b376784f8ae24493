"""The Raspberry Pi camera (CSI) through picamera2.

picamera2 is not on PyPI in a usable form for the Pi: it comes from the OS (``python3-picamera2``),
so the venv on a Pi is made with ``--system-site-packages``.
"""

from __future__ import annotations

import logging
import time

from edge.camera.frame import Frame, rotate
from edge.errors import CameraError

log = logging.getLogger(__name__)


def _import_picamera2():
    try:
        from picamera2 import Picamera2  # type: ignore[import-not-found]
    except ImportError as e:
        raise CameraError("picamera2 is not installed: `sudo apt install python3-picamera2` and make "
                          f"the venv with --system-site-packages ({e})") from None
    return Picamera2


class PicameraSource:
    """Frames from the first CSI camera, RGB in memory."""

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0, rotate: int = 0) -> None:
        picamera2 = _import_picamera2()
        self.name = "picamera2"
        self.rotate = rotate
        try:
            if not picamera2.global_camera_info():
                raise CameraError("no Raspberry Pi camera found (check the ribbon cable; `rpicam-hello --list-cameras`)")
            cam = picamera2()
            # libcamera's "RGB888" is B,G,R in memory; "BGR888" gives R,G,B bytes, which is what we want.
            config = cam.create_video_configuration(
                main={"size": (width, height), "format": "BGR888"},
                controls={"FrameRate": float(fps)}, buffer_count=2)
            cam.configure(config)
            cam.start()
        except CameraError:
            raise
        except Exception as e:  # libcamera raises RuntimeError and friends
            raise CameraError(f"Raspberry Pi camera could not be started: {e}") from None
        self._cam = cam
        self._index = 0

    def read(self) -> Frame | None:
        if self._cam is None:
            return None
        try:
            image = self._cam.capture_array("main")
        except Exception as e:
            raise CameraError(f"Raspberry Pi camera stopped delivering frames: {e}") from None
        frame = Frame(rotate(image[:, :, :3], self.rotate), time.monotonic(), self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
                self._cam.close()
            finally:
                self._cam = None
