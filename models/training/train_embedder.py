"""Train the eye-region embedder from scratch, export it to TFLite, calibrate it, evaluate it.

One command, in a training venv of its own (models/training/requirements.txt; see
models/MODEL_CARD.md), with the gate's ``.venv`` present for the MediaPipe step:

    python models/training/train_embedder.py --data ../shared/data --out models/

does, with fixed seeds:
1. face-mesh landmarks of every image (MediaPipe, run with the gate's own interpreter, cached);
2. eye crops: clean, synthetic-masked, and gate-camera augmented variants (cached);
3. the eye teachers (models/training/embedder_teacher.py): dlib's full-face ResNet (CC0), ported to Keras
   and fine-tuned on the eye crops (``--teachers`` such fine-tunes from different seeds, three in
   the shipped recipe; cached), and their summed embedding of every crop;
4. training: a small CNN (MobileFaceNet-like head, plain 3x3 convolutions), 128-D, distilled from
   dlib's full-face descriptor of the *unmasked* image and from the eye teachers' embedding of the
   same crop (cosines), plus a CosFace identity margin loss; ``--members`` (2) such students,
   alike but for the seed;
5. export of the members as one graph (the sum of their unit embeddings) to TFLite float32 and int8
   (representative eye crops), the TFLite-vs-Keras agreement check;
6. the threshold at FAR 1e-3 on the development people (LFW View 2 fold 5, never trained on), on
   mirror-averaged embeddings as the gate makes them (``--recalibrate`` redoes only this and 7);
7. ``models/manifest.toml`` and the evaluation report (models/training/eval_embedder.py) on folds 6-10.

Held out from training: every person in LFW View 2 folds 5-10 (fold 5 = development, 6-10 = report).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing as mp
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

import embedder_data as D
import embedder_teacher
from embedder_loss import distill_cosface, learning_rate
from embedder_metrics import cross_scores, far_threshold, summary

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

log = logging.getLogger("train_embedder")

DEV_FOLDS = (4,)             # 0-based: fold 5
TEST_FOLDS = (5, 6, 7, 8, 9)  # folds 6-10
EMB_DIM = 128
# The embedding is the normalised sum of the network's outputs for the crop and its mirror image
# (edge/embed.py; manifest ``[input] mirror_average``): +3 points of masked TAR for the same weights.
MIRROR_AVERAGE = True
MEAN, STD = 127.5, 128.0
# False-accept rates of one comparison calibrated into the manifest; the first is the model's threshold.
TAIL_FARS = (1e-3, 3e-4, 1e-4, 3e-5, 1e-5)


# ---------------------------------------------------------------- data

def ensure_landmarks(data: Path, work: Path, runtime_python: str) -> dict:
    out = work / "landmarks.npz"
    if not out.exists():
        log.info("landmarks: running MediaPipe with %s", runtime_python)
        subprocess.run([runtime_python, str(HERE / "embedder_landmarks.py"), "--data", str(data),
                        "--out", str(out)], check=True)
    z = np.load(out)
    return {"paths": [str(p) for p in z["paths"]], "landmarks": z["landmarks"], "ok": z["ok"]}


def splits(data: Path, paths: list[str]) -> dict[str, set[str]]:
    """People per split: LFW dev (fold 5) and test (folds 6-10) people, and GT (cross-dataset)."""
    folds = D.lfw_folds(data)
    dev = {n for f in DEV_FOLDS for a, _, b, _ in folds[f] for n in (a, b)}
    test = {n for f in TEST_FOLDS for a, _, b, _ in folds[f] for n in (a, b)}
    assert not dev & test, "LFW View 2 folds are identity-disjoint"
    return {"dev": dev, "test": test}


_bank = None
_data = None


def _init_worker(data: str) -> None:
    global _bank, _data
    _data = Path(data)
    _bank = D.MaskBank(_data)


def _variants(job: tuple[str, np.ndarray, int]) -> tuple:
    rel, lm, n_aug = job
    return D.crop_variants(_data / rel, lm, _bank, D.seed_of(rel), n_aug)


def make_crops(data: Path, rels: list[str], lms: np.ndarray, n_aug: int, workers: int) -> tuple:
    with mp.Pool(workers, initializer=_init_worker, initargs=(str(data),)) as pool:
        res = pool.map(_variants, [(r, lms[i], n_aug) for i, r in enumerate(rels)], chunksize=16)
    clean = np.stack([r[0] for r in res])
    masked = np.stack([r[1] for r in res])
    augs = np.stack([r[2] for r in res]) if n_aug else None
    flags = np.stack([r[3] for r in res]) if n_aug else None
    return clean, masked, augs, flags


def teacher_targets(data: Path, rels: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit teacher descriptors (mean-centred on LFW so cosine spreads over the sphere), and a mask."""
    z = np.load(data / "teacher" / "lfw_dlib128.npz")
    emb = z["emb"].astype(np.float32)
    mean = emb.mean(axis=0)
    index = {str(p): i for i, p in enumerate(z["paths"])}
    t = np.zeros((len(rels), 128), np.float32)
    has = np.zeros(len(rels), np.float32)
    for i, r in enumerate(rels):
        j = index.get(r.removeprefix("lfw/images_deepfunneled/"))
        if j is not None and r.startswith("lfw/"):
            v = emb[j] - mean
            t[i], has[i] = v / np.linalg.norm(v), 1.0
    return t, has, mean


