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
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from edge import fusion, liveness
from edge.access import person_rules
from edge.audit import record
from edge.calibration import calibrate
from edge.camera import frames, open_source
from edge.camera.replay import (
    IMAGE_SUFFIXES,
    ReplaySource,
    check_image_file,
    read_image,
)
from edge.claim.admin import ask_pin
from edge.claim.credentials import normalise_card
from edge.config import Config
from edge.embed import Embedder
from edge.errors import MaskgateError
from edge.match import Gallery
from edge.vault import ID_RE, Vault
from edge.vision import geometry, landmarks
from edge.vision.landmarks import Face, detect_padded

log = logging.getLogger(__name__)

# Quality gates (measured on the demo person, the fixture clips, LFW and GT faces: see tests).
MIN_PUPIL_PX = 40.0        # nearer than the gate's own minimum: a template should be the best view
MAX_ANGLE_DEG = 15.0       # yaw and roll: frontal enough for the eye crop to be comparable
# Pitch, read by geometry.upper_face_pose (right on tight crops and passport photos too). On
# realmask_dev bare photos the same person's eye embeddings agree as well at 15-20 degrees as at 0-10
# (mean genuine cosine 0.60 either way), and less beyond 20; Georgia Tech's mostly level faces agree.
MAX_PITCH_DEG = 20.0
MIN_SHARPNESS = 6.0        # Laplacian variance of the face; sharp video 12-90, a 2-px blur 3.5
BRIGHTNESS = (40.0, 220.0)
MIN_TEMPLATES = 2          # fewer good frames than this is not an enrolment worth keeping
VIDEO_FRAMES = 150         # a video is sampled down to about this many frames
CAMERA_CAPTURE_S = 8.0     # after liveness passes, how long to collect frames of the same face


MAX_EXPIRY_YEARS = 100     # --expires further ahead than this is a typo (and 9999 overflows)


class EnrollError(MaskgateError):
    """Enrolment cannot go ahead: no consent, a bad source, or too few good frames."""


Say = Callable[[str], None]   # where progress lines go (the prompts, a line per source): a person is waiting


def _quiet(line: str) -> None:
    """Progress nobody is watching (evaluation, tests)."""


@dataclass(frozen=True)
class Enrolled:
    """What one enrolment did. ``person`` is None when nobody was enrolled because the liveness
    challenge failed (``reason``); every other refusal is an ``EnrollError``. ``site``: the site
    calibration's summary when, with this person enrolled, the face alone no longer keeps strangers
    out at ``[match] stranger_rate`` (the gate then needs claim mode)."""

    name: str
    person: str | None
    templates: int = 0
    good_frames: int = 0
    frames: int = 0
    look_alike: dict | None = None
    site: str | None = None
    reason: str = ""


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
    pose = geometry.upper_face_pose(lm)
    if max(abs(pose.yaw), abs(pose.roll)) > MAX_ANGLE_DEG or abs(pose.pitch) > MAX_PITCH_DEG:
        return "not frontal"
    if not geometry.eyes_open(lm):
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
    face: np.ndarray | None = None   # the whole-face embedding (None: no face model, or lower face covered)


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
    if day > dt.date.today() + dt.timedelta(days=366 * MAX_EXPIRY_YEARS):
        raise EnrollError(f"--expires {text} is more than {MAX_EXPIRY_YEARS} years ahead; leave it out "
                          f"for access without an end")
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
        for q in images:
            check_image_file(q)  # too large or not a file: said now, before the model loads
        return "images", images
    if not p.is_file():
        raise EnrollError(f"{source}: not a regular file or folder (a FIFO, device or socket)")
    if p.suffix.lower() in IMAGE_SUFFIXES:
        check_image_file(p)
        return "images", [p]
    return "video", [p]


def _live_camera_frames(cfg: Config, say: Say) -> Iterator[np.ndarray]:
    """Frames of a person who first passed the liveness challenge, while their face stays in view."""
    steps = liveness.draw_sequence(cfg.liveness, random.SystemRandom(), None)
    session = liveness.ChallengeSession(steps, cfg.liveness, liveness.make_prompter(cfg, say))
    it = frames(open_source(cfg.camera))
    try:
        with landmarks.for_video(cfg.vision) as lm:
            verdict, last = None, None
            for frame in it:
                faces = lm.detect(frame.image)
                last = faces[0] if faces else last
                verdict = session.update(frame, faces)
                if verdict is not None:
                    break
            if verdict is None or not verdict.passed:
                raise _LivenessFailed(verdict.reason if verdict else "the camera stopped")
            say("liveness passed; hold still and look at the camera")
            start = None
            for frame in it:
                start = frame.t if start is None else start
                faces = lm.detect(frame.image)
                if not faces or frame.t - start > CAMERA_CAPTURE_S or (
                        last is not None and liveness.jumped(last, faces[0]) is not None):
                    break  # the person left or someone else stepped in: never enrol whoever comes next
                last = faces[0]
                yield frame.image
    finally:
        it.close()


