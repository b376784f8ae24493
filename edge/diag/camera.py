"""``diag camera``: the configured source opens, its real frame rate and resolution, the light,
and whether a face is visible now.

A live camera is read for about a second (so the rate is the real one); a recording gives a few
frames of its start. Only those few frames are kept, in memory, and only long enough to look at.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from edge.camera import open_source
from edge.config import Config
from edge.diag import base
from edge.diag.base import Context, Finding, _fail, _ok, _warn
from edge.errors import CameraError
from edge.vision import geometry, landmarks

DARK, BRIGHT = 40.0, 220.0  # mean grey level (0-255) outside which faces are hard to see


def _camera_hint(cfg: Config) -> str:
    cam = cfg.camera
    if cam.source == "opencv":
        videos = sorted(str(p) for p in (base.SYS / "dev").glob("video*"))
        if not videos:
            return "no /dev/video* device: plug the camera in (or set camera.source), then `v4l2-ctl --list-devices`"
        return (f"devices here: {' '.join(videos)}; set camera.device to one of them; the user needs group video; "
                f"stop the gate first if it runs (`sudo systemctl stop maskgate`)")
    if cam.source == "picamera2":
        return ("check the ribbon cable and `rpicam-hello --list-cameras`; stop the gate first if it runs "
                "(`sudo systemctl stop maskgate`)")
    return "set camera.path to a readable video or image folder (empty = the bundled demo clip)"


def _grab(cfg: Config) -> tuple[list[Any], float, str]:
    """A few frames from the configured source (oldest first), the frame rate, and the source's name.

    A live camera is read for about a second after a short warm-up (auto exposure), so its rate is
    the real one, and its last frames are "now"; a recording reports the rate written in the file
    and gives every 15th of its first 90 frames. Only these few frames are kept, in memory.
    """
    cam = cfg.camera
    live = cam.source != "replay"
    source = open_source(cam if live else dataclasses.replace(cam, realtime=False, loop=False))
    kept: deque[Any] = deque(maxlen=6)
    try:
        if live:
            for _ in range(5):
                source.read()
            n, first, last = 0, None, None
            t_end = time.monotonic() + 1.0
            while time.monotonic() < t_end and (f := source.read()) is not None:
                kept.append(f)
                n, first, last = n + 1, first or f, f
            span = last.t - first.t if n > 1 else 0.0
            fps = (n - 1) / span if span > 0 else 0.0
        else:
            for i in range(90):
                if (f := source.read()) is None:
                    break
                if i % 15 == 0:
                    kept.append(f)
            fps = float(getattr(source, "fps", 0.0))
    finally:
        source.close()
    return list(kept), fps, source.name


def check_camera(ctx: Context) -> Finding:
    """Opens; real frame rate and resolution; brightness; a face visible now."""
    cfg = ctx.cfg
    try:
        frames, fps, name = _grab(cfg)
    except CameraError as e:
        return _fail(str(e), _camera_hint(cfg))
    if not frames:
        return _fail(f"{cfg.camera.source}: opened but gave no frames", _camera_hint(cfg))
    h, w = frames[-1].image.shape[:2]
    grey = frames[-1].image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    brightness = float(grey.mean())
    picks = frames[::-1]  # newest first: for a live camera the last frame is "now"
    face = None
    with landmarks.for_images(cfg.vision, max_faces=1) as lm:
        for f in picks:
            faces = lm.detect(f.image)
            if faces:
                face = faces[0]
                break
    pd = geometry.pupil_distance(face.landmarks) if face is not None else 0.0
    seen = f"face visible (pupils {pd:.0f} px)" if face is not None else "no face visible"
    live = cfg.camera.source != "replay"
    what = name if live else f"recording {Path(name.split(':', 1)[1]).name}"
    detail = f"{what}: {w}x{h} at {fps:.1f} fps, brightness {brightness:.0f}/255, {seen}"
    problems: list[str] = []
    c = cfg.camera
    asked = (c.width, c.height) if c.rotate in (0, 180) else (c.height, c.width)  # frames come rotated
    if live and (w, h) != asked:
        problems.append(f"the camera gives {w}x{h}, not the configured "
                        f"{cfg.camera.width}x{cfg.camera.height}: set camera.width/height to a mode it has")
    if live and fps < 0.6 * cfg.camera.fps:
        problems.append(f"{fps:.1f} fps is well below camera.fps = {cfg.camera.fps:g}: low light makes "
                        "cameras lengthen exposure; add light or lower camera.width/height")
    if brightness < DARK:
        problems.append("the image is dark: add light at the door or check the IR illuminator")
    elif brightness > BRIGHT:
        problems.append("the image is overexposed: shade the camera from direct light")
    if face is None:
        problems.append("stand 0.5-1 m in front of the camera and run `maskgate diag camera` again "
                        "(`maskgate preview` helps aim it)")
    elif pd < cfg.vision.min_pupil_distance_px:
        problems.append(f"the face is too small ({pd:.0f} px between pupils, the gate needs "
                        f"{cfg.vision.min_pupil_distance_px:g}): move the camera nearer or use a narrower lens")
    if not live:
        problems.append("camera.source is replay: the gate watches a recording, not the door; "
                        "set camera.source = picamera2 or opencv on a gate")
    if problems:
        return _warn(detail, "; ".join(problems))
    return _ok(detail)
