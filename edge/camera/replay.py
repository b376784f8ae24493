"""Recorded frames as a camera: a video file or a folder of images.

Used by the demo, ``maskgate replay``, the tests and benchmarks. Timestamps follow the recording's
own clock (frame index / fps), so timing rules such as the challenge window behave the same whether
frames are decoded in real time or as fast as possible.
"""

from __future__ import annotations

import logging
import stat
import time
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from edge.camera.frame import Frame, rotate
from edge.errors import CameraError
from edge.native import quiet_stderr

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp"}
FOLDER_FPS = 10.0  # an image folder is played at this rate
MAX_IMAGE_PIXELS = 40_000_000  # larger images (and video frames) are refused before decoding
HEADER_BYTES = 64 * 1024  # enough for a JPEG's EXIF and thumbnail before its frame header


def demo_clip() -> str:
    """The bundled demo recording (MIT-licensed LivePortrait clip, see edge/demo/LICENSE)."""
    return str(resources.files("edge") / "demo" / "clip.mp4")


def header_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, BMP, GIF or WebP header, without decoding; None when unknown."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:2] == b"BM" and len(head) >= 26:
        return abs(int.from_bytes(head[18:22], "little", signed=True)), abs(int.from_bytes(head[22:26], "little",
                                                                                            signed=True))
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and head[12:16] == b"VP8X":
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    if head[:2] == b"\xff\xd8":  # JPEG: walk the segments to the frame header (SOFn)
        i = 2
        while i + 9 <= len(head):
            if head[i] != 0xFF:
                return None
            marker = head[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return int.from_bytes(head[i + 7:i + 9], "big"), int.from_bytes(head[i + 5:i + 7], "big")
            i += 2 + int.from_bytes(head[i + 2:i + 4], "big")
    return None


def check_image_file(path: str | Path) -> None:
    """Refuse what must not reach the decoder: a FIFO or device (it would hang), and an image larger
    than ``MAX_IMAGE_PIXELS`` by its header (a 30000 x 30000 PNG of 876 kB decodes to 2.7 GB and
    crashes MediaPipe); the header is read, the image is not decoded."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise CameraError(f"{p}: no such image file") from None
    except OSError as e:
        raise CameraError(f"{p}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CameraError(f"{p}: not a regular file (a FIFO, device or socket); give an image file")
    try:
        with open(p, "rb") as f:
            head = f.read(HEADER_BYTES)
    except OSError as e:
        raise CameraError(f"{p}: cannot read: {e.strerror}") from None
    size = header_size(head)
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise CameraError(f"{p}: {size[0]} x {size[1]} pixels is more than the {MAX_IMAGE_PIXELS / 1e6:.0f} "
                          f"megapixels maskgate reads; scale the image down")


def too_large(image: np.ndarray, what: str) -> None:
    """The same limit after decoding, for the formats whose header was not read."""
    if image.shape[0] * image.shape[1] > MAX_IMAGE_PIXELS:
        raise CameraError(f"{what}: {image.shape[1]} x {image.shape[0]} pixels is more than the "
                          f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels maskgate reads; scale it down")


def read_image(path: str | Path) -> np.ndarray:
    """An image file as RGB, or ``CameraError`` naming the file and what to give instead."""
    check_image_file(path)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise CameraError(f"{path}: cannot be read as an image (give a JPEG, PNG, BMP or PGM file)")
    too_large(bgr, str(path))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class ReplaySource:
    """Frames from a video file or an image folder."""

    def __init__(self, path: str | Path, realtime: bool = False, loop: bool = False,
                 rotate: int = 0, streams: bool = False) -> None:
        """``streams``: accept a FIFO or device too (the daemon's camera, where a stalled read is the
        watchdog's to catch); a command given a file refuses them instead of hanging."""
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
        if not streams and not self.path.is_dir() and not self.path.is_file():  # FFmpeg would hang on a FIFO
            raise CameraError(f"{self.path}: not a regular file or folder (a FIFO, device or socket); "
                              f"give a video file or an image folder")
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
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if w * h > MAX_IMAGE_PIXELS:
            cap.release()
            raise CameraError(f"{self.path}: frames of {w} x {h} pixels are more than the "
                              f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels maskgate reads")
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