class _LivenessFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def collect(sources: list[str], cfg: Config, embedder: Any, say: Say = _quiet, face_model: Any = None
            ) -> tuple[list[Candidate], list[SourceReport]]:
    """Embeddings of every good frame of every source, with a report per source (and the whole-face
    embedding of each, when ``face_model`` is given and the lower face is not covered); ``say``
    hears the liveness prompts and a line per source."""
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
            images: Iterable[np.ndarray] = _live_camera_frames(cfg, say)
        elif kind == "video":
            images = _video_frames(paths[0])
        else:
            images = _image_frames(paths)
        min_px = max(MIN_PUPIL_PX, cfg.vision.min_pupil_distance_px)
        # Two faces at most: enough to refuse a frame with a second person in it (judge_face).
        with (landmarks.for_images if kind == "images" else landmarks.for_video)(cfg.vision, max_faces=2) as lm:
            for image in images:
                rep.frames += 1
                if kind == "images":  # a passport photo or tight crop: retried with a border
                    image, faces = detect_padded(lm, image)
                else:
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
                fp = face_model.probe(image, faces[0].landmarks) if face_model is not None else None
                cands.append(Candidate(i, v / max(float(np.linalg.norm(v)), 1e-12),
                                       geometry.face_quality(image, faces[0].landmarks).sharpness,
                                       None if fp is None or fp.covered else fp.embedding))
        refused = ", ".join(f"{n} {why}" for why, n in rep.refused.most_common()) or "none"
        say(f"{source}: {rep.frames} frames, {rep.good} good (refused: {refused})")
    return cands, reports


def enroll(name: str, sources: list[str], consent: str, cfg: Config, state: Path, say: Say = _quiet,
           operator: str = "", expires: str | None = None, embedder: Any = None,
           card: str | None = None, pin: bool = False, allow_look_alike: bool = False,
           groups: list[str] | None = None, valid_from: str | None = None,
           valid_until: str | None = None) -> Enrolled:
    """Enrol ``name`` from ``sources`` (camera, a video, an image folder or files) with their consent,
    card, PIN, groups and pass, into the vault of ``state``, and audit it. ``EnrollError`` (exit 2)
    for bad input or too few good frames; a failed liveness challenge is a result (nobody enrolled)."""
    if not consent or not consent.strip():
        raise EnrollError("no consent given: --consent must hold the person's consent text or the "
                          "reference of their signed form; nobody is enrolled without it")
    name = name.strip()
    if not name or len(name) > 200 or not name.isprintable():
        raise EnrollError("the name must be 1-200 printable characters")
    if ID_RE.fullmatch(name):  # `templates remove NAME` would find another person by this id
        raise EnrollError(f"the name {name!r} looks like a person id (p- and 16 hex digits); choose another")
    if len(operator) > 200 or not operator.isprintable():
        raise EnrollError("--operator must be at most 200 printable characters (no control characters)")
    until = _parse_expiry(expires)
    rules = person_rules(cfg.access, groups, valid_from, valid_until)  # a bad group or pass fails now
    for s in sources:
        _classify(s)  # a missing file fails now, before the camera or the model start
    vault = Vault.open(state, cfg.vault)
    if any(p.name == name for p in vault.people()):
        raise EnrollError(f"{name!r} is already enrolled; remove them first (maskgate templates remove) "
                          "or choose another name")
    card, pin_record = _credentials(vault, name, card, pin)  # before the camera: fail fast, ask once
    if embedder is None:
        embedder = Embedder(cfg.embed)
    stale = vault.stale_for(embedder.space)
    if stale:  # before the challenge: these templates could never be enrolled beside them
        raise EnrollError(stale)
    face_model = fusion.load(cfg.embed)
    try:
        cands, reports = collect(sources, cfg, embedder, say, face_model)
    except _LivenessFailed as e:
        return Enrolled(name, None, reason=e.reason)
    if len(cands) < MIN_TEMPLATES:
        raise EnrollError(f"only {len(cands)} good frame(s) of {name!r} (need {MIN_TEMPLATES}): one face, "
                          f"near, frontal, sharp, eyes open; give more or better images or video")
    chosen = choose_diverse(cands, cfg.vault.max_templates)
    alike = look_alike(vault, "", [c.embedding for c in chosen], cfg, embedder)
    if alike and not allow_look_alike:
        raise EnrollError(f"not enrolled: {name} matches {alike['name']} at the gate's threshold ({alike['score']:.2f} "
                          f">= {alike['threshold']:.2f}), so either could be let in as the other. The same person: "
                          f"add templates to them (maskgate templates add {alike['name']!r} --from ...); twins or "
                          "relatives the model cannot tell apart: enrol again with --allow-look-alike")
    pid = vault.add(name, [c.embedding for c in chosen], consent, operator, until, space=embedder.space,
                    card=card, pin=pin_record,
                    faces=[c.face for c in chosen] if face_model is not None else None,
                    face_space=face_model.space if face_model is not None else "", **rules)
    record(state, cfg.audit, "vault.enroll", person=pid, name=name, templates=len(chosen),
           operator=operator, expires=expires, card=card, pin=pin_record is not None,
           groups=list(rules["groups"]) or None, valid_from=rules["valid_from"], valid_until=rules["valid_until"],
           **({"look_alike": alike["name"]} if alike else {}))
    return Enrolled(name, pid, len(chosen), len(cands), sum(r.frames for r in reports), alike,
                    site_check(vault, cfg, embedder))


