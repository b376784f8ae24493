"""Landmarks and geometry on real frames, with signs and events checked against the footage."""

from __future__ import annotations

import numpy as np
import pytest

from edge.camera import frames
from edge.camera.replay import ReplaySource
from edge.config import VisionConfig
from edge.vision import geometry, landmarks
from edge.vision.landmarks import N_LANDMARKS
from conftest import FIXTURES


def trace(name: str, max_faces: int = 1) -> list[list]:
    """Per frame: the faces found by the video-mode landmarker."""
    with landmarks.for_video(max_faces=max_faces) as lm:
        return [lm.detect(f.image) for f in frames(ReplaySource(FIXTURES / name))]


@pytest.fixture(scope="module")
def d12() -> list[list]:
    return trace("d12.mp4")


@pytest.fixture(scope="module")
def d18() -> list[list]:
    return trace("d18.mp4")


def test_landmarks_on_real_frames(d18: list[list]) -> None:
    assert all(len(faces) == 1 for faces in d18)
    face = d18[0][0]
    assert face.landmarks.shape == (N_LANDMARKS, 3)
    x0, y0, x1, y1 = face.box
    right, left = face.pupils
    # The person's right pupil is on the image's left, both inside the face box, above its middle.
    assert x0 < right[0] < left[0] < x1 and y0 < right[1] < (y0 + y1) / 2


def test_yaw_changes_sign_through_a_head_turn(d12: list[list]) -> None:
    yaw = np.array([geometry.head_pose(f[0].landmarks).yaw for f in d12])
    # d12: frontal at the start, turns to the person's left (~frame 45), then right (~frame 90).
    assert abs(yaw[0]) < 5
    assert yaw[40:60].max() > 12 and yaw[80:95].min() < -12


def test_pitch_and_roll_are_small_when_upright(d18: list[list]) -> None:
    pose = geometry.head_pose(d18[0][0].landmarks)
    assert abs(pose.roll) < 8 and abs(pose.pitch) < 20


def test_ear_dips_during_a_blink_located_by_hand(d18: list[list]) -> None:
    # d18: eyes shut at frames 94-98 and 185-187 (checked on the frames themselves).
    ear = np.array([geometry.ears(f[0].landmarks) for f in d18])
    open_ = np.median(ear[60:90], axis=0)
    assert (open_ > 0.2).all()
    for shut in (96, 186):
        assert (ear[shut] < 0.5 * open_).all(), f"frame {shut}: {ear[shut]} vs open {open_}"


def test_no_face_on_a_blank_frame() -> None:
    with landmarks.for_images() as lm:
        assert lm.detect(np.zeros((480, 640, 3), np.uint8)) == []
        assert lm.detect(np.full((480, 640, 3), 200, np.uint8)) == []


def test_two_faces_largest_first() -> None:
    faces = [f for f in trace("s18.mp4", max_faces=2) if len(f) == 2]
    assert faces, "s18 shows two people"
    assert all(f[0].area >= f[1].area for f in faces)


def test_the_factories_take_vision_settings_from_the_config() -> None:
    """``for_video`` and ``for_images`` read ``[vision]``: one face at most when it says so."""
    with landmarks.for_images() as lm:   # the first frame of s18 where both people are found
        image = next(f.image for f in frames(ReplaySource(FIXTURES / "s18.mp4")) if len(lm.detect(f.image)) == 2)
    for make, n, want in ((landmarks.for_video, 1, 1), (landmarks.for_images, 1, 1), (landmarks.for_images, 3, 2)):
        with make(VisionConfig(max_faces=n)) as lm:
            assert len(lm.detect(image)) == want, (make.__name__, n)


def test_quality_sees_blur(d18: list[list]) -> None:
    import cv2

    image = next(iter(frames(ReplaySource(FIXTURES / "d18.mp4")))).image
    lm = d18[0][0].landmarks
    sharp = geometry.face_quality(image, lm)
    blurred = geometry.face_quality(cv2.GaussianBlur(image, (0, 0), 4), lm)
    assert blurred.sharpness < 0.3 * sharp.sharpness
    assert sharp.pupil_distance == pytest.approx(geometry.pupil_distance(lm))
    assert 30 < sharp.brightness < 230
