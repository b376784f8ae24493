"""Frame sources behind one interface: the gate never knows which camera it has.

A ``Frame`` is an RGB ``uint8`` array with a monotonic timestamp in seconds. Frames live in memory
only; no source here writes or sends one anywhere.
"""

from __future__ import annotations

import logging

from edge.camera.frame import Frame, FrameSource, frames, rotate
from edge.config import CameraConfig
from edge.errors import CameraError

log = logging.getLogger(__name__)


def open_source(cfg: CameraConfig) -> FrameSource:
    """Open the source the config names, raising ``CameraError`` with a fix when it cannot."""
    # lazy imports below: each backend brings its own libraries (picamera2 exists only on a Pi);
    # only the configured one is loaded
    if cfg.source == "replay":
        from edge.camera.replay import ReplaySource, demo_clip  # lazy, as the others

        return ReplaySource(cfg.path or demo_clip(), realtime=cfg.realtime, loop=cfg.loop, streams=True,
                            rotate=cfg.rotate)
    if cfg.source == "opencv":
        from edge.camera.opencv import OpenCVSource  # lazy

        return OpenCVSource(cfg.device, cfg.width, cfg.height, cfg.fps, rotate=cfg.rotate)
    if cfg.source == "picamera2":
        from edge.camera.picam import PicameraSource  # lazy: picamera2

        return PicameraSource(cfg.width, cfg.height, cfg.fps, rotate=cfg.rotate)
    raise CameraError(f"unknown camera source {cfg.source!r}")


__all__ = ["Frame", "FrameSource", "frames", "open_source", "rotate"]
