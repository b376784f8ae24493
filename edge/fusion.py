"""The whole face next to the eye region: mask check, face embedding, fused scores.

Most people at a gate wear no mask, and then the eye region throws away most of what a face shows.
On the frames the gate embeds (not every frame) the face model also cuts dlib's face chip, embeds it
(``edge.embed.FaceEmbedder``) and asks whether the lower face is covered (``edge.vision.mask``).
When the probe's lower face is visible and a template has a face embedding, that template's score is

    fused = eye_weight * eye cosine + face_weight * face cosine + offset

with the coefficients, threshold and tail of ``[face.fusion]`` in ``models/manifest.toml`` (fitted on
LFW fold 5 by ``models/training/eval_face.py``; the fused score is on the eye score's scale: same impostor
mean and spread). Templates without a face embedding, and covered probes, use the eye score shifted
by the difference of the two thresholds, so one threshold judges every template.

For ``maskgate identify``: ``recognise`` gives one photo's decision with ``masked`` and ``used``
("eye" or "face+eye"); ``FaceModel.probe`` alone says whether a face is covered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.calibration import calibrate, calibrate_fused
from edge.config import tomllib
from edge.embed import MANIFEST, FaceEmbedder, models_dir
from edge.errors import ModelError
from edge.match import Gallery, Match
from edge.vision import facecrop
from edge.vision.mask import MaskCheck

log = logging.getLogger(__name__)

EYE, FACE_EYE = "eye", "face+eye"


@dataclass(frozen=True)
class Fusion:
    """The fused score's coefficients and calibration (manifest ``[face.fusion]``)."""

    eye_weight: float
    face_weight: float
    offset: float
    threshold: float
    tail: tuple[tuple[float, float], ...]

    def __call__(self, eye: np.ndarray, face: np.ndarray) -> np.ndarray:
        return self.eye_weight * eye + self.face_weight * face + self.offset


@dataclass(frozen=True)
class FaceProbe:
    """One frame's whole face: its embedding (None: no usable chip) and whether it is covered."""

    embedding: np.ndarray | None
    covered: bool


class FaceModel:
    """The face embedder, the mask check and the fusion rule, all from the installed manifest."""

    def __init__(self, cfg: Any, directory: Path | None = None) -> None:
        self.embedder = FaceEmbedder(cfg, directory)
        where = (directory or models_dir()) / MANIFEST
        try:
            face = tomllib.loads(where.read_text(encoding="utf-8"))["face"]
            f = face["fusion"]
            self.fusion = Fusion(float(f["eye_weight"]), float(f["face_weight"]), float(f["offset"]),
                                 float(f["threshold"]),
                                 tuple(zip(map(float, f["tail_far"]), map(float, f["tail_threshold"]), strict=True)))
            self.mask = MaskCheck.from_manifest(face["mask"], where)
        except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{where} [face.fusion] / [face.mask] is missing or damaged ({e}); "
                             "reinstall maskgate") from None
        self.space = self.embedder.space

    def probe(self, image: np.ndarray, landmarks: np.ndarray) -> FaceProbe:
        """The face chip's embedding and the mask check; a face with no chip counts as covered."""
        chip = facecrop.face_crop(image, landmarks)
        if chip is None:
            return FaceProbe(None, True)
        e = self.embedder.embed_crop(chip)
        return FaceProbe(e, self.mask.covered(chip, e))


def uncovered(probes: list[FaceProbe]) -> bool:
    """The approach shows its lower face: most of its embedded frames judged uncovered (a mask
    pulled down for one frame does not make a masked approach a bare one)."""
    bare = [p for p in probes if not p.covered and p.embedding is not None]
    return bool(probes) and len(bare) * 2 > len(probes)


@dataclass(frozen=True)
class Thresholds:
    """What a score must reach at this site: the eye score's and the fused score's site calibration
    (edge.calibration; ``fused`` None: no face rows, no face model, or a fixed threshold)."""

    eye: Any     # SiteCalibration
    fused: Any   # FusedCalibration | None

    @property
    def eye_threshold(self) -> float:
        return self.eye.threshold

    @property
    def fused_threshold(self) -> float | None:
        return None if self.fused is None else self.fused.threshold


