#!/usr/bin/env python3
"""Evidence for the vault's renewable templates: score distributions and file size.

Prints cosine-score distributions (mean, sd, percentiles) for
  genuine      same person, same key (what the gate sees: protected probe vs protected template)
  impostor     different people, same key
  after rekey  same person: a template kept from before a rekey vs a probe under the new key
  two gates    same person: gate A's stored template vs gate B's stored template (linkability)
and the sealed file's size and open time for 1,000 people x templates.

Embeddings: real ones from edge/embed.py over the Georgia Tech faces when the model exists
(models/manifest.toml), else random unit vectors with per-person noise. The protection argument
does not depend on which: a secret orthogonal transform keeps every cosine within one key, and
between two independent keys it is a Haar-random rotation, so a cross-key score of unit vectors
is distributed like the cosine of two random unit vectors, N(0, 1/dim), whatever the inputs.

    python evaluation/eval_vault.py [--synthetic] [--dim 128] [--templates 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edge.config import VaultConfig
from edge.vault import Vault

ROOT = Path(__file__).resolve().parent.parent


def stats(name: str, s: np.ndarray, threshold: float | None) -> None:
    """One score distribution's line; with the model's threshold, the share at or above it."""
    p = np.percentile(s, [1, 5, 50, 95, 99])
    above = f" >=thr {np.mean(s >= threshold) * 100:.2f}%" if threshold is not None else ""
    print(f"{name:34s} n={len(s):7d} mean={s.mean():+.3f} sd={s.std():.3f} "
          f"p1={p[0]:+.3f} p5={p[1]:+.3f} p50={p[2]:+.3f} p95={p[3]:+.3f} p99={p[4]:+.3f}{above}")


def real_embeddings(data: Path, limit: int) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Embeddings of the first ``limit`` people's images, their labels and the model's threshold."""
    if not (ROOT / "models" / "manifest.toml").exists():
        return None
    try:
        from edge.camera.replay import read_image
        from edge.config import EmbedConfig
        from edge.embed import Embedder
        from edge.vision import landmarks
    except ImportError as e:
        print(f"# no real embedder ({e})")
        return None
    emb = Embedder(EmbedConfig())
    vecs, labels = [], []
    people = sorted(p for p in data.iterdir() if p.is_dir())[:limit]
    with landmarks.for_images(max_faces=1) as lm:
        for i, person in enumerate(people):
            for img_path in sorted(person.glob("*.jpg")):
                img = read_image(img_path)
                faces = lm.detect(img)
                v = emb.embed_face(img, faces[0]) if faces else None
                if v is not None:
                    vecs.append(np.asarray(v, np.float32))
                    labels.append(i)
    print(f"# real embeddings: {len(vecs)} images of {len(people)} people from {data} (dim {emb.dim}, "
          f"model {emb.spec.path.name}, threshold {emb.threshold:.3f})")
    return np.stack(vecs), np.array(labels), float(emb.threshold)


def synthetic(people: int, per: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    proto = rng.standard_normal((people, dim))
    proto /= np.linalg.norm(proto, axis=1, keepdims=True)
    x = np.repeat(proto, per, axis=0) + 0.7 * rng.standard_normal((people * per, dim)) / np.sqrt(dim)
    print(f"# SYNTHETIC embeddings (no model yet): {people} people x {per} random unit vectors, dim {dim}, "
          "per-person noise giving genuine cosine ~0.67")
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), np.repeat(np.arange(people), per)


def pairs(a: np.ndarray, b: np.ndarray, la: np.ndarray, lb: np.ndarray, same: bool, skip_diag: bool) -> np.ndarray:
    s = a @ b.T
    mask = (la[:, None] == lb[None, :]) if same else (la[:, None] != lb[None, :])
    if skip_diag:
        np.fill_diagonal(mask, False)
    return s[mask]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--synthetic", action="store_true", help="random unit vectors even when a model exists")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "gt_faces")
    ap.add_argument("--people", type=int, default=50)
    ap.add_argument("--dim", type=int, default=128, help="synthetic dimension (and size test without a model)")
    ap.add_argument("--templates", type=int, default=5, help="templates per person for the size test")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    got = None if args.synthetic else real_embeddings(args.data, args.people)
    x, labels, thr = got if got is not None else (*synthetic(args.people, 15, args.dim, rng), None)
    dim = x.shape[1]

    with tempfile.TemporaryDirectory() as tmp:
        a = Vault.open(Path(tmp) / "a", device_id="eval-board-a")
        b = Vault.open(Path(tmp) / "b", device_id="eval-board-b")
        ta, tb = a.protect(x), b.protect(x)          # stored templates on gate A and on gate B
        stats("genuine (same key)", pairs(ta, ta, labels, labels, True, True), thr)
        stats("impostor (same key)", pairs(ta, ta, labels, labels, False, False), thr)
        stats("plain embeddings genuine (check)", pairs(x, x, labels, labels, True, True), thr)
        before = ta.copy()
        a.rekey()
        after_probe = a.protect(x)
        stats("same person, template before rekey", pairs(after_probe, before, labels, labels, True, False),
              thr)
        stats("two gates, same person (linkage)", pairs(ta, tb, labels, labels, True, False), thr)
        stats("two gates, different people", pairs(ta, tb, labels, labels, False, False), thr)
        print(f"# reference: two random unit vectors in {dim} dims: mean 0, sd {1 / np.sqrt(dim):.3f}")

        # File size: 1,000 people x templates, realistic consent records.
        v = Vault.open(Path(tmp) / "size", VaultConfig(), device_id="eval-board-size")
        for i in range(1000):     # through the public enrolment call, as `maskgate enroll` writes them
            v.add(f"Resident {i:04d}", list(rng.standard_normal((args.templates, dim))),
                  f"signed form FORM-2025-{i:05d}", "installer")
        size = v.path.stat().st_size
        t0 = time.perf_counter()
        Vault.open(Path(tmp) / "size", device_id="eval-board-size").gallery()
        t_open = time.perf_counter() - t0
        raw = 1000 * args.templates * dim * 4
        print(f"file size per 1,000 people x {args.templates} templates x {dim} float32: {size / 1e6:.2f} MB "
              f"({size / 1000:.0f} bytes/person; templates alone {raw / 1e6:.2f} MB); "
              f"open+gallery {t_open * 1000:.0f} ms on this machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
