"""Verification figures from genuine and impostor cosine scores: AUC, EER, TAR at fixed FAR."""

from __future__ import annotations

import numpy as np


def cross_scores(probe: np.ndarray, gallery: np.ndarray, ids: np.ndarray, same_set: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) scores of every probe row against every gallery row, rows unit vectors.

    Row i of both is the same photo (e.g. masked and unmasked versions), so i-vs-i is skipped;
    ``same_set`` counts each unordered pair once (probe and gallery are the same array).
    """
    s = probe @ gallery.T
    same = ids[:, None] == ids[None, :]
    keep = ~np.eye(len(ids), dtype=bool)
    if same_set:
        keep &= np.triu(np.ones_like(keep), 1)
    return s[same & keep].astype(np.float64), s[~same & keep].astype(np.float64)


def far_threshold(impostor: np.ndarray, far: float) -> float:
    """The lowest score threshold whose false-accept rate (score > t) is at most ``far``."""
    imp = np.sort(impostor)
    k = int(np.ceil(len(imp) * (1 - far))) - 1
    return float(imp[min(max(k, 0), len(imp) - 1)])


def summary(genuine: np.ndarray, impostor: np.ndarray) -> dict[str, float]:
    """AUC, EER and TAR at FAR 1e-2 / 1e-3, with the pair counts."""
    g, i = np.asarray(genuine, np.float64), np.asarray(impostor, np.float64)
    allv = np.concatenate([g, i])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(len(allv))
    ranks[order] = np.arange(1, len(allv) + 1)
    auc = (ranks[:len(g)].sum() - len(g) * (len(g) + 1) / 2) / (len(g) * len(i))
    ts = np.quantile(allv, np.linspace(0, 1, 2001))
    frr = np.searchsorted(np.sort(g), ts, side="right") / len(g)
    far = 1 - np.searchsorted(np.sort(i), ts, side="right") / len(i)
    k = int(np.argmin(np.abs(frr - far)))
    out = {"auc": float(auc), "eer": float((frr[k] + far[k]) / 2)}
    for name, f in (("1e-2", 1e-2), ("1e-3", 1e-3)):
        t = far_threshold(i, f)
        out[f"tar_{name}"] = float(np.mean(g > t))
    out["genuine"], out["impostor"] = int(len(g)), int(len(i))
    return out
