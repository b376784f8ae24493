"""Face-mesh landmarks of every training/evaluation image, once, cached (runs in the runtime venv).

The training venv has TensorFlow, whose protobuf breaks MediaPipe, so ``train_embedder.py`` runs
this file with the gate's own interpreter (``.venv/bin/python``) and reads the cache it writes.
The landmarks are made by the gate's own ``Landmarker`` in static mode, so training crops are cut
exactly as the gate cuts them.

    python models/training/embedder_landmarks.py --data ../shared/data --out /work/tmp/embedder/landmarks.npz
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import sys
from pathlib import Path

import numpy as np


log = logging.getLogger("embedder_landmarks")

_lm = None


def list_images(data: Path) -> list[str]:
    """Every image used, relative to ``data``: LFW (deep-funneled), AT&T, Georgia Tech."""
    out = sorted(str(p.relative_to(data)) for p in (data / "lfw" / "images_deepfunneled").glob("*/*.jpg"))
    out += sorted(str(p.relative_to(data)) for p in (data / "att_faces").glob("s*/*.pgm"))
    out += sorted(str(p.relative_to(data)) for p in (data / "gt_faces").glob("s*/*.jpg"))
    return out


def read_rgb(path: Path) -> np.ndarray | None:
    import cv2

    im = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if im is None else np.ascontiguousarray(im[:, :, ::-1])


def _init() -> None:
    global _lm
    from edge.vision import landmarks

    _lm = landmarks.for_images(max_faces=3)


def _one(path: str) -> np.ndarray | None:
    im = read_rgb(Path(path))
    if im is None:
        return None
    faces = _lm.detect(im)
    if not faces:
        return None
    h, w = im.shape[:2]
    # The photo's subject is the face nearest the centre (LFW images often hold a second person).
    best = min(faces, key=lambda f: np.hypot(f.center[0] - w / 2, f.center[1] - h / 2))
    return best.landmarks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rel = list_images(a.data)
    log.info("%d images", len(rel))
    lms = np.zeros((len(rel), 478, 3), np.float32)
    ok = np.zeros(len(rel), bool)
    with mp.Pool(a.workers, initializer=_init) as pool:
        for i, r in enumerate(pool.imap(_one, [str(a.data / p) for p in rel], chunksize=32)):
            if r is not None:
                lms[i], ok[i] = r, True
            if i % 2000 == 0:
                log.info("%d/%d", i, len(rel))
    log.info("faces found in %d of %d images", ok.sum(), len(rel))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(a.out, paths=np.array(rel), landmarks=lms, ok=ok)
    return 0


if __name__ == "__main__":
    sys.exit(main())
