#!/usr/bin/env python3
"""The embedder on a real-mask photo set kept outside this repository, measured through `maskgate embed`.

The training data has synthetic masks only; this is how a team with real photos (other people, real
masks, their own camera) checks what transfers, without the photos ever entering the repository:

    DIR/PERSON/*.jpg      one folder per person; a file whose name contains "mask" (masked_01.jpg,
                          mask-kn95.png) is a masked photo, any other is bare-faced

    .venv/bin/python scripts/eval_realmask.py DIR [--json] [--config maskgate.toml]

It runs the real command (`python -m edge.cli embed ... --json`, so the same crop, model check and
mirror averaging as the gate) and prints, for masked probe vs bare gallery (the gate's case) and bare
vs bare: AUC, EER, TAR at FAR 1e-2 and 1e-3 (only where there are enough impostor pairs to measure
that FAR), and what the shipped threshold does: the share of genuine and of impostor pairs it accepts.
Nothing is written; the photos are read in place.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
from embedder_metrics import summary  # noqa: E402

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
    a = ap.parse_args(argv)
    if not a.dir.is_dir():
        print(f"eval_realmask: error: {a.dir} is not a folder (give DIR/PERSON/*.jpg)", file=sys.stderr)
        return 2
    from edge.config import load
    from edge.embed import load_spec

    threshold = load_spec(load(a.config).embed.model).threshold
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
              "unmasked": figures(bare, bare, threshold, same_set=True)}
    if a.json:
        print(json.dumps(report))
        return 0
    print(f"{report['images']} images of {report['people']} people ({report['masked_images']} masked); "
          f"no usable face in {report['no_face']}; threshold {threshold:.4f}")
    for name in ("masked_probe", "unmasked"):
        r = report[name]
        if r is None:
            print(f"{name:<13} not enough pairs (needs two people, and masked and bare photos)")
            continue
        tar = "  ".join(f"TAR@{f} " + ("n/a" if r[f"tar_{f}"] is None else f"{r[f'tar_{f}']:.3f}")
                        for f in ("1e-2", "1e-3"))
        print(f"{name:<13} AUC {r['auc']:.4f}  EER {r['eer']:.3f}  {tar}  at the threshold: "
              f"{r['accepted_genuine']:.1%} of {r['genuine']} genuine and {r['accepted_impostor']:.2%} of "
              f"{r['impostor']} impostor pairs accepted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