def thresholds(src: tuple[list[str], np.ndarray], face_rows: np.ndarray | None, model: FaceModel | None,
               eye_model: Any, match_cfg: Any) -> Thresholds:
    """The site calibration of both scores for one gallery (``Vault.gallery`` and ``face_gallery``):
    the one rule the gate, ``maskgate identify`` and ``diag vault`` decide with."""
    eye = calibrate(*src, eye_model, match_cfg)
    fused = None
    if model is not None and face_rows is not None and not match_cfg.threshold:
        fused = calibrate_fused(src[0], src[1], face_rows, model.fusion, match_cfg)
    return Thresholds(eye, fused)


def search(gallery: Gallery, eye_rows_src: tuple[list[str], np.ndarray], face_rows: np.ndarray | None,
           eye_probes: np.ndarray, face_probes: list[FaceProbe], model: FaceModel | None,
           limits: Thresholds) -> tuple[Match, float, str]:
    """(the best match, the threshold it must reach, what decided: ``EYE`` or ``FACE_EYE``).

    ``eye_probes`` and ``face_probes[i].embedding`` are already in the vault's keyed spaces
    (``Vault.protect`` / ``Vault.protect_face``); ``face_rows`` is ``Vault.face_gallery``, aligned with
    ``eye_rows_src`` (``Vault.gallery``), from which ``gallery`` was built; ``limits`` is
    :func:`thresholds` of that gallery."""
    eye_thr, fused_thr = limits.eye_threshold, limits.fused_threshold
    if model is None or face_rows is None or fused_thr is None or not uncovered(face_probes):
        return gallery.search(eye_probes), eye_thr, EYE
    fz = model.fusion
    ids, rows = eye_rows_src
    e = np.mean(_unit(np.atleast_2d(eye_probes)), axis=0) @ _unit(rows).T
    f_probe = np.mean([p.embedding for p in face_probes if not p.covered and p.embedding is not None], axis=0)
    has = np.linalg.norm(face_rows, axis=1) > 0.5
    f = _unit(face_rows) @ _unit(f_probe[None])[0]
    # a template without a face embedding is judged on its eye score, moved onto the fused scale
    scores = np.where(has, fz(e, f), e - eye_thr + fused_thr)
    best = int(np.argmax(scores))
    others = [s for i, s in enumerate(scores) if ids[i] != ids[best]]
    return Match(ids[best], float(scores[best]), float(max(others, default=0.0))), fused_thr, FACE_EYE


@dataclass(frozen=True)
class Recognition:
    """What the recogniser decides for one photo: ``masked`` (lower face judged covered, or no face
    model installed), ``used`` (``EYE`` or ``FACE_EYE``), the match and the threshold it must reach."""

    match: Match
    threshold: float
    masked: bool
    used: str

    @property
    def granted(self) -> bool:
        return self.match.person is not None and self.match.score >= self.threshold


def recognise(vault: Any, embedder: Any, model: FaceModel | None, image: np.ndarray, landmarks: np.ndarray,
              match_cfg: Any, limits: Thresholds | None = None) -> Recognition | None:
    """One photo against the vault, as the gate decides (one frame, no liveness); None when the eye
    crop cannot be cut (turned too far, too small). For ``maskgate identify`` and evaluation;
    ``limits``: :func:`thresholds` of the vault, when the caller keeps it across photos."""
    crop = embedder.crop(image, landmarks)
    if crop is None:
        return None
    src = vault.gallery()
    probe = vault.protect(embedder.embed_crop(crop))[None]
    fp = model.probe(image, landmarks) if model is not None else FaceProbe(None, True)
    faces = [FaceProbe(None if fp.embedding is None else vault.protect_face(fp.embedding), fp.covered)]
    rows = vault.face_gallery(model.space) if model is not None else None
    if limits is None:
        limits = thresholds(src, rows, model, embedder, match_cfg)
    m, thr, used = search(Gallery(*src), src, rows, probe, faces, model, limits)
    return Recognition(m, thr, fp.covered, used)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def load(cfg: Any) -> FaceModel | None:
    """The installed face model, or None (eye only) when it cannot be loaded: the gate keeps working
    on the eye region, as every gate did before the face model existed, and says why once."""
    try:
        return FaceModel(cfg)
    except ModelError as e:
        log.warning("whole-face model not used, eye region only: %s", e)
        return None
