"""1:N cosine search over the vault's templates, multi-frame score fusion, the decision threshold.

Templates and probes are L2-normalised, so cosine similarity is one matrix-vector product. A person
may have several templates (masked, unmasked, glasses); their score is the best of them. Over several
frames of one approach, each template's scores are averaged, so one lucky frame cannot open the door
and one blurred frame cannot keep it shut.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Match:
    """The best candidate: ``person`` is None when the gallery is empty."""

    person: str | None
    score: float
    runner_up: float  # the best score of anyone else: how clear the decision was


class Gallery:
    """The vault's templates laid out for fast search: one row per template, grouped by person."""

    def __init__(self, ids: list[str], templates: np.ndarray) -> None:
        templates = np.asarray(templates, dtype=np.float32)
        if templates.ndim != 2 or len(ids) != len(templates):
            raise ValueError(f"{len(ids)} ids for templates of shape {templates.shape}")
        order = np.argsort(np.asarray(ids, dtype=object), kind="stable") if ids else np.zeros(0, int)
        sorted_ids = [ids[i] for i in order]
        # Stored transposed (dim x N, contiguous): probe @ matrix_t streams the gallery in the order
        # BLAS reads it best, about twice as fast as matrix @ probe at 100k templates on a Pi-class CPU.
        self._matrix_t = np.ascontiguousarray(_normalise(templates[order]).T) if ids else templates.T
        # Start row of each person's block, for a per-person max with one reduceat.
        starts = [i for i in range(len(sorted_ids)) if i == 0 or sorted_ids[i] != sorted_ids[i - 1]]
        self._starts = np.asarray(starts, dtype=np.intp)
        self.people = [sorted_ids[i] for i in starts]

    def __len__(self) -> int:
        return self._matrix_t.shape[1]

    @property
    def dim(self) -> int | None:
        return self._matrix_t.shape[0] if len(self) else None

    def person_scores(self, probes: np.ndarray) -> np.ndarray:
        """(frames x people) best cosine of each person's templates for each probe."""
        probes = _normalise(np.atleast_2d(np.asarray(probes, dtype=np.float32)))
        if not self.people:
            return np.zeros((len(probes), 0), np.float32)
        scores = probes @ self._matrix_t
        return np.maximum.reduceat(scores, self._starts, axis=1)

    def search(self, probes: np.ndarray) -> Match:
        """The best person for one probe or several frames' probes.

        Scores are fused per template (the mean over frames), then each person counts by their best
        template: max over templates of the mean over frames. The mean commutes with the dot product, so
        any number of frames costs one matrix-vector product and two scans over N scores.
        """
        if not self.people:
            return Match(None, 0.0, 0.0)
        probes = _normalise(np.atleast_2d(np.asarray(probes, dtype=np.float32)))
        # mean over frames of (probe . template) == (mean probe) . template: one product, not one a frame.
        fused = probes.mean(axis=0) @ self._matrix_t
        best_row = int(np.argmax(fused))
        who = int(np.searchsorted(self._starts, best_row, side="right") - 1)
        start = self._starts[who]
        end = self._starts[who + 1] if who + 1 < len(self._starts) else len(fused)
        others = np.concatenate([fused[:start], fused[end:]]) if len(self.people) > 1 else fused[:0]
        runner_up = float(others.max()) if others.size else 0.0
        return Match(self.people[who], float(fused[best_row]), runner_up)


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors."""
    return float(np.dot(_normalise(np.asarray(a, np.float32)), _normalise(np.asarray(b, np.float32))))


def threshold_for(people: int, base: float, tail: Sequence[tuple[float, float]],
                  stranger_rate: float, fixed: float = 0.0) -> tuple[float, bool]:
    """The cosine a fused score must reach so that someone not enrolled, facing ``people`` enrolled
    people, is let in on at most ``stranger_rate`` of attempts (as measured on the model's
    development data), and whether the model's calibration reaches that far.

    Each of the N people is a chance of a false accept, so each comparison may false-accept at most
    ``stranger_rate / N`` (the union bound). ``tail`` is the manifest's calibration: (false-accept
    rate of one comparison, threshold) points; between them the threshold is interpolated in
    log(rate). It never falls below ``base`` (the manifest's threshold) and, past the rarest
    calibrated rate, stays at that point's threshold and reports False: the gate then admits
    strangers more often than asked and says so. A ``fixed`` threshold (the installer's
    ``match.threshold``) overrides all of this.
    """
    if fixed:
        return fixed, True
    points = sorted((float(f), float(t)) for f, t in tail if f > 0)
    if not points:
        return base, True
    need = stranger_rate / max(1, people)
    if need <= points[0][0]:
        return max(base, points[0][1]), need >= points[0][0] * (1 - 1e-9)
    for (f0, t0), (f1, t1) in zip(points, points[1:]):
        if f0 <= need <= f1:
            w = (math.log(need) - math.log(f0)) / (math.log(f1) - math.log(f0))
            return max(base, t0 + w * (t1 - t0)), True
    return max(base, points[-1][1]), True


def gate_threshold(people: int, model: Any, cfg: Any) -> tuple[float, bool]:
    """``threshold_for`` with a model's calibration (an Embedder or a ModelSpec: ``threshold`` and
    ``tail``; a missing one counts as 1.0, which lets nobody in) and the ``[match]`` config."""
    base = float(getattr(model, "threshold", 1.0))
    if cfg.threshold and cfg.threshold < base and not getattr(cfg, "allow_lower_threshold", False):
        raise ConfigError(f"match.threshold = {cfg.threshold:g} is below the model's calibrated {base:.3f}: "
                          f"strangers would be let in more often than the model card says; remove it, or "
                          f"set match.allow_lower_threshold = true if that is meant")
    return threshold_for(people, base, getattr(model, "tail", ()), cfg.stranger_rate, cfg.threshold)


def decide(match: Match, threshold: float) -> bool:
    """Grant only a known person whose fused score reaches the calibrated threshold."""
    return match.person is not None and match.score >= threshold
