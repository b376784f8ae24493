"""The gate: frames in, decisions out.

Foundation stage: the replay loop that turns a recording into per-frame ``face`` events. The
decision state machine (tracking -> challenge -> verify -> unlock -> cooldown) builds on this loop.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Callable

from edge.camera import Frame, frames
from edge.camera.replay import ReplaySource, demo_clip
from edge.config import Config
from edge.vision import geometry
from edge.vision.landmarks import Face, Landmarker

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]


def face_event(frame: Frame, face: Face, n_faces: int) -> dict[str, Any]:
    """The ``face`` event line of DESIGN.md for one frame's largest face."""
    pose = geometry.head_pose(face.landmarks)
    ear_r, ear_l = geometry.ears(face.landmarks)
    return {"t": round(frame.t, 3), "event": "face", "frame": frame.index,
            "box": [round(v, 1) for v in face.box], "score": round(face.score, 3), "faces": n_faces,
            "yaw": round(pose.yaw, 1), "pitch": round(pose.pitch, 1), "roll": round(pose.roll, 1),
            "ear_left": round(ear_l, 3), "ear_right": round(ear_r, 3),
            "pupil_distance": round(geometry.pupil_distance(face.landmarks), 1)}


def replay(video: Path, cfg: Config, state: Path, out: Any, challenges: list[str] | None = None) -> int:
    """Run the gate over a recording as fast as it decodes, printing event lines."""
    source = ReplaySource(video, realtime=False)
    n = 0
    with Landmarker(cfg.vision.max_faces, min_detection_confidence=cfg.vision.min_detection_confidence,
                    min_tracking_confidence=cfg.vision.min_tracking_confidence) as lm:
        for frame in frames(source):
            faces = lm.detect(frame.image)
            if faces:
                n += 1
                ev = face_event(frame, faces[0], len(faces))
                out.event(ev, f"{ev['t']:7.2f}s face yaw={ev['yaw']:+.0f} pitch={ev['pitch']:+.0f} "
                              f"ear={ev['ear_left']:.2f}/{ev['ear_right']:.2f} faces={ev['faces']}")
    log.info("%s: %d frames with a face", video, n)
    return 0


def demo(cfg: Config, out: Any) -> int:
    """The whole gate on the bundled clip with a temporary state directory."""
    with tempfile.TemporaryDirectory(prefix="maskgate-demo-") as state:
        return replay(Path(demo_clip()), cfg, Path(state), out, challenges=["blink"])
