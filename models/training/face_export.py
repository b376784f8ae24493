"""Export dlib's face-recognition ResNet (CC0) to TFLite for the gate's whole-face embedding.

The network is rebuilt layer for layer in Keras by ``embedder_teacher.build`` from dlib's own model
file (checked there against ``dlib.face_recognition_model_v1``), wrapped so that it takes the 150 px
RGB face chip as float pixels (0-255; dlib's per-channel mean and /256 are inside the graph), and
converted with int8 weights (dynamic range: activations stay float). float16 weights would be
11 MB; int8 is 5.6 MB and agrees with dlib to cosine > 0.999 (below).

Agreement is measured where no landmark detector differs: on dlib's own chips of LFW images (cut
with dlib's 5-point landmarks stored in ``../shared/data/teacher``), the TFLite descriptor against
dlib's own descriptor of that chip. The gate's chips (from MediaPipe) are compared with dlib's
descriptors by ``eval_face.py`` (the whole path). Runs in the training venv (MODEL_CARD.md):

    venv-train/bin/python models/training/face_export.py --data ../shared/data --out models/ --work /tmp/face-work
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
from pathlib import Path

import numpy as np

import embedder_teacher as T

HERE = Path(__file__).resolve().parent

log = logging.getLogger("face_export")
FILE = "face_embedder_int8.tflite"


def keras_model(work: Path, data: Path):  # noqa: ANN201
    """dlib's network taking a 150 x 150 RGB chip (float 0-255), checked against dlib."""
    import keras

    layers = T.parse(T.dlib_xml(work))
    T.verify(layers, data, keras)
    base = T.build(layers, (150, 150, 3), keras)
    inp = keras.Input((150, 150, 3), name="face_chip_rgb")
    x = keras.layers.Rescaling(1 / 256.0)(inp - T.MEAN_RGB)
    return keras.Model(inp, base(x), name="dlib_face")


def convert(model, out: Path) -> None:  # noqa: ANN001
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]   # int8 weights, float activations
    out.write_bytes(conv.convert())
    log.info("%s: %.2f MB, sha256 %s", out, out.stat().st_size / 1e6,
             hashlib.sha256(out.read_bytes()).hexdigest())


def agreement(path: Path, data: Path, n: int, seed: int = 0) -> dict:
    """Cosine between the TFLite descriptor and dlib's (teacher file) on dlib's own chips of ``n``
    LFW images drawn at random; and between the Keras float port and dlib (the port alone)."""
    import dlib
    import tensorflow as tf

    t = np.load(data / "teacher" / "lfw_dlib128.npz")
    pick = np.random.default_rng(seed).choice(len(t["paths"]), n, replace=False)
    it = tf.lite.Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    i_in, i_out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    cos, t0 = [], time.time()
    for k in pick:
        img = read_rgb(data / "lfw" / "images_deepfunneled" / str(t["paths"][k]))
        box = dlib.rectangle(*map(int, t["box"][k]))
        shape = dlib.full_object_detection(box, [dlib.point(int(round(x)), int(round(y)))
                                                 for x, y in t["landmarks5"][k]])
        chip = dlib.get_face_chip(img, shape, size=150, padding=0.25)
        it.set_tensor(i_in, chip[None].astype(np.float32))
        it.invoke()
        e, ref = it.get_tensor(i_out)[0], t["emb"][k]
        cos.append(float(e @ ref / np.linalg.norm(e) / np.linalg.norm(ref)))
    cos = np.array(cos)
    r = {"images": n, "cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
         "cos_p01": float(np.quantile(cos, 0.01))}
    log.info("TFLite vs dlib on dlib's chips of %d LFW images: cosine mean %.5f, 1st percentile %.5f, "
             "min %.5f (%.0fs)", n, r["cos_mean"], r["cos_p01"], r["cos_min"], time.time() - t0)
    return r


def read_rgb(path: Path) -> np.ndarray:
    import cv2

    return np.ascontiguousarray(cv2.imread(str(path))[:, :, ::-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=HERE.parents[1] / "models")
    ap.add_argument("--work", type=Path, default=Path("/tmp/face-work"))
    ap.add_argument("--check", type=int, default=500, help="LFW images for the agreement check")
    ap.add_argument("--eval-dlib", action="store_true",
                    help="only write dlib's own descriptors of Georgia Tech and realmask_dev to "
                         "WORK/dlib_eval.npz (the 'dlib full face' rows of eval_face.py)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if a.eval_dlib:
        import embedder_dlib

        rels = sorted(str(p.relative_to(a.data)) for p in (a.data / "gt_faces").glob("s*/*.jpg"))
        rels += sorted(str(p.relative_to(a.data)) for p in (a.data / "realmask_dev").glob("*/*.jpg"))
        emb = embedder_dlib.descriptors(a.data, rels, np.zeros((len(rels), 478, 3), np.float32), False)
        np.savez(a.work / "dlib_eval.npz", paths=np.array(rels), emb=emb)
        log.info("dlib descriptors of %d images in %s", len(rels), a.work / "dlib_eval.npz")
        return 0
    out = a.out / FILE
    if not out.exists():
        convert(keras_model(a.work, a.data), out)
    r = agreement(out, a.data, a.check)
    if r["cos_p01"] < 0.99:
        raise SystemExit(f"face_export: {out} disagrees with dlib (1st percentile cosine {r['cos_p01']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
