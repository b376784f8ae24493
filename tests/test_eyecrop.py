"""The aligned eye crop on real frames: pupils land on their fixed pixels, roll is undone, turned heads refused."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.vision import eyecrop, landmarks
from edge.vision.landmarks import LEFT_PUPIL, RIGHT_PUPIL, Landmarker

ROOT = Path(__file__).resolve().parent.parent
FRAMES = [ROOT / "edge" / "demo" / "enroll" / "d10_005.jpg"] + sorted(
    (ROOT / "tests" / "fixtures" / "faces").glob("*.jpg"))


def rgb(path: Path) -> np.ndarray:
    return np.ascontiguousarray(cv2.imread(str(path))[:, :, ::-1])


@pytest.fixture(scope="module")
def lm():
    with landmarks.for_images(max_faces=1) as m:
        yield m


def mesh(lm: Landmarker, image: np.ndarray) -> np.ndarray:
    faces = lm.detect(image)
    assert faces, "the fixture frame must show a face"
    return faces[0].landmarks


@pytest.mark.parametrize("path", FRAMES, ids=lambda p: p.stem)
def test_pupils_land_on_their_fixed_pixels(lm, path):
    image = rgb(path)
    L = mesh(lm, image)
    crop = eyecrop.eye_crop(image, L)
    assert crop is not None and crop.shape == (eyecrop.CROP_H, eyecrop.CROP_W, 3) and crop.dtype == np.uint8
    m = eyecrop.crop_transform(L[RIGHT_PUPIL, :2], L[LEFT_PUPIL, :2])
    for idx, want in ((RIGHT_PUPIL, eyecrop.RIGHT_PUPIL_XY), (LEFT_PUPIL, eyecrop.LEFT_PUPIL_XY)):
        got = m[:, :2] @ L[idx, :2] + m[:, 2]
        assert np.allclose(got, want, atol=1e-3)
    # And in the pixels themselves: the pupil/iris spot is darker than the crop around it.
    grey = crop.astype(np.float32).mean(axis=2)
    for x, y in (eyecrop.RIGHT_PUPIL_XY, eyecrop.LEFT_PUPIL_XY):
        spot = grey[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3].mean()
        assert spot < grey.mean() - 15, (path.name, spot, grey.mean())


def test_roll_and_scale_are_undone(lm):
    """The same face tilted 15 degrees and shrunk gives (nearly) the same crop."""
    image = rgb(FRAMES[0])
    h, w = image.shape[:2]
    tilted = cv2.warpAffine(image, cv2.getRotationMatrix2D((w / 2, h / 2), 15, 0.8), (w, h),
                            borderMode=cv2.BORDER_REPLICATE)
    a = eyecrop.eye_crop(image, mesh(lm, image)).astype(np.float32).mean(axis=2)
    b = eyecrop.eye_crop(tilted, mesh(lm, tilted)).astype(np.float32).mean(axis=2)
    corr = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert corr > 0.9, corr
    # Without alignment the two views differ much more (the test can fail).
    raw_b = cv2.resize(tilted[h // 3:h // 3 + h // 4], (eyecrop.CROP_W, eyecrop.CROP_H)).mean(axis=2)
    assert np.corrcoef(a.ravel(), raw_b.ravel())[0, 1] < corr


def test_turned_head_is_rejected_not_mirrored(lm):
    image = rgb(FRAMES[0])
    L = mesh(lm, image)
    centre = L.mean(axis=0)
    for deg, usable in ((15, True), (45, False), (-45, False)):
        a = np.radians(deg)
        rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]], np.float32)
        turned = (L - centre) @ rot.T + centre
        assert (eyecrop.eye_crop(image, turned) is not None) == usable, deg


def test_tiny_face_is_rejected(lm):
    image = rgb(FRAMES[0])
    L = mesh(lm, image).copy()
    L[:, :2] = L[:, :2] * 0.05
    assert eyecrop.eye_crop(image, L) is None
