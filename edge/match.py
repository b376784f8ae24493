"""1:N cosine search over the vault's templates, multi-frame score fusion, the decision threshold.

Templates and probes are L2-normalised, so cosine similarity is one matrix-vector product. A person
may have several templates (masked, unmasked, glasses); their score is the best of them. Over several
frames of one approach, each person's per-frame scores are averaged, so one lucky frame cannot open
the door and one blurred frame cannot keep it shut.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

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
        self._matrix = np.ascontiguousarray(_normalise(templates[order])) if ids else templates
        # Start row of each person's block, for a per-person max with one reduceat.
        starts = [i for i in range(len(sorted_ids)) if i == 0 or sorted_ids[i] != sorted_ids[i - 1]]
        self._starts = np.asarray(starts, dtype=np.intp)
        self.people = [sorted_ids[i] for i in starts]

    def __len__(self) -> int:
        return len(self._matrix)

    @property
    def dim(self) -> int | None:
        return self._matrix.shape[1] if self._matrix.ndim == 2 and len(self._matrix) else None

    def person_scores(self, probes: np.ndarray) -> np.ndarray:
        """(frames x people) best cosine of each person's templates for each probe."""
        probes = _normalise(np.atleast_2d(np.asarray(probes, dtype=np.float32)))
        if not self.people:
            return np.zeros((len(probes), 0), np.float32)
        scores = probes @ self._matrix.T
        return np.maximum.reduceat(scores, self._starts, axis=1)

    def search(self, probes: np.ndarray) -> Match:
        """The best person for one probe or several frames' probes (score-fused by the mean)."""
        fused = self.person_scores(probes).mean(axis=0)
        if fused.size == 0:
            return Match(None, 0.0, 0.0)
        if fused.size == 1:
            return Match(self.people[0], float(fused[0]), 0.0)
        top2 = np.argpartition(fused, -2)[-2:]
        best, second = (top2[1], top2[0]) if fused[top2[1]] >= fused[top2[0]] else (top2[0], top2[1])
        return Match(self.people[int(best)], float(fused[best]), float(fused[second]))


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors."""
    return float(np.dot(_normalise(np.asarray(a, np.float32)), _normalise(np.asarray(b, np.float32))))


def decide(match: Match, threshold: float) -> bool:
    """Grant only a known person whose fused score reaches the calibrated threshold."""
    return match.person is not None and match.score >= threshold
