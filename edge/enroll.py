"""Enrolment: a few good, diverse templates of one consenting, live person into the vault.

Why the gates: a template made from a blurred, turned, squinting or distant face matches its owner
badly and strangers better, for as long as it stays enrolled. So only frames with exactly one face
that is near enough, frontal, sharp, well lit and with both eyes open become templates, and of
those we keep the few that differ most (one from each source first, so a masked and an unmasked
set both survive when both are offered). From the camera the person must first pass the liveness
challenge, and capture continues only while the same face stays in view. Nothing is enrolled
without a consent record. Frames stay in memory; only embeddings reach the vault.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from edge.camera import frames, open_source
from edge.camera.replay import IMAGE_SUFFIXES, ReplaySource, read_image
from edge.config import Config
from edge.errors import MaskgateError
from edge.vision import geometry
from edge.vision.landmarks import Face, Landmarker

log = logging.getLogger(__name__)

# Quality gates (measured on the demo person, the fixture clips, LFW and GT faces: see tests).
MIN_PUPIL_PX = 40.0        # nearer than the gate's own minimum: a template should be the best view
MAX_ANGLE_DEG = 15.0       # yaw, pitch and roll: frontal enough for the eye crop to be comparable
MIN_EAR = 0.18             # both eyes open (shut is below 0.15)
MIN_SHARPNESS = 6.0        # Laplacian variance of the face; sharp video 12-90, a 2-px blur 3.5
BRIGHTNESS = (40.0, 220.0)
MIN_TEMPLATES = 2          # fewer good frames than this is not an enrolment worth keeping
VIDEO_FRAMES = 150         # a video is sampled down to about this many frames
CAMERA_CAPTURE_S = 8.0     # after liveness passes, how long to collect frames of the same face


class EnrollError(MaskgateError):
    """Enrolment cannot go ahead: no consent, a bad source, or too few good frames."""


def judge_face(image: np.ndarray, faces: list[Face], min_pupil_px: float = MIN_PUPIL_PX) -> str | None:
    """Why this frame cannot give a template (``None``: it can). Checks the one face in it."""
    if not faces:
        return "no face"
    if len(faces) > 1:
        return "more than one face"
    lm = faces[0].landmarks
    q = geometry.face_quality(image, lm)
    if q.pupil_distance < min_pupil_px:
        return "too far"
    pose = geometry.head_pose(lm)
    if max(abs(pose.yaw), abs(pose.pitch), abs(pose.roll)) > MAX_ANGLE_DEG:
        return "not frontal"
    if min(geometry.ears(lm)) < MIN_EAR:
        return "eyes closed"
    if not BRIGHTNESS[0] <= q.brightness <= BRIGHTNESS[1]:  # before sharpness: the dark look flat
        return "too dark" if q.brightness < BRIGHTNESS[0] else "too bright"
    if q.sharpness < MIN_SHARPNESS:
        return "blurred"
    return None


@dataclass
class SourceReport:
    """What one source gave: frames looked at, good ones, and why the others were refused."""

    source: str
    frames: int = 0
    good: int = 0
    refused: Counter = field(default_factory=Counter)


@dataclass
class Candidate:
    source: int
    embedding: np.ndarray
    sharpness: float


def choose_diverse(cands: list[Candidate], k: int) -> list[Candidate]:
    """Up to ``k`` templates: the sharpest of each source first, then each time the candidate least
    like those already chosen (farthest-point), so the set covers the person's variation."""
    if not cands:
        return []
    chosen: list[Candidate] = []
    for s in sorted({c.source for c in cands}):
        if len(chosen) < k:
            chosen.append(max((c for c in cands if c.source == s), key=lambda c: c.sharpness))
    rest = [c for c in cands if all(c is not d for d in chosen)]
    while rest and len(chosen) < k:
        sel = np.stack([c.embedding for c in chosen])
        nearest = [float(np.max(sel @ c.embedding)) for c in rest]
        chosen.append(rest.pop(int(np.argmin(nearest))))
    return chosen


def _parse_expiry(text: str | None) -> float | None:
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise EnrollError(f"--expires {text!r} is not a date like 2026-12-31") from None
    if day < dt.date.today():
        raise EnrollError(f"--expires {text} is in the past")
    # Access lasts through that whole day (local time).
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time()).timestamp()


def _image_frames(paths: list[Path]) -> Iterator[np.ndarray]:
    for p in paths:
        yield read_image(p)


