"""Face-mesh landmarks of the full-face evaluation images, once, cached (the gate's own venv).

The images ``eval_face.py`` and ``face_export.py`` need: every LFW image in View 2 (``pairs.txt``),
Georgia Tech, and a real-mask folder (``realmask_dev``: read in place, only landmarks are kept, in
the work folder, never in the repository). Tight crops the detector misses are retried with a border,
as ``maskgate embed`` does (``edge.embed.find_face``); ``pad`` records the border so the same padded
image can be rebuilt.

    .venv/bin/python models/training/face_landmarks.py --data ../shared/data --out /tmp/face-work/landmarks.npz
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

import embedder_data as D

log = logging.getLogger("face_landmarks")


def list_images(data: Path) -> list[str]:
    """Paths relative to ``data``: LFW View 2 images, Georgia Tech, realmask_dev (when present)."""
    lfw = sorted({D.lfw_rel(n, k) for fold in D.lfw_folds(data) for a, i, b, j in fold
                  for n, k in ((a, i), (b, j))})
    gt = sorted(str(p.relative_to(data)) for p in (data / "gt_faces").glob("s*/*.jpg"))
    rm = sorted(str(p.relative_to(data)) for p in (data / "realmask_dev").glob("*/*.jpg"))
    return lfw + gt + rm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from edge.embed import find_face
    from edge.vision import landmarks

    rel = list_images(a.data)
    log.info("%d images", len(rel))
    lms = np.zeros((len(rel), 478, 3), np.float32)
    ok = np.zeros(len(rel), bool)
    pads = np.zeros(len(rel), np.int32)
    with landmarks.for_images(max_faces=3) as lm:
        for i, r in enumerate(rel):
            img = D.read_rgb(a.data / r)
            padded, face = find_face(lm, img, centre=True)
            if face is not None:
                lms[i], ok[i], pads[i] = face.landmarks, True, (padded.shape[0] - img.shape[0]) // 2
            if i % 1000 == 0:
                log.info("%d/%d", i, len(rel))
    log.info("faces found in %d of %d images", ok.sum(), len(rel))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(a.out, paths=np.array(rel), landmarks=lms, ok=ok, pad=pads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
