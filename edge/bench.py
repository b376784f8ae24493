"""Per-stage timing and memory on recorded frames: the honest speed figures.

Each stage is timed on its own over the same frames (decode, landmarks, geometry, eye crop,
embedding, the whole-face chip, its embedding and the mask check, 1:N match against 10,000 templates
or ``--templates N``), medians and 95th percentiles in milliseconds, then frames per second and the
process's peak RSS. ``landmarks`` is the face mesh alone (edge.vision.landmarks runs nothing else);
``geometry`` is what the gate reads from the landmarks on every frame (edge.gate.face_event and
worth_embedding), not enrolment's face quality.

``frame`` is the gate's loop turn, not the sum of every stage: the gate (edge.gate) runs decode,
landmarks and geometry on every frame, but the eye and whole-face stages only on the frames it takes
an embedding of (``match.frames`` before the challenge and as many after, near, frontal, eyes open)
and the search once per approach, at its decision. The bench counts them into ``frame`` on the first
2 x ``match.frames`` such frames of each approach, the search on the last of them, and starts the next
approach ``gate.cooldown_s`` later; it leaves out the challenge between the two halves, so it counts
the embedding frames at least as often as the gate. ``embed_frame`` is the loop turn of those frames
alone: what one such frame costs. Every stage is still timed on every frame with a face, so its own
row has as many samples as the clip gives.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge import fusion
from edge.camera.replay import ReplaySource, demo_clip
from edge.config import Config
from edge.embed import Embedder
from edge.errors import ConfigError, ModelError
from edge.gate import face_event, worth_embedding
from edge.match import Gallery
from edge.vision import eyecrop, facecrop, landmarks

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


MATCH_TEMPLATES = 10_000  # default gallery size for the match stage: 2,000 people x 5 templates
MAX_TEMPLATES = 1_000_000
MATCH_PER_PERSON = 5
MATCH_DIM = 128  # template length when no embedder is installed to say its own


def synthetic_gallery(dim: int, n: int = MATCH_TEMPLATES, per_person: int = MATCH_PER_PERSON,
                      seed: int = 0) -> Any:
    """A gallery of ``n`` random unit templates: search cost depends on its shape, not its faces."""
    rng = np.random.default_rng(seed)
    templates = rng.standard_normal((n, dim)).astype(np.float32)
    templates /= np.linalg.norm(templates, axis=1, keepdims=True)
    return Gallery([f"p{i // per_person:05d}" for i in range(n)], templates)


def _embedder(cfg: Config) -> tuple[Any, str]:
    """The eye embedder, or None and why when no valid model is installed: the other stages still count."""
    try:
        return Embedder(cfg.embed), ""
    except ModelError as e:
        log.info("embed stage left out: %s", e)
        return None, str(e)


def match_stage(n: int) -> str:
    """The match stage's name for a gallery of ``n`` templates: match_10k, match_100k, match_2500."""
    return f"match_{n // 1000}k" if n % 1000 == 0 else f"match_{n}"


@dataclass(frozen=True)
class Bench:
    """The figures of one run: ``rows`` (stage, median ms, p95 ms, samples) in stage order, ``frame``
    last; ``why_not``: why the embed stages were left out ("" when they ran)."""

    clip: str
    size: tuple[int, int]
    templates: int
    why_not: str
    rows: list[tuple[str, float, float, int]]
    frames: int
    fps: float
    rss_mb: float


def measure(cfg: Config, video: Path | None = None, frames: int = 150,
            templates: int = MATCH_TEMPLATES) -> Bench:
    """Time each stage over up to ``frames`` frames of the clip: its figures per stage, fps and RSS.

    ``frame`` is the gate's loop turn (the stages the gate runs on that frame: module docstring); fps
    is 1000 / its median. The match stage searches as the gate does at a decision: the last
    2 x ``match.frames`` embeddings together against a gallery of ``templates`` (5 per person), so its
    figure is the decision's cost.
    """
    if frames < 1:
        raise ConfigError(f"--frames must be at least 1, not {frames}")
    if not 1 <= templates <= MAX_TEMPLATES:
        raise ConfigError(f"--templates must be between 1 and {MAX_TEMPLATES:,}, not {templates}")
    source = ReplaySource(video or demo_clip(), realtime=False)
    match_name = match_stage(templates)
    stages = ["decode", "landmarks", "geometry", "eyecrop", "embed", "facecrop", "face_embed", "mask_check",
              match_name]
    times: dict[str, list[float]] = {name: [] for name in stages}
    total: list[float] = []
    embedding_frames: list[float] = []
    per_approach = 2 * cfg.match.frames   # embeddings the gate takes in one approach
    embedded, next_approach = 0, float("-inf")
    embedder, why_not = _embedder(cfg)
    face_model = fusion.load(cfg.embed) if embedder is not None else None
    lm = landmarks.for_video(cfg.vision)
    dim = embedder.dim if embedder is not None else MATCH_DIM
    gallery = synthetic_gallery(dim, templates)
    probe = np.random.default_rng(1).standard_normal(dim).astype(np.float32)
    recent: deque[np.ndarray] = deque([probe], maxlen=2 * cfg.match.frames)
    size = (0, 0)
    try:
        for _ in range(frames):
            frame, t_dec = timed(source.read)
            if frame is None:
                break
            size = frame.image.shape[1::-1]
            faces, t_lm = timed(lambda: lm.detect(frame.image))
            times["decode"].append(t_dec)
            times["landmarks"].append(t_lm)
            spent = t_dec + t_lm
            if faces:
                L = faces[0].landmarks
                # What the gate reads from the landmarks on every frame: the face event's pose, eye
                # openness and pupil distance, and whether to embed (face_quality is enrolment's).
                (_, worth), ms = timed(lambda: (face_event(frame, faces[0], len(faces)),
                                                worth_embedding(faces[0], cfg.vision)))
                times["geometry"].append(ms)
                spent += ms
                embedding = 0.0   # the eye and whole-face stages on this frame
                crop, t_crop = timed(lambda: eyecrop.eye_crop(frame.image, L))
                times["eyecrop"].append(t_crop)
                embedding += t_crop
                if crop is not None and embedder is not None:
                    probe, ms = timed(lambda: embedder.embed_crop(crop))
                    times["embed"].append(ms)
                    embedding += ms
                    recent.append(probe)
                    if face_model is not None:
                        chip, t_chip = timed(lambda: facecrop.face_crop(frame.image, L))
                        times["facecrop"].append(t_chip)
                        embedding += t_chip
                        if chip is not None:
                            fe, ms = timed(lambda: face_model.embedder.embed_crop(chip))
                            _, ms2 = timed(lambda: face_model.mask.covered(chip, fe))
                            times["face_embed"].append(ms)
                            times["mask_check"].append(ms2)
                            embedding += ms + ms2
                probes = np.stack(recent)
                _, t_match = timed(lambda: gallery.search(probes))
                times[match_name].append(t_match)
                if worth and frame.t >= next_approach:
                    spent += embedding
                    embedded += 1
                    if embedded == per_approach:   # the decision: one search, then the cooldown
                        spent += t_match
                        embedded, next_approach = 0, frame.t + cfg.gate.cooldown_s
                    embedding_frames.append(spent)
            total.append(spent)
    finally:
        source.close()
        lm.close()
    times["frame"] = total
    times["embed_frame"] = embedding_frames
    rows = [(stage, *_stats(ms), len(ms)) for stage, ms in times.items() if ms]
    fps = 1000.0 / _stats(total)[0] if total else 0.0
    return Bench(source.path.name, size, len(gallery), why_not, rows, len(total), fps, rss_mb())