def _video_frames(path: Path) -> Iterator[np.ndarray]:
    src = ReplaySource(path, realtime=False)
    stride = max(1, -(-src.frame_count // VIDEO_FRAMES))  # ceil: at most VIDEO_FRAMES frames
    for frame in frames(src):
        if frame.index % stride == 0:
            yield frame.image


def _classify(source: str) -> tuple[str, list[Path]]:
    """('camera'|'images'|'video', paths) for one ``--from`` value, or ``EnrollError``."""
    if source == "camera":
        return "camera", []
    p = Path(source)
    if not p.exists():
        raise EnrollError(f"{source}: no such file or folder (give camera, a video, an image folder or images)")
    if p.is_dir():
        images = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise EnrollError(f"{source}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return "images", images
    return ("images" if p.suffix.lower() in IMAGE_SUFFIXES else "video"), [p]


def _live_camera_frames(cfg: Config, out: Any) -> Iterator[np.ndarray]:
    """Frames of a person who first passed the liveness challenge, while their face stays in view."""
    try:
        from edge import liveness
    except ImportError:
        raise EnrollError("enrolling from the camera needs the liveness check (edge/liveness.py), "
                          "which this build lacks; enrol from a supervised video or images") from None
    steps = liveness.draw_sequence(cfg.liveness, random.SystemRandom(), None)
    session = liveness.ChallengeSession(steps, cfg.liveness, liveness.make_prompter(cfg, out))
    it = frames(open_source(cfg.camera))
    try:
        with Landmarker(cfg.vision.max_faces, min_detection_confidence=cfg.vision.min_detection_confidence,
                        min_tracking_confidence=cfg.vision.min_tracking_confidence) as lm:
            verdict, last = None, None
            for frame in it:
                faces = lm.detect(frame.image)
                last = faces[0] if faces else last
                verdict = session.update(frame, faces)
                if verdict is not None:
                    break
            if verdict is None or not verdict.passed:
                raise _LivenessFailed(verdict.reason if verdict else "the camera stopped")
            out.text("liveness passed; hold still and look at the camera")
            start = None
            for frame in it:
                start = frame.t if start is None else start
                faces = lm.detect(frame.image)
                if not faces or frame.t - start > CAMERA_CAPTURE_S or (
                        last is not None and np.hypot(faces[0].center[0] - last.center[0],
                                                      faces[0].center[1] - last.center[1])
                        > 0.5 * (last.box[2] - last.box[0])):
                    break  # the person left or someone else stepped in: never enrol whoever comes next
                last = faces[0]
                yield frame.image
    finally:
        it.close()


class _LivenessFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def collect(sources: list[str], cfg: Config, embedder: Any, out: Any) -> tuple[list[Candidate], list[SourceReport]]:
    """Embeddings of every good frame of every source, with a report per source."""
    cands: list[Candidate] = []
    reports: list[SourceReport] = []
    groups: dict[str, int] = {}
    for source in sources:
        kind, paths = _classify(source)
        # Image files named one by one are one set; each video, folder or camera run is its own.
        i = groups.setdefault("files" if kind == "images" and not Path(source).is_dir() else source,
                              len(groups))
        rep = SourceReport(source)
        reports.append(rep)
        if kind == "camera":
            images: Iterable[np.ndarray] = _live_camera_frames(cfg, out)
        elif kind == "video":
            images = _video_frames(paths[0])
        else:
            images = _image_frames(paths)
        min_px = max(MIN_PUPIL_PX, cfg.vision.min_pupil_distance_px)
        with Landmarker(2, static=(kind == "images"),
                        min_detection_confidence=cfg.vision.min_detection_confidence) as lm:
            for image in images:
                rep.frames += 1
                faces = lm.detect(image)
                why = judge_face(image, faces, min_px)
                vec = None
                if why is None:
                    vec = embedder.embed_face(image, faces[0])
                    why = "no eye crop" if vec is None else None
                if why is not None:
                    rep.refused[why] += 1
                    continue
                rep.good += 1
                v = np.asarray(vec, dtype=np.float32).ravel()
                cands.append(Candidate(i, v / max(float(np.linalg.norm(v)), 1e-12),
                                       geometry.face_quality(image, faces[0].landmarks).sharpness))
        refused = ", ".join(f"{n} {why}" for why, n in rep.refused.most_common()) or "none"
        out.text(f"{source}: {rep.frames} frames, {rep.good} good (refused: {refused})")
    return cands, reports


def enroll_cli(name: str, sources: list[str], consent: str, cfg: Config, state: Path, out: Any,
               operator: str = "", expires: str | None = None, embedder: Any = None,
               card: str | None = None, pin: bool = False) -> int:
    """``maskgate enroll NAME --from SOURCE... --consent TEXT [--card N] [--pin]``: 0 enrolled,
    1 liveness failed, 2 bad input."""
    if not consent or not consent.strip():
        raise EnrollError("no consent given: --consent must hold the person's consent text or the "
                          "reference of their signed form; nobody is enrolled without it")
    name = name.strip()
    if not name or len(name) > 200 or not name.isprintable():
        raise EnrollError("the name must be 1-200 printable characters")
    until = _parse_expiry(expires)
    for s in sources:
        _classify(s)  # a missing file fails now, before the camera or the model start
    from edge.vault import Vault

    vault = Vault.open(state, cfg.vault)
    if any(p.name == name for p in vault.people()):
        raise EnrollError(f"{name!r} is already enrolled; remove them first (maskgate templates remove) "
                          "or choose another name")
    card, pin_record = _credentials(vault, name, card, pin)  # before the camera: fail fast, ask once
    if embedder is None:
        from edge.embed import Embedder

        embedder = Embedder(cfg.embed)
    stale = vault.stale_for(embedder.space)
    if stale:  # before the challenge: these templates could never be enrolled beside them
        raise EnrollError(stale)
    try:
        cands, reports = collect(sources, cfg, embedder, out)
    except _LivenessFailed as e:
        out.event({"enrolled": False, "name": name, "reason": f"liveness failed: {e.reason}"},
                  f"not enrolled: liveness failed ({e.reason})")
        return 1
    if len(cands) < MIN_TEMPLATES:
        raise EnrollError(f"only {len(cands)} good frame(s) of {name!r} (need {MIN_TEMPLATES}): one face, "
                          f"near, frontal, sharp, eyes open; give more or better images or video")
    chosen = choose_diverse(cands, cfg.vault.max_templates)
    pid = vault.add(name, [c.embedding for c in chosen], consent, operator, until, space=embedder.space,
                    card=card, pin=pin_record)
    from edge.audit import record

    record(state, cfg.audit, "vault.enroll", person=pid, name=name, templates=len(chosen),
           operator=operator, expires=expires, card=card, pin=pin_record is not None)
    alike = look_alike(vault, pid, [c.embedding for c in chosen], cfg, embedder)
    out.event({"enrolled": True, "person": pid, "name": name, "templates": len(chosen),
               "good_frames": len(cands), "frames": sum(r.frames for r in reports), "look_alike": alike},
              f"enrolled {name} as {pid}: {len(chosen)} templates from {len(cands)} good frames")
    if alike:
        out.text(f"warning: {name} resembles {alike['name']} to this model ({alike['score']:.2f}, the gate's "
                 f"threshold is {alike['threshold']:.2f}): either may be let in as the other. If they are one "
                 "person under two names, remove one (maskgate templates remove)")
    return 0


def _credentials(vault: Any, name: str, card: str | None, pin: bool) -> tuple[str | None, str | None]:
    """``--card`` checked (a number, nobody else's) and ``--pin`` asked twice and hashed."""
    from edge.claim.admin import ask_pin
    from edge.claim.credentials import normalise_card

    if card is not None:
        card = normalise_card(card)
        holder = vault.card_holder(card)
        if holder is not None:
            raise EnrollError(f"card {card} is already {holder.name or holder.id}'s "
                              "(maskgate templates clear-card first)")
    return card, (vault.pin_record(ask_pin(name)) if pin else None)


def look_alike(vault: Any, pid: str, embeddings: list[np.ndarray], cfg: Config, embedder: Any) -> dict | None:
    """The enrolled person whom the new one most resembles, when their closest templates reach the
    gate's threshold: the same person enrolled twice, or relatives the model cannot tell apart."""
    from edge.match import Gallery, gate_threshold

    ids, rows = vault.gallery()
    keep = [i for i, p in enumerate(ids) if p != pid]
    if not keep:
        return None
    others = Gallery([ids[i] for i in keep], rows[keep])
    best = others.person_scores(vault.protect(np.stack(embeddings))).max(axis=0)
    k = int(np.argmax(best))
    t, _ = gate_threshold(len(others.people) + 1, embedder, cfg.match)
    if best[k] < t:
        return None
    return {"name": vault.name_of(others.people[k]), "score": round(float(best[k]), 3), "threshold": round(t, 3)}
