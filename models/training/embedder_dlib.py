"""The baseline: dlib's full-face ResNet descriptor (the teacher) on the evaluation images, masked too.

Same pipeline as ``../shared/data/teacher`` (HOG detector with one upsample, the box nearest the image
centre or a fixed fallback box, 5-point shape, 150 px chip with padding 0.25, one jitter), run on the
unmasked and on the synthetic-masked version of each image (the very mask the student is tested
with, drawn by ``embedder_data.masked_image`` with the same seed). Needs ``dlib`` (``dlib-bin``) and
``face-recognition-models`` (CC0) from requirements.txt; results are cached by the caller.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np

import embedder_data as D

_st: dict = {}


def _init(data: str) -> None:
    import dlib
    import face_recognition_models as frm

    _st["data"] = Path(data)
    _st["bank"] = D.MaskBank(Path(data))
    _st["det"] = dlib.get_frontal_face_detector()
    _st["sp"] = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    _st["rec"] = dlib.face_recognition_model_v1(frm.face_recognition_model_location())


def _descriptor(img: np.ndarray) -> np.ndarray:
    import dlib

    h, w = img.shape[:2]
    dets = _st["det"](img, 1)
    if dets:
        box = min(dets, key=lambda r: np.hypot((r.left() + r.right()) / 2 - w / 2, (r.top() + r.bottom()) / 2 - h / 2))
    else:  # the teacher's fallback: its median LFW box, scaled to this image
        sx, sy = w / 250.0, h / 250.0
        box = dlib.rectangle(int(67 * sx), int(80 * sy), int(175 * sx), int(187 * sy))
    shape = _st["sp"](img, box)
    chip = dlib.get_face_chip(img, shape, size=150, padding=0.25)
    return np.array(_st["rec"].compute_face_descriptor(chip, 1), np.float32)


def _one(job: tuple[str, np.ndarray, bool]) -> np.ndarray:
    rel, lm, masked = job
    path = _st["data"] / rel
    img = D.masked_image(_st["data"], path, lm, D.seed_of(rel), _st["bank"]) if masked else D.read_rgb(path)
    return _descriptor(np.ascontiguousarray(img))


def descriptors(data: Path, rels: list[str], lms: np.ndarray, masked: bool, workers: int = 1) -> np.ndarray:
    """dlib descriptors (N x 128, raw, Euclidean metric) of the images, masked or not."""
    with mp.Pool(workers, initializer=_init, initargs=(str(data),)) as pool:
        return np.stack(pool.map(_one, [(r, lms[i], masked) for i, r in enumerate(rels)], chunksize=8))
