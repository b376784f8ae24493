"""Frame sources behind one interface: the gate never knows which camera it has.

A ``Frame`` is an RGB ``uint8`` array with a monotonic timestamp in seconds. Frames live in memory
only; no source here writes or sends one anywhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator, Protocol

import numpy as np

from edge.config import CameraConfig
from edge.errors import CameraError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    """One RGB image (H x W x 3, uint8) and when it was taken (monotonic seconds)."""

    image: np.ndarray
    t: float
    index: int


class FrameSource(Protocol):
    """What every camera offers: read frames until ``None`` (end or stop), then close."""

    name: str

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


def frames(source: FrameSource) -> Iterator[Frame]:
    """Iterate a source to its end, closing it whatever happens."""
    try:
        while (frame := source.read()) is not None:
            yield frame
    finally:
        source.close()


def open_source(cfg: CameraConfig) -> FrameSource:
    """Open the source the config names, raising ``CameraError`` with a fix when it cannot."""
    if cfg.source == "replay":
        from edge.camera.replay import ReplaySource, demo_clip

        return ReplaySource(cfg.path or demo_clip(), realtime=cfg.realtime, loop=cfg.loop, streams=True,
                            rotate=cfg.rotate)
    if cfg.source == "opencv":
        from edge.camera.opencv import OpenCVSource

        return OpenCVSource(cfg.device, cfg.width, cfg.height, cfg.fps, rotate=cfg.rotate)
    if cfg.source == "picamera2":
        from edge.camera.picam import PicameraSource

        return PicameraSource(cfg.width, cfg.height, cfg.fps, rotate=cfg.rotate)
    raise CameraError(f"unknown camera source {cfg.source!r}")


_ROTATIONS = {90: 0, 180: 1, 270: 2}  # cv2.ROTATE_90_CLOCKWISE, ROTATE_180, ROTATE_90_COUNTERCLOCKWISE


def rotate(image: np.ndarray, degrees: int) -> np.ndarray:
    """Turn a frame upright for a camera mounted sideways or upside down."""
    if degrees == 0:
        return image
    import cv2

    return cv2.rotate(image, _ROTATIONS[degrees])
