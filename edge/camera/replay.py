"""Recorded frames as a camera: a video file or a folder of images.

Used by the demo, ``maskgate replay``, the tests and benchmarks. Timestamps follow the recording's
own clock (frame index / fps), so timing rules such as the challenge window behave the same whether
frames are decoded in real time or as fast as possible.
"""

from __future__ import annotations

import logging
import time
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from edge.camera import Frame, rotate
from edge.errors import CameraError
from edge.native import quiet_stderr

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp"}
FOLDER_FPS = 10.0  # an image folder is played at this rate


def demo_clip() -> str:
    """The bundled demo recording (MIT-licensed LivePortrait clip, see edge/demo/LICENSE)."""
    return str(resources.files("edge") / "demo" / "clip.mp4")


def read_image(path: str | Path) -> np.ndarray:
    """An image file as RGB, or ``CameraError`` naming the file."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise CameraError(f"{path}: not a readable image file")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class ReplaySource:
    """Frames from a video file or an image folder."""

    def __init__(self, path: str | Path, realtime: bool = False, loop: bool = False,
                 rotate: int = 0) -> None:
        self.path = Path(path)
        self.name = f"replay:{self.path}"
        self.realtime = realtime
        self.loop = loop
        self.rotate = rotate
        self._index = 0
        self._start = 0.0  # set at the first read, so opening the file does not count as playing it
        self._cap: cv2.VideoCapture | None = None
        self._files: list[Path] = []
        if not self.path.exists():
            raise CameraError(f"{self.path}: no such file or folder")
        if self.path.is_dir():
            self._files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._files:
                raise CameraError(f"{self.path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            self.fps = FOLDER_FPS
            self.frame_count = len(self._files)
        else:
            self._open_video()

    def _open_video(self) -> None:
        with quiet_stderr():  # FFmpeg prints its own complaint about a broken file
            cap = cv2.VideoCapture(str(self.path))
            ok, _ = cap.read() if cap.isOpened() else (False, None)
        if not ok:
            cap.release()
            raise CameraError(f"{self.path}: not a readable video (truncated or not a video file)")
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 1 <= fps <= 240 else 30.0
        self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self._cap = cap

    def _next_image(self) -> np.ndarray | None:
        if self._files:
            i = self._index % len(self._files) if self.loop else self._index
            return read_image(self._files[i]) if i < len(self._files) else None
        assert self._cap is not None
        ok, bgr = self._cap.read()
        if not ok and self.loop and self._index > 0:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._cap.read()
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if ok else None

    def read(self) -> Frame | None:
        if self._cap is None and not self._files:
            return None
        image = self._next_image()
        if image is None:
            return None
        t = self._index / self.fps
        if self._index == 0:
            self._start = time.monotonic()
        if self.realtime:
            delay = self._start + t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        frame = Frame(rotate(image, self.rotate), t, self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._files = []
