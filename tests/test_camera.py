"""Frame sources: real clips and folders, clear errors for missing or broken cameras."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.camera import Frame, frames, open_source
from edge.camera.opencv import OpenCVSource, parse_device
from edge.camera.replay import ReplaySource, demo_clip
from edge.config import CameraConfig
from edge.errors import CameraError
from conftest import FIXTURES, maskgate


def test_video_frames_are_rgb_with_monotonic_time() -> None:
    got = list(frames(ReplaySource(FIXTURES / "d18.mp4")))
    assert len(got) == 216
    assert all(f.image.dtype == np.uint8 and f.image.shape == (480, 480, 3) for f in got)
    ts = [f.t for f in got]
    assert ts == sorted(ts) and ts[0] == 0 and ts[-1] == pytest.approx(215 / 30, abs=1e-6)
    # RGB, not OpenCV's BGR: compare with a direct decode.
    bgr = cv2.VideoCapture(str(FIXTURES / "d18.mp4")).read()[1]
    assert np.array_equal(got[0].image, bgr[:, :, ::-1])


def test_image_folder(tmp_path: Path) -> None:
    for p in sorted((Path(demo_clip()).parent / "enroll").glob("*.jpg"))[:3]:
        shutil.copy(p, tmp_path)
    (tmp_path / "notes.txt").write_text("not an image")
    got = list(frames(ReplaySource(tmp_path)))
    assert [f.index for f in got] == [0, 1, 2] and got[0].image.shape[2] == 3


def test_realtime_replay_paces_frames() -> None:
    src = ReplaySource(FIXTURES / "d18.mp4", realtime=True)
    import time

    t0 = time.monotonic()
    for _ in range(7):
        src.read()
    src.close()
    assert time.monotonic() - t0 >= 6 / 30  # the 7th frame is due 0.2 s after the first


def test_loop_restarts_the_clip() -> None:
    src = ReplaySource(FIXTURES / "d18.mp4", loop=True)
    n = sum(1 for _ in range(300) if src.read() is not None)
    src.close()
    assert n == 300


def test_truncated_video(tmp_path: Path) -> None:
    bad = tmp_path / "cut.mp4"
    bad.write_bytes((FIXTURES / "d18.mp4").read_bytes()[:20000])
    with pytest.raises(CameraError, match="cut.mp4"):
        ReplaySource(bad)


def test_not_a_video(tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("hello")
    with pytest.raises(CameraError, match="not a readable video"):
        ReplaySource(bad)
    r = maskgate("replay", bad)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"maskgate: error: {bad}: not a readable video (truncated or not a video file)"]


def test_missing_camera_device_names_it() -> None:
    with pytest.raises(CameraError, match="/dev/video99"):
        OpenCVSource("/dev/video99")
    with pytest.raises(CameraError, match="camera 7"):
        OpenCVSource("7")


def test_device_forms() -> None:
    assert parse_device("0")[0] == 0 and parse_device("/dev/video1")[0] == "/dev/video1"
    gst = "nvarguscamerasrc ! video/x-raw(memory:NVMM) ! nvvidconv ! appsink"
    assert parse_device(gst) == (gst, cv2.CAP_GSTREAMER)
    with pytest.raises(CameraError):
        parse_device("webcam")


def test_picamera2_missing_names_the_apt_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(CameraError, match="python3-picamera2"):
        open_source(CameraConfig(source="picamera2"))


def test_picamera2_path_with_stand_in_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """The picamera2 source's own code, run against stand-ins for the OS-only libcamera stack."""
    calls: list[str] = []

    class Picamera2:
        @staticmethod
        def global_camera_info() -> list[dict]:
            return [{"Model": "imx708"}]

        def create_video_configuration(self, **kw: object) -> dict:
            calls.append(f"config {kw['main']}")
            return dict(kw)

        def configure(self, c: dict) -> None:
            calls.append("configure")

        def start(self) -> None:
            calls.append("start")

        def capture_array(self, name: str) -> np.ndarray:
            if fail:
                raise RuntimeError("dequeue timed out")
            img = np.zeros((480, 640, 4), np.uint8)  # XRGB8888-sized buffers carry a 4th byte
            img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30
            img[0, :, :3] = 200  # the top row, which a 90-degree clockwise turn makes the right column
            return img

        def stop(self) -> None:
            calls.append("stop")

        def close(self) -> None:
            calls.append("close")

    monkeypatch.setitem(sys.modules, "libcamera", types.ModuleType("libcamera"))
    fake = types.ModuleType("picamera2")
    fake.Picamera2 = Picamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", fake)
    fail = False
    src = open_source(CameraConfig(source="picamera2", rotate=90))
    f = src.read()
    # RGB as libcamera's BGR888 lays it out, the padding byte dropped, turned clockwise
    assert isinstance(f, Frame) and f.image.shape == (640, 480, 3)
    assert f.image[5, 5].tolist() == [10, 20, 30]
    assert (f.image[:, -1] == 200).all() and not (f.image[:, 0] == 200).any()
    assert src.read().index == 1
    fail = True
    with pytest.raises(CameraError, match="stopped delivering frames: dequeue timed out"):
        src.read()
    src.close()
    assert src.read() is None  # closed: no frame, no call into the camera
    assert "config {'size': (640, 480), 'format': 'BGR888'}" in calls

    Picamera2.global_camera_info = staticmethod(lambda: [])  # type: ignore[method-assign]
    with pytest.raises(CameraError, match="no Raspberry Pi camera"):
        open_source(CameraConfig(source="picamera2"))