def _credentials(vault: Any, name: str, card: str | None, pin: bool) -> tuple[str | None, str | None]:
    """``--card`` checked (a number, nobody else's) and ``--pin`` asked twice and hashed."""
    if card is not None:
        card = normalise_card(card)
        holder = vault.card_holder(card)
        if holder is not None:
            raise EnrollError(f"card {card} is already {holder.name or holder.id}'s "
                              "(maskgate templates clear-card first)")
    return card, (vault.pin_record(ask_pin(name)) if pin else None)


def look_alike(vault: Any, pid: str, embeddings: list[np.ndarray], cfg: Config, embedder: Any) -> dict | None:
    """The enrolled person whom the new one most resembles, when their closest templates reach the
    gate's threshold: the same person enrolled twice, or relatives the model cannot tell apart.
    The gate's threshold is its site calibration (edge.calibration) of the people enrolled now: on a
    population the model separates poorly, the model's own calibration would call most newcomers
    someone's look-alike, while the gate itself lets none of them in as another."""
    ids, rows = vault.gallery()
    keep = [i for i, p in enumerate(ids) if p != pid]
    if not keep:
        return None
    others = Gallery([ids[i] for i in keep], rows[keep])
    best = others.person_scores(vault.protect(np.stack(embeddings))).max(axis=0)
    k = int(np.argmax(best))
    t = calibrate(ids, rows, embedder, cfg.match).threshold
    if best[k] < t:
        return None
    return {"name": vault.name_of(others.people[k]), "score": round(float(best[k]), 3), "threshold": round(t, 3)}


def site_check(vault: Any, cfg: Config, embedder: Any) -> str | None:
    """The site calibration's summary when the model can no longer separate the site's people at
    ``[match] stranger_rate`` (edge.calibration): the gate then needs claim mode. None when it can."""
    ids, rows = vault.gallery()
    if not ids:
        return None
    cal = calibrate(ids, rows, embedder, cfg.match)
    return None if cal.separates else cal.summary()


@dataclass(frozen=True)
class Added:
    """What ``add_templates`` did: ``added`` templates (0 when the liveness challenge failed, with
    ``reason``), the person's ``templates`` now, and ``own_score``, how close the new frames come to
    their earlier templates."""

    person: str
    name: str
    added: int = 0
    templates: int = 0
    good_frames: int = 0
    own_score: float = 0.0
    reason: str = ""


def add_templates(person: str, sources: list[str], cfg: Config, state: Path, say: Say = _quiet,
                  embedder: Any = None, allow_look_alike: bool = False) -> Added:
    """More templates (a mask, glasses, a new haircut) for someone enrolled (id or name), through the
    same quality gates; ``EnrollError`` when no frame is good or the frames match someone else better."""
    for s in sources:
        _classify(s)
    vault = Vault.open(state, cfg.vault)
    p = vault.find(person)
    if embedder is None:
        embedder = Embedder(cfg.embed)
    stale = vault.stale_for(embedder.space)
    if stale:
        raise EnrollError(stale)
    try:
        cands, _ = collect(sources, cfg, embedder, say)
    except _LivenessFailed as e:
        return Added(p.id, p.name, reason=e.reason)
    if not cands:
        raise EnrollError(f"no good frame of {p.name or p.id}: one face, near, frontal, sharp, eyes open")
    chosen = choose_diverse(cands, cfg.vault.max_templates)
    vecs = [c.embedding for c in chosen]
    alike = look_alike(vault, p.id, vecs, cfg, embedder)
    own = _own_score(vault, p.id, vecs)
    if alike and alike["score"] > own and not allow_look_alike:
        raise EnrollError(f"nothing added: these frames match {alike['name']} ({alike['score']:.2f}) better than "
                          f"{p.name or p.id} ({own:.2f}) at the gate's threshold {alike['threshold']:.2f}: is it "
                          "the right person? (--allow-look-alike to add them anyway)")
    after = vault.add_templates(p.id, vecs, space=embedder.space)
    record(state, cfg.audit, "vault.add_templates", person=p.id, name=p.name, templates=len(vecs),
           total=after.templates)
    return Added(p.id, p.name, len(vecs), after.templates, len(cands), own)


def _own_score(vault: Any, pid: str, embeddings: list[np.ndarray]) -> float:
    """How close the new frames come to the person's own earlier templates (best pair)."""
    ids, rows = vault.gallery()
    mine = rows[[i for i, q in enumerate(ids) if q == pid]]
    if not len(mine):
        return 0.0
    return float(np.max(vault.protect(np.stack(embeddings)) @ mine.T))
