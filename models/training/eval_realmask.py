#!/usr/bin/env python3
"""The embedder on a real-mask photo set kept outside this repository, measured through `maskgate embed`.

The training data has synthetic masks only; this is how a team with real photos (other people, real
masks, their own camera) checks what transfers, without the photos ever entering the repository:

    DIR/PERSON/*.jpg      one folder per person; a file whose name contains "mask" (masked_01.jpg,
                          mask-kn95.png) is a masked photo, any other is bare-faced

    .venv/bin/python models/training/eval_realmask.py DIR [--json] [--config maskgate.toml]

It runs the real command (`python -m edge.cli embed ... --json`, so the same crop, model check and
mirror averaging as the gate) and prints, for masked probe vs bare gallery (the gate's case), bare
vs bare and masked vs masked: AUC, EER, TAR at FAR 1e-2 and 1e-3 (only where there are enough
impostor pairs to measure that FAR), and what the shipped threshold does: the share of genuine and of
impostor pairs it accepts; the per-comparison false-accept rate at each shipped threshold (the
manifest's threshold and its tail); how many people can be enrolled from their bare photos (the
enrolment's own quality gates); and the open-set table (``--sizes``, default N = 1, 5, 10, 20, 50
people enrolled through the real enrolment path, strangers = everyone else, as
models/training/eval_identify.py): strangers admitted and right person admitted, masked and bare, at the
config's [match] stranger_rate (``--rate`` to change it). ``--sizes`` with no number skips the table.
Nothing is written; the photos are read in place (the vaults live in temporary folders).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from embedder_metrics import summary

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm"}


def list_photos(root: Path) -> list[tuple[str, bool, Path]]:
    """(person, masked, path) for every image one folder below ``root``."""
    out = []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(person.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                out.append((person.name, "mask" in f.stem.lower(), f))
    return out


def embed_all(paths: list[Path], config: str | None) -> dict[Path, np.ndarray | None]:
    """The embedding of each path by `maskgate embed --json` (None: no usable face)."""
    cmd = [sys.executable, "-m", "edge.cli", "embed", *map(str, paths), "--json"]
    if config:
        cmd += ["--config", config]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if p.returncode not in (0, 2):
        raise SystemExit(f"eval_realmask: maskgate embed failed (exit {p.returncode}): {p.stderr.strip()}")
    out: dict[Path, np.ndarray | None] = {}
    for line in p.stdout.splitlines():
        r = json.loads(line)
        out[Path(r["path"])] = np.array(r["embedding"], np.float64) if "embedding" in r else None
    return out


def figures(probe: list[tuple[str, np.ndarray]], gallery: list[tuple[str, np.ndarray]], threshold: float,
            same_set: bool = False) -> dict | None:
    """Verification figures over every probe/gallery pair (each unordered pair once when same_set)."""
    gen, imp = [], []
    for i, (a, u) in enumerate(probe):
        for j, (b, v) in enumerate(gallery):
            if same_set and j <= i:
                continue
            (gen if a == b else imp).append(float(u @ v))
    if not gen or not imp:
        return None
    r = summary(np.array(gen), np.array(imp))
    for far in ("1e-2", "1e-3"):
        if len(imp) < 1 / float(far):
            r[f"tar_{far}"] = None   # too few impostor pairs to measure this FAR
    r["accepted_genuine"] = float(np.mean(np.array(gen) >= threshold))
    r["accepted_impostor"] = float(np.mean(np.array(imp) >= threshold))
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", type=Path, help="DIR/PERSON/*.jpg; 'mask' in a file name marks a masked photo")
    ap.add_argument("--config", help="the gate's config file, for its [embed] model (default: built-in)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument("--sizes", type=int, nargs="*", default=[1, 5, 10, 20, 50],
                    help="open-set table: people enrolled (default 1 5 10 20 50; none: skip)")
    ap.add_argument("--rate", type=float, help="[match] stranger_rate for the open-set table (default: the config's)")
    ap.add_argument("--seed", type=int, default=0, help="the order people are enrolled in")
    a = ap.parse_args(argv)
    if not a.dir.is_dir():
        print(f"eval_realmask: error: {a.dir} is not a folder (give DIR/PERSON/*.jpg)", file=sys.stderr)
        return 2
    from edge.config import load
    from edge.embed import load_spec

    spec = load_spec(load(a.config).embed.model)
    threshold = spec.threshold
    photos = list_photos(a.dir)
    if not photos:
        print(f"eval_realmask: error: no images in {a.dir}/PERSON/ folders", file=sys.stderr)
        return 2
    emb = embed_all([p for _, _, p in photos], a.config)
    kept = [(who, m, emb[p]) for who, m, p in photos if emb.get(p) is not None]
    bare = [(who, v) for who, m, v in kept if not m]
    masked = [(who, v) for who, m, v in kept if m]
    report = {"dir": str(a.dir), "people": len({w for w, _, _ in photos}), "images": len(photos),
              "masked_images": sum(m for _, m, _ in photos), "no_face": len(photos) - len(kept),
              "threshold": threshold,
              "masked_probe": figures(masked, bare, threshold),
              "unmasked": figures(bare, bare, threshold, same_set=True),
              "masked_masked": figures(masked, masked, threshold, same_set=True)}
    report["far_at_shipped"] = far_at_thresholds(masked, bare, spec)
    report["enrolable"] = enrolable(a.dir, a.config)
    report["open_set"] = open_set(a.dir, a.sizes, a.config, a.rate, a.seed) if a.sizes else []
    if a.json:
        print(json.dumps(report))
        return 0
    print(f"{report['images']} images of {report['people']} people ({report['masked_images']} masked); "
          f"no usable face in {report['no_face']}; threshold {threshold:.4f}")
    for name in ("masked_probe", "unmasked", "masked_masked"):
        r = report[name]
        if r is None:
            print(f"{name:<13} not enough pairs (needs two people, and masked and bare photos)")
            continue
        tar = "  ".join(f"TAR@{f} " + ("n/a" if r[f"tar_{f}"] is None else f"{r[f'tar_{f}']:.3f}")
                        for f in ("1e-2", "1e-3"))
        print(f"{name:<13} AUC {r['auc']:.4f}  EER {r['eer']:.3f}  {tar}  at the threshold: "
              f"{r['accepted_genuine']:.1%} of {r['genuine']} genuine and {r['accepted_impostor']:.2%} of "
              f"{r['impostor']} impostor pairs accepted")
    print("per-comparison false-accept rate at the shipped thresholds (LFW FAR in brackets):")
    for r in report["far_at_shipped"]:
        print(f"  {r['threshold']:.4f} [{r['lfw_far']:g}]  masked-bare {r['masked_bare']:.2%}  "
              f"bare-bare {r['bare_bare']:.2%}  masked-masked {r['masked_masked']:.2%}")
    e = report["enrolable"]
    print(f"enrolable from their bare photos (two or more good frames): {e['people']} of {e['of']} people "
          f"({e['good_photos']} of {e['photos']} bare photos good; refused: {e['refused']})")
    if report["open_set"]:
        print("open set (enrolled from bare photos through edge.enroll.enroll; strangers = everyone else; identify_images):")
        print(f"  {'N':>3}  {'threshold':>9}  {'strangers masked':>17}  {'strangers bare':>15}  "
              f"{'right masked':>13}  {'right bare':>11}")
        for f in report["open_set"]:
            def pct(k: str) -> str:
                return "n/a" if f[k]["rate"] is None else f"{f[k]['rate']:.1%}"
            print(f"  {f['enrolled']:>3}  {f['threshold']:>9.3f}  {pct('strangers_masked'):>17}  "
                  f"{pct('strangers_bare'):>15}  {pct('right_masked'):>13}  {pct('right_bare'):>11}   "
                  f"{f['calibration']}")
    return 0


def far_at_thresholds(masked: list, bare: list, spec) -> list[dict]:
    """The share of impostor pairs accepted at each threshold the manifest ships (its tail)."""
    def imp(a: list, b: list, same_set: bool) -> np.ndarray:
        u = np.stack([v for _, v in a]); w = np.stack([v for _, v in b])
        s = u @ w.T
        diff = np.not_equal.outer([x for x, _ in a], [x for x, _ in b])
        if same_set:
            diff &= np.triu(np.ones_like(diff, bool), 1)
        return s[diff]
    mb, bb, mm = imp(masked, bare, False), imp(bare, bare, True), imp(masked, masked, True)
    points = list(spec.tail) or [(1e-3, spec.threshold)]
    return [{"threshold": t, "lfw_far": f, "masked_bare": float(np.mean(mb >= t)),
             "bare_bare": float(np.mean(bb >= t)), "masked_masked": float(np.mean(mm >= t))} for f, t in points]


def enrolable(root: Path, config: str | None) -> dict:
    """How many people give the two good frames enrolment needs from all their bare photos
    (``edge.enroll.collect``: the same quality gates as ``maskgate enroll``)."""
    from collections import Counter

    from edge.config import load
    from edge.embed import Embedder
    from edge.enroll import MIN_TEMPLATES, collect

    cfg = load(config)
    embedder = Embedder(cfg.embed)
    people = good = photos = 0
    refused: Counter = Counter()
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    for person in folders:
        bare = [str(f) for f in sorted(person.iterdir())
                if f.suffix.lower() in IMAGE_SUFFIXES and "mask" not in f.stem.lower()]
        if not bare:
            continue
        cands, reports = collect(bare, cfg, embedder)
        people += len(cands) >= MIN_TEMPLATES
        good += len(cands)
        photos += len(bare)
        for r in reports:
            refused.update(r.refused)
    return {"people": people, "of": len(folders), "good_photos": good, "photos": photos,
            "refused": dict(refused.most_common())}


def open_set(root: Path, sizes: list[int], config: str | None, rate: float | None, seed: int) -> list[dict]:
    """models/training/eval_identify.py's site for each N: the real enrolment and identify paths."""
    import dataclasses
    import random

    from edge.config import load
    from edge.embed import Embedder
    from eval_identify import photos_by_person, site

    cfg = load(config)
    if rate is not None:
        cfg = dataclasses.replace(cfg, match=dataclasses.replace(cfg.match, stranger_rate=rate))
    embedder = Embedder(cfg.embed)
    photos = photos_by_person(root)
    order = sorted(photos)
    random.Random(seed).shuffle(order)
    return [site(order, photos, n, cfg, embedder) for n in sizes]


if __name__ == "__main__":
    sys.exit(main())
