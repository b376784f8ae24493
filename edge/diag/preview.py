"""``maskgate preview``: the camera positioning aid. The face box, head pose, pupil distance and a
distance hint, live, in a window or on the terminal. Nothing is saved.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

import numpy as np

from edge.config import Config

def distance_hint(face_pd: float, box: tuple[float, float, float, float], size: tuple[int, int],
                  min_pd: float) -> str:
    """What the person (or the installer aiming the camera) should do for a usable face."""
    w, h = size
    x0, y0, x1, y1 = box
    margin = 0.02 * min(w, h)
    if x0 < margin or y0 < margin or x1 > w - margin or y1 > h - margin or face_pd > 0.3 * w:
        return "move further"
    if face_pd < min_pd:
        return "move closer"
    if face_pd < 1.3 * min_pd:
        return "a little closer"
    return "good distance"


def _has_display() -> bool:
    """A window can be shown: a display is set and this OpenCV was built with a GUI backend."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import cv2

    return "GUI:                           NONE" not in cv2.getBuildInformation()


def reading(t: float, faces: list[Any], size: tuple[int, int], min_pd: float) -> dict[str, Any]:
    """The preview's figures for one frame: pose, pupil distance and the hint for its largest face."""
    from edge.vision import geometry

    if not faces:
        return {"t": round(t, 2), "face": False, "hint": "no face"}
    face = faces[0]
    pose = geometry.head_pose(face.landmarks)
    pd = geometry.pupil_distance(face.landmarks)
    return {"t": round(t, 2), "face": True, "box": [round(v) for v in face.box], "yaw": round(pose.yaw, 1),
            "pitch": round(pose.pitch, 1), "roll": round(pose.roll, 1), "pupil_distance": round(pd, 1),
            "hint": distance_hint(pd, face.box, size, min_pd)}


def _reading_text(r: dict[str, Any]) -> str:
    if not r["face"]:
        return f"{r['t']:7.2f}s  no face"
    return (f"{r['t']:7.2f}s  yaw {r['yaw']:+4.0f}  pitch {r['pitch']:+4.0f}  roll {r['roll']:+4.0f}  "
            f"pupils {r['pupil_distance']:4.0f} px  {r['hint']}")


def _draw(image: np.ndarray, faces: list[Any], r: dict[str, Any]) -> np.ndarray:
    import cv2

    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if faces:
        x0, y0, x1, y1 = (int(v) for v in faces[0].box)
        good = r["hint"] == "good distance"
        colour = (0, 200, 0) if good else (0, 200, 255)
        cv2.rectangle(bgr, (x0, y0), (x1, y1), colour, 2)
        for p in faces[0].pupils:
            cv2.circle(bgr, (int(p[0]), int(p[1])), 3, colour, -1)
    text = _reading_text(r).split("s  ", 1)[1]
    cv2.putText(bgr, text, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(bgr, text, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return bgr


def preview(cfg: Config, out: Any, text_only: bool = False) -> int:
    """Show the camera with face box, pose, pupil distance and a distance hint until Ctrl-C (or 'q').

    A window when there is a display, else a readout in the terminal (updated in place on a TTY, one
    line per reading otherwise, five readings a second). Nothing is saved. A recording ends the
    preview when it ends.
    """
    from edge.camera import open_source
    from edge.vision.landmarks import Landmarker

    window = not text_only and not out.json and _has_display()
    in_place = not window and not out.json and sys.stdout.isatty()
    source = open_source(cfg.camera)
    v = cfg.vision
    next_t = -1.0
    # Ctrl-C sets a flag the loop reads between frames: a KeyboardInterrupt raised inside MediaPipe's
    # Python wrapper can leave its graph mid-packet, and closing it then may never return.
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set()) \
        if threading.current_thread() is threading.main_thread() else None
    try:
        with Landmarker(1, min_detection_confidence=v.min_detection_confidence,
                        min_tracking_confidence=v.min_tracking_confidence) as lm:
            if not window:
                out.text(f"preview of {source.name} (Ctrl-C to stop; nothing is saved)")
            while not stop.is_set() and (frame := source.read()) is not None:
                faces = lm.detect(frame.image)  # the Landmarker keeps MediaPipe's first-face warning quiet
                h, w = frame.image.shape[:2]
                r = reading(frame.t, faces, (w, h), v.min_pupil_distance_px)
                if window:
                    import cv2

                    cv2.imshow("maskgate preview (q to quit)", _draw(frame.image, faces, r))
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        break
                    continue
                if frame.t < next_t:
                    continue
                next_t = frame.t + 0.2
                if in_place:
                    sys.stdout.write("\r" + _reading_text(r) + "\033[K")
                    sys.stdout.flush()
                else:
                    out.event(r, _reading_text(r))
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        source.close()
        if in_place:
            sys.stdout.write("\n")
        if window:
            import cv2

            cv2.destroyAllWindows()
    return 0
