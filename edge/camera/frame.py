"""A frame and what every source offers: the types the camera backends and the gate share.

Kept apart from ``edge.camera``'s ``open_source`` so that each backend can import them without
importing the package that chooses between backends (no import cycle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

import numpy as np


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


_ROTATIONS = {90: 0, 180: 1, 270: 2}  # cv2.ROTATE_90_CLOCKWISE, ROTATE_180, ROTATE_90_COUNTERCLOCKWISE


def rotate(image: np.ndarray, degrees: int) -> np.ndarray:
    """Turn a frame upright for a camera mounted sideways or upside down."""
    if degrees == 0:
        return image
    import cv2  # lazy: OpenCV costs start-up time for the many callers that never rotate

    return cv2.rotate(image, _ROTATIONS[degrees])
