"""Site calibration: how often a stranger would pass this gate, estimated from the people it serves.

The model's own calibration (``models/manifest.toml``'s tail, ``edge.match.threshold_for``) was
measured on LFW. On another population it can be far off: on real masked faces of the population the
gate is built for (``realmask_dev``, 60 people enrolled) the model's threshold let 54 % of strangers'
masked photos and 84 % of their bare photos in. The enrolled people of one gate are themselves a
sample of that population and that camera: the scores between *different* enrolled people's
templates show how alike strangers look to this model here.

The estimate. For each template of each enrolled person, its best score against each *other* person
(the best of that person's templates, as ``Gallery.search`` scores them) is one impostor sample. Their
mean and standard deviation give a normal model of the score a stranger reaches against one enrolled
person; the site threshold is the score that this model says a stranger exceeds against any of the N
people at most ``[match] stranger_rate`` of the time (each person at most rate/N, the union bound),
raised by a one-sided tolerance margin (about 90 % confidence) for having seen only N(N-1) pairs
of people. The decision threshold is the stricter of that and the model's calibration; the model's
is taken over the number of *templates* (a stranger gets one chance per template), not of people.

Why this estimator (models/training/eval_identify.py; realmask_dev, Georgia Tech, LFW; 8 random sites of
each size): a normal fit held the stranger rate where fitting the top 2-20 % of scores with an
exponential tail (peaks over threshold) either let 7-34 % in at 5-10 people or shut everyone out;
centring on the site's mean template, T-norm and a margin over the runner-up did not raise the
right-person rate at a fixed stranger rate beyond noise (centring: Georgia Tech +4 points, LFW 0).
Fewer than ``MIN_PEOPLE`` people enrolled: no estimate, the model's calibration alone, and the
summary says so.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from edge.match import Gallery, gate_threshold

log = logging.getLogger(__name__)

MIN_PEOPLE = 3            # fewer: too few pairs to estimate; the model's calibration alone
CONFIDENCE_Z = 1.28       # one-sided tolerance margin for N(N-1) sampled pairs: about 90 %
# Below this estimated share of enrolled people let in at the first try, the face alone does not
# separate this site's people at the asked rate: use claim mode. The estimate is low-biased (it
# compares templates chosen to differ from each other): Georgia Tech, 25 people at 1 %: 32 % estimated,
# 66 % measured on their other photos.
MIN_FIRST_TRY = 0.2
MAX_PEOPLE_SAMPLED = 300  # a bigger site is estimated from this many people (chosen deterministically)
CLAIM_HINT = ('use claim mode: [match] mode = "claim" (a card or PIN names the person; the face is '
              'then compared with that person only), or accept a higher [match] stranger_rate knowingly')
_NORMAL = NormalDist()


@dataclass(frozen=True)
class SiteCalibration:
    """The decision threshold for one vault and what it is expected to do."""

    people: int
    templates: int
    threshold: float              # identify (1:N): what a fused score must reach
    one_person: float             # claim (1:1): the same rule for one person
    model_threshold: float        # the model's calibration alone, for ``people``
    model_reached: bool           # False: the model's calibration does not reach the asked rate
    site_threshold: float | None  # the site estimate; None: too few people, or a fixed threshold
    strangers: float | None       # estimated share of strangers let in at ``threshold``
    first_try: float | None       # estimated share of enrolled people let in as themselves, first try
    rate: float                   # the asked [match] stranger_rate
    fixed: bool = False           # [match] threshold set by the installer: no calibration applies

    @property
    def estimated(self) -> bool:
        return self.site_threshold is not None

    @property
    def separates(self) -> bool:
        """Whether the face alone can serve this site at the asked rate (always True when too few
        people to tell, or when the installer fixed the threshold)."""
        if self.fixed or not self.estimated:
            return True
        return self.threshold < 1.0 and (self.first_try is None or self.first_try >= MIN_FIRST_TRY)

    def summary(self) -> str:
        """One line for a technician (diag vault, enrolment)."""
        if self.fixed:
            return f"decision threshold {self.threshold:.3f} fixed by [match] threshold (no calibration)"
        if not self.estimated:
            return (f"decision threshold {self.threshold:.3f}: too few people enrolled to estimate this "
                    f"site's stranger rate (fewer than {MIN_PEOPLE}); the model's calibration (LFW) is used")
        line = (f"strangers admitted about {_pct(self.strangers)}, enrolled people about "
                f"{_pct(self.first_try)} on the first try, at {self.people} people "
                f"(decision threshold {min(self.threshold, 1.0):.3f}")
        return line + (", which no face reaches)" if self.threshold >= 1.0 else ")")


def _pct(x: float | None) -> str:
    if x is None:
        return "?"
    return f"{100 * x:.1f} %" if x >= 0.001 else f"{100 * x:.2f} %"


def _tolerance_k(tail: float, pairs: int) -> float:
    """Normal quantile for a ``tail`` share raised for a mean and deviation estimated from ``pairs``."""
    zp = _NORMAL.inv_cdf(1.0 - tail)
    return zp + CONFIDENCE_Z * math.sqrt(1.0 / pairs + zp * zp / (2.0 * pairs))


def _sample_people(people: list[str]) -> list[str]:
    if len(people) <= MAX_PEOPLE_SAMPLED:
        return people
    step = len(people) / MAX_PEOPLE_SAMPLED
    return [people[int(i * step)] for i in range(MAX_PEOPLE_SAMPLED)]


def impostor_and_genuine(ids: list[str], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(impostor samples, genuine score, best other score) from the vault's templates.

    Impostor: each template against each other person's best template. Genuine (per template of a
    person with two or more): its best against that person's *other* templates, beside its best
    against anyone else, for the share of enrolled people let in as themselves.
    """
    rows = np.asarray(rows, np.float32)
    rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    keep = set(_sample_people(sorted(set(ids))))
    idx = np.array([i for i, p in enumerate(ids) if p in keep], dtype=np.intp)
    sub_ids = [ids[i] for i in idx]
    sub = Gallery(sub_ids, rows[idx])
    col = {p: j for j, p in enumerate(sub.people)}
    own: dict[str, list[int]] = {}
    for i in idx:
        own.setdefault(ids[i], []).append(int(i))
    imp: list[np.ndarray] = []
    gen: list[float] = []
    other: list[float] = []
    for start in range(0, len(idx), 512):
        chunk = idx[start:start + 512]
        scores = sub.person_scores(rows[chunk])
        for r, i in enumerate(chunk):
            rest = np.delete(scores[r], col[ids[i]])
            imp.append(rest)
            mine = [k for k in own[ids[i]] if k != i]
            if mine:
                gen.append(float((rows[mine] @ rows[i]).max()))
                other.append(float(rest.max()) if rest.size else -1.0)
    return (np.concatenate(imp) if imp else np.zeros(0)), np.asarray(gen), np.asarray(other)


