"""``maskgate embed IMAGE...``: the eye-region embedding of the largest face in each image."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edge.camera.replay import read_image
from edge.config import Config
from edge.embed import Embedder, find_face
from edge.errors import MaskgateError
from edge.vision import eyecrop, landmarks

log = logging.getLogger(__name__)


def still_images(paths: list[Path], cfg: Config) -> Iterator[tuple[Path, np.ndarray | None, Any]]:
    """(path, RGB image, a static ``Landmarker``) for each photo of a command that takes image files
    (``maskgate embed``, ``identify``); an image that cannot be read is said on stderr and comes as
    None, so the command goes on with the rest and exits 2 at the end."""
    with landmarks.for_images(cfg.vision) as lm:
        for p in paths:
            try:
                image = read_image(p)
            except MaskgateError as e:
                print(f"maskgate: error: {e}", file=sys.stderr)
                image = None
            yield p, image, lm


def embed_images(paths: list[Path], cfg: Config, out: Any) -> int:
    """``maskgate embed``: one line per image, the largest face's eye embedding or "no face".

    An image that cannot be read is reported on stderr and the rest are still embedded; the exit
    status is then 2. A tight face crop is retried with a border, as the detector needs context.
    """
    embedder = Embedder(cfg.embed)
    status = 0
    for p, image, lm in still_images(paths, cfg):
        if image is None:
            status = 2
            continue
        image, face = find_face(lm, image)
        emb = embedder.embed_face(image, face) if face is not None else None
        if emb is None:
            if face is not None:
                log.info("%s: face turned beyond %.0f deg", p, eyecrop.MAX_YAW_DEG)
            out.event({"path": str(p), "error": "no face"}, f"{p}: no face")
        else:
            out.event({"path": str(p), "embedding": [round(float(v), 6) for v in emb]},
                      f"{p}: {embedder.dim}-D embedding, first values "
                      + " ".join(f"{v:+.3f}" for v in emb[:4]) + " ...")
    return status
