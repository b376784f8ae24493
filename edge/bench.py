"""Per-stage timing and memory on recorded frames: the honest speed figures.

Each stage is timed on its own over the same frames (decode, landmarks, geometry, ...), medians
and 95th percentiles in milliseconds, then the process's peak RSS. Later stages (eye crop,
embedding, match) register here as they land.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge.camera.replay import ReplaySource, demo_clip
from edge.config import Config
from edge.vision import geometry
from edge.vision.landmarks import Landmarker

log = logging.getLogger(__name__)


def _stats(ms: list[float]) -> tuple[float, float]:
    a = np.asarray(ms)
    return float(np.median(a)), float(np.percentile(a, 95))


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Run ``fn`` once; its result and the time it took in ms."""
    t0 = time.perf_counter()
    r = fn()
    return r, (time.perf_counter() - t0) * 1000.0


def rss_mb() -> float:
    """Peak resident memory of this process in MB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 1024.0 / 1024.0


def run(cfg: Config, out: Any, video: Path | None = None, frames: int = 150) -> int:
    """Time each stage over up to ``frames`` frames of the clip and print one line per stage."""
    source = ReplaySource(video or demo_clip(), realtime=False)
    times: dict[str, list[float]] = {"decode": [], "landmarks": [], "geometry": []}
    total: list[float] = []
    lm = Landmarker(cfg.vision.max_faces)
    try:
        for _ in range(frames):
            frame, t_dec = timed(source.read)
            if frame is None:
                break
            faces, t_lm = timed(lambda: lm.detect(frame.image))
            times["decode"].append(t_dec)
            times["landmarks"].append(t_lm)
            t_geo = 0.0
            if faces:
                L = faces[0].landmarks
                _, t_geo = timed(lambda: (geometry.head_pose(L), geometry.ears(L),
                                          geometry.face_quality(frame.image, L)))
                times["geometry"].append(t_geo)
            total.append(t_dec + t_lm + t_geo)
    finally:
        source.close()
        lm.close()
    times["frame"] = total
    h, w = (frame.image.shape[:2]) if total else (0, 0)
    out.text(f"maskgate bench: {len(total)} frames of {source.path.name} ({w}x{h})")
    out.text(f"{'stage':<12}{'median ms':>10}{'p95 ms':>10}")
    for stage, ms in times.items():
        if not ms:
            continue
        med, p95 = _stats(ms)
        out.event({"stage": stage, "ms_median": round(med, 3), "ms_p95": round(p95, 3)},
                  f"{stage:<12}{med:>10.2f}{p95:>10.2f}")
    if total:
        out.text(f"{'fps':<12}{1000.0 / _stats(total)[0]:>10.1f}")
    mb = rss_mb()
    out.event({"rss_mb": round(mb, 1)}, f"{'rss MB':<12}{mb:>10.1f}")
    return 0