def calibrate(ids: list[str], rows: np.ndarray, model: Any, cfg: Any) -> SiteCalibration:
    """The site calibration of one vault's gallery (``Vault.gallery()``: ids and protected rows; the
    keyed transform keeps cosines) for a model (``threshold``, ``tail``) and the ``[match]`` config."""
    rows = np.asarray(rows, np.float32)
    people = len(set(ids))
    templates = len(ids)
    rate = float(cfg.stranger_rate)
    per_person = templates / people if people else 1.0
    model_t, reached = gate_threshold(max(1, templates), model, cfg)
    model_one, _ = gate_threshold(max(1, round(per_person)), model, cfg)
    if cfg.threshold:
        return SiteCalibration(people, templates, model_t, model_one, model_t, True, None, None, None, rate,
                               fixed=True)
    if people < MIN_PEOPLE:
        return SiteCalibration(people, templates, model_t, model_one, model_t, reached, None, None, None, rate)
    imp, gen, other = impostor_and_genuine(ids, rows)
    mu, sd = float(imp.mean()), max(float(imp.std()), 1e-6)
    sampled = min(people, MAX_PEOPLE_SAMPLED)
    pairs = sampled * (sampled - 1)
    site_t = mu + _tolerance_k(rate / people, pairs) * sd
    site_one = mu + _tolerance_k(rate, pairs) * sd
    t = max(model_t, site_t)
    p = 1.0 - _NORMAL.cdf((t - mu) / sd)
    strangers = 1.0 - (1.0 - p) ** people
    first = float(np.mean((gen >= t) & (gen > other))) if gen.size else None
    cal = SiteCalibration(people, templates, t, max(model_one, site_one), model_t, reached, site_t,
                          strangers, first, rate)
    log.debug("site calibration: impostor mean %.3f sd %.3f over %d samples; %s", mu, sd, imp.size, cal.summary())
    return cal