# ---------------------------------------------------------------- model

def build_model(tf, keras, channels: tuple[int, ...]):  # noqa: ANN001
    """A small plain CNN (3x3 convs, residual where shapes allow), global depthwise pooling, 128-D.

    Plain convolutions rather than MobileFaceNet's depthwise-separable blocks: on the two-core
    training machine TensorFlow ran them 2.6x faster per step (1.6 s vs 4.3 s a batch of 256), and on
    a Pi one student of the shipped width is only 36 M multiply-adds (the earlier releases' 19 M).
    """
    L = keras.layers

    def conv_bn(x, ch, k=3, s=1):
        x = L.Conv2D(ch, k, s, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        return L.ReLU()(x)

    inp = keras.Input((D.eyecrop.CROP_H, D.eyecrop.CROP_W, 3), name="eye_crop")
    x = inp
    for ch, s in zip(channels, (2, 2, 1, 2, 1, 2, 1)):
        y = conv_bn(x, ch, 3, s)                # 28x56, 14x28, 7x14, 4x7
        x = L.Add()([x, y]) if s == 1 else y
    x = conv_bn(x, 256, 1)
    x = L.DepthwiseConv2D((x.shape[1], x.shape[2]), padding="valid", use_bias=False)(x)  # GDC
    x = L.BatchNormalization()(x)
    x = L.Flatten()(x)
    x = L.Dropout(0.1)(x)
    x = L.Dense(EMB_DIM, use_bias=False)(x)
    x = L.BatchNormalization(name="embedding")(x)
    return keras.Model(inp, x, name="eye_embedder")


def ensemble_targets(dirs: list[Path], X: np.ndarray, work: Path) -> np.ndarray:
    """Per training crop, the normalised sum of earlier students' mirror-averaged embeddings of it.

    Each earlier student was distilled toward the same dlib space, so their embeddings share axes
    and their sum is a better embedding than any one of them (the ensemble is 3-4 points of masked
    TAR above its members); a new student learns to give that sum from one network."""
    files = [d / tomllib.loads((d / "manifest.toml").read_text())["models"]["int8"]["file"] for d in dirs]
    key = hashlib.sha256(b"".join(sha256(f).encode() for f in files) + str(X.shape).encode()).hexdigest()[:12]
    cache = work / f"ensemble_targets_{key}.npy"
    if cache.exists():
        return np.load(cache)
    flat = X.reshape((-1,) + X.shape[2:])
    e = np.zeros((len(flat), EMB_DIM), np.float32)
    for f in files:
        t0 = time.time()
        e += tflite_embed(f, flat, mirror_average=True)
        log.info("ensemble targets: %s on %d crops (%.0fs)", f, len(flat), time.time() - t0)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    e = e.reshape(X.shape[:2] + (EMB_DIM,))
    np.save(cache, e)
    return e


def train(args: argparse.Namespace, X: np.ndarray, T: np.ndarray, has_t: np.ndarray, y: np.ndarray,
          n_classes: int, dev: dict, seed: int, E: np.ndarray | None = None) -> object:
    import tensorflow as tf
    import keras

    tf.random.set_seed(seed)
    keras.utils.set_random_seed(seed)
    model = build_model(tf, keras, tuple(int(c) for c in args.channels.split(",")))
    model.summary(print_fn=lambda s, **k: log.info(s))
    n_img, n_aug = X.shape[:2]
    steps_per_epoch = n_img * n_aug // args.batch
    opt = keras.optimizers.Adam(args.lr)
    head = tf.Variable(tf.random.normal((EMB_DIM, n_classes), stddev=0.01, seed=seed), name="cosface")

    @tf.function
    def step(x8, flip, t, tw, lab, te):
        x = (tf.cast(x8, tf.float32) - MEAN) / STD
        x = tf.where(flip[:, None, None, None], tf.reverse(x, axis=[2]), x)
        with tf.GradientTape() as tape:
            e = tf.math.l2_normalize(model(x, training=True), axis=1)
            lc, ld = distill_cosface(tf, e, t, tw, lab, head, n_classes)
            loss = args.cosface * lc + args.distill * ld
            if E is not None:   # the eye teacher's (or earlier students') embedding, mirror-averaged
                loss += args.ensemble_weight * tf.reduce_mean(1.0 - tf.reduce_sum(e * te, axis=1))
        vars_ = model.trainable_variables + [head]
        opt.apply_gradients(zip(tape.gradient(loss, vars_), vars_))
        return lc, ld

    rng = np.random.default_rng(seed)
    t0 = time.time()
    epochs, total, done, epoch = args.epochs, args.epochs * steps_per_epoch, 0, 0
    while epoch < epochs:   # the budget check below may lower ``epochs`` during the first one
        order = rng.permutation(n_img * n_aug)
        lcs, lds = [], []
        for b in range(steps_per_epoch):
            opt.learning_rate.assign(learning_rate(args.lr, done, total, warmup=200, floor=0.02))
            idx = order[b * args.batch:(b + 1) * args.batch]
            ii, kk = idx // n_aug, idx % n_aug
            flip = rng.random(len(idx)) < 0.5   # mirrored training crops: more faces, same people
            lc, ld = step(tf.constant(X[ii, kk]), tf.constant(flip), tf.constant(T[ii]),
                          tf.constant(has_t[ii]), tf.constant(y[ii]),
                          tf.constant(E[ii, kk] if E is not None else T[ii]))
            lcs.append(float(lc)), lds.append(float(ld))
            done += 1
            if epoch == 0 and b == 10:
                t10 = time.time()   # the first steps include building the graph
            if epoch == 0 and b == 40 and args.budget_min > 0:
                per_step = (time.time() - t10) / 30
                fit = max(1, int((args.budget_min * 60 - (time.time() - t0)) / (per_step * steps_per_epoch)))
                if fit < epochs:
                    epochs, total = fit, fit * steps_per_epoch
                    log.info("%.2fs a step: %d epochs fit the %.0f-minute budget (reproduce exactly with "
                             "--epochs %d --budget-min 0)", per_step, epochs, args.budget_min, epochs)
            if b % 50 == 0:
                log.info("  step %d/%d cosface %.3f distill %.3f (%.0fs)", b, steps_per_epoch,
                         np.mean(lcs[-50:]), np.mean(lds[-50:]), time.time() - t0)
        msg = (f"epoch {epoch + 1}/{epochs}: cosface {np.mean(lcs):.3f} distill {np.mean(lds):.3f} "
               f"({time.time() - t0:.0f}s)")
        if dev is not None and (epoch % 2 == 1 or epoch == epochs - 1):
            g = embed_keras(model, dev["clean"])
            m = embed_keras(model, dev["masked"])
            r = summary(*cross_scores(m, g, dev["ids"]))
            msg += f" | dev masked-vs-unmasked AUC {r['auc']:.4f} TAR@1e-2 {r['tar_1e-2']:.3f}"
        log.info(msg)
        epoch += 1
    return model


def combine(members: list):  # noqa: ANN001, ANN201
    """One Keras model whose output is the sum of its members' unit embeddings: an ensemble of
    students trained alike from different seeds, exported as one graph (they share the dlib
    space they were distilled toward, so their sum needs no alignment)."""
    import keras

    if len(members) == 1:
        return members[0]
    inp = keras.Input(members[0].input_shape[1:], name="eye_crop")
    for k, m in enumerate(members):
        m.name = f"member_{k}"   # all were built as "eye_embedder"; a graph needs unique names
    outs = [keras.layers.UnitNormalization(name=f"unit_{k}")(m(inp, training=False))
            for k, m in enumerate(members)]
    return keras.Model(inp, keras.layers.Add(name="ensemble")(outs), name="eye_embedder_ensemble")


def embed_keras(model, crops: np.ndarray) -> np.ndarray:  # noqa: ANN001
    out = []
    for i in range(0, len(crops), 256):
        x = (crops[i:i + 256].astype(np.float32) - MEAN) / STD
        out.append(np.asarray(model(x, training=False)))
    e = np.concatenate(out)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


# ---------------------------------------------------------------- export

def export(model, out: Path, rep: np.ndarray) -> dict[str, Path]:  # noqa: ANN001
    """TFLite float (float16 weights, float32 arithmetic) and int8 (integer weights and activations,
    float input/output) of the model with an L2-normalisation on top, via a SavedModel (converting a
    concrete function directly leaves resource variables that int8 calibration cannot read)."""
    import tempfile

    import tensorflow as tf
    import keras

    inp = keras.Input(model.input_shape[1:], name="eye_crop")
    norm = keras.layers.UnitNormalization(name="l2")(model(inp, training=False))
    serving = keras.Model(inp, norm)
    files = {}
    with tempfile.TemporaryDirectory() as tmp:
        saved = str(Path(tmp) / "saved_model")
        serving.export(saved, format="tf_saved_model", verbose=False)
        for kind in ("float", "int8"):
            conv = tf.lite.TFLiteConverter.from_saved_model(saved)
            if kind == "float":   # float16 weights, float32 arithmetic: half the file, same answers
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
                conv.target_spec.supported_types = [tf.float16]
            if kind == "int8":
                conv.optimizations = [tf.lite.Optimize.DEFAULT]

                def gen():
                    for c in rep:
                        yield [((c[None].astype(np.float32) - MEAN) / STD)]
                conv.representative_dataset = gen
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                conv.inference_input_type = tf.float32
                conv.inference_output_type = tf.float32
            path = out / f"eye_embedder_{kind}.tflite"
            path.write_bytes(conv.convert())
            files[kind] = path
            log.info("wrote %s (%.0f kB)", path, path.stat().st_size / 1024)
    return files


def tflite_embed(path: Path, crops: np.ndarray, mirror_average: bool = False, batch: int = 256) -> np.ndarray:
    """Unit embeddings of uint8 crops by a TFLite file; ``mirror_average`` as edge/embed.py does it.

    Batched (the exported input has a free batch dimension): the same numbers as one crop at a time,
    about 15x faster here."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf
        Interpreter = tf.lite.Interpreter
    it = Interpreter(model_path=str(path), num_threads=2)
    i_in, i_out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    it.resize_tensor_input(i_in, (batch,) + crops.shape[1:])
    it.allocate_tensors()

    def run(x: np.ndarray) -> np.ndarray:
        out = np.zeros((len(x), EMB_DIM), np.float32)
        for k in range(0, len(x), batch):
            part = (x[k:k + batch].astype(np.float32) - MEAN) / STD
            if len(part) < batch:   # the last, short batch: pad (rows are independent)
                part = np.concatenate([part, np.zeros((batch - len(part),) + part.shape[1:], np.float32)])
            it.set_tensor(i_in, part)
            it.invoke()
            out[k:k + batch] = it.get_tensor(i_out)[:len(x) - k]
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    e = run(crops)
    if mirror_average:
        e = e + run(crops[:, :, ::-1])
        e /= np.linalg.norm(e, axis=1, keepdims=True)
    return e


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description="train, export, calibrate and evaluate the eye embedder")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=ROOT / "models")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "maskgate-embedder",
                    help="cache for landmarks and crops (never inside the repository)")
    ap.add_argument("--runtime-python", default=str(ROOT / ".venv" / "bin" / "python"),
                    help="an interpreter with the gate installed (MediaPipe), for the landmarks")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--budget-min", type=float, default=0.0,
                    help="if > 0, fewer epochs when the measured speed would overrun this many minutes")
    ap.add_argument("--aug", type=int, default=16, help="augmented crops per training image (half masked)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--channels", default="24,44,44,90,90,180,180",
                    help="the student's seven 3x3 layers (the shipped width; 16,32,32,64,64,128,128, "
                         "the earlier releases', learnt no more from the three teachers than from one)")
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--distill", type=float, default=8.0, help="weight of the distillation loss")
    ap.add_argument("--cosface", type=float, default=1.0,
                    help="weight of the CosFace identity loss (0.25 with --ensemble-weight 16: no change)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--teacher-steps", type=int, default=1600,
                    help="steps (batch 64, each crop at most once) of fine-tuning dlib's network on eye "
                         "crops (the eye teacher); 0: no eye teacher")
    ap.add_argument("--teacher-lr", type=float, default=1.5e-4)
    ap.add_argument("--teachers", type=int, default=3,
                    help="eye teachers fine-tuned alike from seeds SEED, SEED+1, ...; the students learn "
                         "their summed embedding (one teacher of 800 steps at 3e-4 taught the earlier "
                         "release: models/MODEL_CARD.md)")
    ap.add_argument("--ensemble", type=Path, nargs="+", default=[],
                    help="output folders of earlier runs: learn their summed embedding of each crop "
                         "(instead of the eye teacher's)")
    ap.add_argument("--ensemble-weight", type=float, default=8.0,
                    help="weight of the loss toward the eye teacher's (or the ensemble's) embedding")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-eval", action="store_true", help="skip the final evaluation report")
    ap.add_argument("--members", type=int, default=2,
                    help="students trained alike with seeds SEED, SEED+1, ...; the model is their ensemble")
    ap.add_argument("--from-keras", type=Path, nargs="+",
                    help="export/calibrate/evaluate these trained .keras members instead of training")
    ap.add_argument("--recalibrate", action="store_true",
                    help="no training or export: new thresholds and manifest for the TFLite files in --out")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    np.random.seed(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)

    lm = ensure_landmarks(args.data, args.work, args.runtime_python)
    sp = splits(args.data, lm["paths"])
    held = sp["dev"] | sp["test"]
    train_idx, dev_idx = [], []
    for i, rel in enumerate(lm["paths"]):
        if not lm["ok"][i] or rel.startswith("gt_faces/"):
            continue
        who = D.identity_of(rel)
        if rel.startswith("lfw/") and who in sp["dev"]:
            dev_idx.append(i)
        elif who not in held:
            train_idx.append(i)
    rels = [lm["paths"][i] for i in train_idx]
    people = sorted({D.identity_of(r) for r in rels})
    label = {p: k for k, p in enumerate(people)}
    y = np.array([label[D.identity_of(r)] for r in rels], np.int32)
    log.info("train: %d images of %d people (LFW outside folds 5-10, and AT&T); dev: %d images",
             len(rels), len(people), len(dev_idx))

    cache = args.work / f"crops_aug{args.aug}.npz"
    if cache.exists():
        z = np.load(cache)
        X, dev_clean, dev_masked = z["X"], z["dev_clean"], z["dev_masked"]
    else:
        t0 = time.time()
        _, _, X, _ = make_crops(args.data, rels, lm["landmarks"][train_idx], args.aug, args.workers)
        dev_clean, dev_masked, _, _ = make_crops(args.data, [lm["paths"][i] for i in dev_idx],
                                                 lm["landmarks"][dev_idx], 0, args.workers)
        np.savez(cache, X=X, dev_clean=dev_clean, dev_masked=dev_masked)
        log.info("crops made in %.0fs: %s", time.time() - t0, X.shape)
    T, has_t, t_mean = teacher_targets(args.data, rels)
    dev_ids = np.array([D.identity_of(lm["paths"][i]) for i in dev_idx])
    dev = {"clean": dev_clean, "masked": dev_masked, "ids": dev_ids}

    if args.recalibrate:   # the TFLite files already in --out: new thresholds and manifest only
        old = tomllib.loads((args.out / "manifest.toml").read_text())
        files = {k: args.out / v["file"] for k, v in old["models"].items()}
        thresholds, dev_report = calibrate(files, dev)
        write_manifest(args.out, files, thresholds, old["default"], args)
        (args.work / "recalibrate_report.json").write_text(json.dumps({"dev": dev_report}, indent=2))
        return evaluate(args)
    if args.from_keras:
        import keras

        members = [keras.models.load_model(p) for p in args.from_keras]
        log.info("skipping training: exporting %s", " + ".join(map(str, args.from_keras)))
    else:
        import tensorflow as tf

        # once, for the teacher and every student: TensorFlow refuses a change once it is running
        tf.config.threading.set_intra_op_parallelism_threads(args.workers)
        tf.config.threading.set_inter_op_parallelism_threads(2)
        E = None
        if args.ensemble:
            E = ensemble_targets(args.ensemble, X, args.work)
        elif args.teacher_steps > 0:
            E = embedder_teacher.summed_targets(args, X, T, has_t, y, len(people), t_mean, dev, args.work)
        members = []
        for seed in range(args.seed, args.seed + args.members):
            members.append(train(args, X, T, has_t, y, len(people), dev, seed, E))
            members[-1].save(args.work / f"eye_embedder_seed{seed}.keras")
    model = combine(members)

    rep = X[np.random.default_rng(args.seed).choice(len(X), 300, replace=False), 0]
    files = export(model, args.out, rep)
    ref = embed_keras(model, np.concatenate([dev_clean[:200], dev_masked[:200]]))
    agree = {}
    for kind, path in files.items():
        e = tflite_embed(path, np.concatenate([dev_clean[:200], dev_masked[:200]]))
        cos = np.sum(e * ref, axis=1)
        agree[kind] = {"mean": float(cos.mean()), "min": float(cos.min())}
        log.info("TFLite %s vs Keras on 400 dev crops: cosine mean %.5f min %.5f", kind, cos.mean(), cos.min())
    if agree["float"]["min"] <= 0.99:
        raise SystemExit("TFLite float model disagrees with Keras (cosine <= 0.99): export is broken")

    thresholds, dev_report = calibrate(files, dev)
    default = "int8" if agree["int8"]["min"] > 0.97 and (
        dev_report["int8"]["masked_vs_unmasked"]["tar_1e-3"]
        >= dev_report["float"]["masked_vs_unmasked"]["tar_1e-3"] - 0.01) else "float"
    write_manifest(args.out, files, thresholds, default, args)
    (args.work / "train_report.json").write_text(json.dumps(
        {"agreement": agree, "dev": dev_report, "default": default, "train_images": len(rels),
         "train_people": len(people), "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))
    log.info("default model: %s", default)
    return evaluate(args)


def calibrate(files: dict[str, Path], dev: dict) -> tuple[dict[str, dict[float, float]], dict]:
    """Thresholds at each of TAIL_FARS on the development people, per model, over the settings a
    gate meets (unmasked vs unmasked and masked vs unmasked), embedding exactly as the gate does.
    FAR 1e-3 is the model's threshold; the rarer rates let the gate raise it as more people are
    enrolled (edge.match.threshold_for). About 1.1 M impostor pairs: FAR 1e-5 rests on ~11 of them."""
    thresholds, report = {}, {}
    for kind, path in files.items():
        g = tflite_embed(path, dev["clean"], MIRROR_AVERAGE)
        m = tflite_embed(path, dev["masked"], MIRROR_AVERAGE)
        imp = np.concatenate([cross_scores(g, g, dev["ids"], same_set=True)[1],
                              cross_scores(m, g, dev["ids"])[1]])
        thresholds[kind] = {far: far_threshold(imp, far) for far in TAIL_FARS}
        report[kind] = {"masked_vs_unmasked": summary(*cross_scores(m, g, dev["ids"])),
                        "impostor_pairs": int(len(imp)), "threshold_far_1e-3": thresholds[kind][1e-3],
                        "tail": {f"{far:g}": t for far, t in thresholds[kind].items()}}
        log.info("%s: threshold %.4f at FAR 1e-3 on %d dev impostor pairs (%s)", kind, thresholds[kind][1e-3],
                 len(imp), ", ".join(f"{t:.4f} at {far:g}" for far, t in thresholds[kind].items()))
    return thresholds, report


def evaluate(args: argparse.Namespace) -> int:
    if not args.no_eval:
        subprocess.run([sys.executable, str(HERE / "eval_embedder.py"), "--data", str(args.data),
                        "--models", str(args.out), "--work", str(args.work)], check=True)
    return 0


def write_manifest(out: Path, files: dict[str, Path], thresholds: dict[str, dict[float, float]], default: str,
                   args: argparse.Namespace) -> None:
    lines = [
        "# The eye-region embedder. embed.py refuses a model file whose sha256 differs from this.",
        "# Written by models/training/train_embedder.py; see MODEL_CARD.md.",
        f'default = "{default}"',
        "",
        "[input]",
        f"height = {D.eyecrop.CROP_H}",
        f"width = {D.eyecrop.CROP_W}",
        'channels = "RGB"',
        f"mean = {MEAN}",
        f"std = {STD}",
        f"mirror_average = {str(MIRROR_AVERAGE).lower()}  # embedding = normalised sum over the crop and its mirror",
        "",
        "[output]",
        f"dim = {EMB_DIM}",
        'normalised = "L2"',
    ]
    for kind, path in files.items():
        lines += ["", f"[models.{kind}]", f'file = "{path.name}"', f'sha256 = "{sha256(path)}"',
                  f"bytes = {path.stat().st_size}",
                  f"threshold = {thresholds[kind][1e-3]:.4f}  # cosine; FAR 1e-3 on LFW View 2 fold 5 people",
                  "# the same people's false-accept rate of one comparison at each threshold: the gate",
                  "# raises its threshold along this as more people are enrolled (edge/match.py)",
                  "tail_far = [" + ", ".join(f"{far:g}" for far in thresholds[kind]) + "]",
                  "tail_threshold = [" + ", ".join(f"{t:.4f}" for t in thresholds[kind].values()) + "]"]
    (out / "manifest.toml").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