def one_person_threshold(ids: list[str], rows: np.ndarray, model: Any, cfg: Any) -> float:
    """The threshold for comparing a face with one claimed person (claim mode): the site calibration's
    rule with N = 1, i.e. a stranger presenting someone's card passes at most ``stranger_rate``."""
    return calibrate(ids, rows, model, cfg).one_person


@dataclass(frozen=True)
class FusedCalibration:
    """The site calibration of the fused (eye + whole face) score, made in a space where it is a
    cosine: with unit eye rows e and face rows f and the fusion's weights a, b > 0 and offset c,
    [sqrt(a) e, sqrt(b) f] / sqrt(a + b) are unit rows whose cosine is (fused - c) / (a + b). The
    same estimator as the eye score's then applies unchanged; ``threshold`` is mapped back."""

    cal: SiteCalibration   # in the cosine space (its summary speaks of that space)
    scale: float           # a + b
    offset: float          # c

    @property
    def threshold(self) -> float:
        """What a fused score must reach (the fusion's own units)."""
        return self.cal.threshold * self.scale + self.offset

    def summary(self) -> str:
        """One line for a technician, as :meth:`SiteCalibration.summary` but with the threshold a fused
        score must reach (the shares it estimates do not depend on the space)."""
        c = self.cal
        if not c.estimated:
            return (f"fused threshold {self.threshold:.3f}: too few people with a face template to estimate "
                    f"this site's stranger rate (fewer than {MIN_PEOPLE}); the fusion's calibration (LFW) is used")
        line = (f"strangers admitted about {_pct(c.strangers)}, enrolled people about {_pct(c.first_try)} "
                f"on the first try, at {c.people} people (fused threshold {self.threshold:.3f}")
        return line + (", which no face reaches)" if c.threshold >= 1.0 else ")")


def calibrate_fused(ids: list[str], eye_rows: np.ndarray, face_rows: np.ndarray | None, fusion: Any,
                    cfg: Any) -> FusedCalibration | None:
    """The site calibration of the fused score over the templates that have a face embedding (a
    zero face row: none), with the fusion's own calibration (``threshold``, ``tail``) as the model's.
    None when there is no face row or the fusion is not a positive weighting of the two cosines."""
    a, b, c = float(fusion.eye_weight), float(fusion.face_weight), float(fusion.offset)
    if face_rows is None or a <= 0 or b <= 0:
        return None
    has = np.linalg.norm(face_rows, axis=1) > 0.5
    if not has.any():
        return None

    def unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    rows = np.hstack([math.sqrt(a) * unit(eye_rows[has]), math.sqrt(b) * unit(face_rows[has])])
    rows /= math.sqrt(a + b)
    scale = a + b

    class _Model:  # the fusion's calibration, moved into the cosine space
        threshold = (float(fusion.threshold) - c) / scale
        tail = tuple((f, (t - c) / scale) for f, t in fusion.tail)

    sub = [p for p, h in zip(ids, has) if h]
    return FusedCalibration(calibrate(sub, rows, _Model, cfg), scale, c)
