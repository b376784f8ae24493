#!/usr/bin/env python3
"""The whole face next to the eye region: chip template, mask check, fusion, and the figures.

Runs with the gate's own venv and the gate's own code (Landmarker landmarks cached by
``face_landmarks.py``, ``edge.embed.Embedder`` / ``FaceEmbedder``, ``edge.vision.mask``):

    .venv/bin/python models/training/face_landmarks.py --out /tmp/face-work/landmarks.npz
    .venv/bin/python models/training/eval_face.py fit      # facecrop.TEMPLATE from dlib's LFW chips (folds 1-4)
    .venv/bin/python models/training/eval_face.py embed    # eye + face embeddings, bare and synthetic-masked (cached)
    .venv/bin/python models/training/eval_face.py report [--write-manifest] [--dlib /tmp/face-work/dlib_eval.npz]

What each step fits, and on what (nothing is fitted on a test set):
- the chip template: LFW View 2 folds 1-4, against dlib's own 5-point chips (teacher file);
- the mask check: LFW folds 1-4 photos, bare and with a synthetic mask; threshold on fold 5
  (synthetic); then *checked* on realmask_dev's real masks (evaluation only);
- the fusion weight, its calibration and the fused threshold/tail: LFW fold 5 (development);
- figures: LFW folds 6-10, Georgia Tech, realmask_dev (bare-bare; masked probe vs bare gallery).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

import embedder_data as D
from embedder_metrics import far_threshold, summary

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

log = logging.getLogger("eval_face")
TRAIN_FOLDS, DEV_FOLD, TEST_FOLDS = (0, 1, 2, 3), 4, (5, 6, 7, 8, 9)
# dlib's 5-point template (dlib/image_transforms/interpolation.h), in chip px for size 150, padding 0.25
DLIB5 = (np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                   [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                   [0.4901123135679, 0.6277975316475]]) + 0.25) / 1.5 * 150
FARS = (1e-3, 3e-4, 1e-4, 3e-5, 1e-5)


def fold_images(data: Path, folds: tuple[int, ...]) -> set[str]:
    all_folds = D.lfw_folds(data)
    return {D.lfw_rel(n, k) for f in folds for a, i, b, j in all_folds[f] for n, k in ((a, i), (b, j))}


def load_landmarks(path: Path) -> dict:
    z = np.load(path)
    return {"paths": [str(p) for p in z["paths"]], "lm": z["landmarks"], "ok": z["ok"], "pad": z["pad"]}


def read_padded(data: Path, rel: str, pad: int) -> np.ndarray:
    img = D.read_rgb(data / rel)
    return np.pad(img, ((pad, pad), (pad, pad), (0, 0))) if pad else img


# ---------------------------------------------------------------- fit: the chip template

def fit(a: argparse.Namespace) -> int:
    from edge.vision import facecrop

    L = load_landmarks(a.landmarks)
    t = np.load(a.data / "teacher" / "lfw_dlib128.npz")
    row = {"lfw/images_deepfunneled/" + str(p): i for i, p in enumerate(t["paths"])}

    def rows(folds: tuple[int, ...]) -> list[tuple[int, int]]:
        imgs = fold_images(a.data, folds)
        return [(i, row[p]) for i, p in enumerate(L["paths"])
                if p in imgs and L["ok"][i] and not t["det_fallback"][row[p]]]

    pts = list(facecrop.POINTS)
    chip_pts = []
    for i, k in rows(TRAIN_FOLDS):
        m = facecrop.similarity(t["landmarks5"][k].astype(np.float64), DLIB5)
        p = L["lm"][i, pts, :2].astype(np.float64) - L["pad"][i]
        chip_pts.append(p @ m[:, :2].T + m[:, 2])
    tmpl = np.mean(chip_pts, axis=0)
    print("TEMPLATE = np.array([\n" + "".join(f"    [{x:.2f}, {y:.2f}],\n" for x, y in tmpl) + "])")
    # Development check (fold 5): where dlib's 5 points land in the gate's chip, against dlib's template.
    err = []
    for i, k in rows((DEV_FOLD,)):
        m = facecrop.similarity(L["lm"][i, pts, :2].astype(np.float64) - L["pad"][i], tmpl)
        q = t["landmarks5"][k] @ m[:, :2].T + m[:, 2]
        err.append(np.linalg.norm(q - DLIB5, axis=1).mean())
    print(f"fold 5: dlib's landmarks in the gate's chip are {np.mean(err):.2f} px (median "
          f"{np.median(err):.2f}) from where dlib's chip puts them, over {len(err)} images")
    return 0


# ---------------------------------------------------------------- embed: everything, cached

def embed(a: argparse.Namespace) -> int:
    from edge.config import EmbedConfig
    from edge.embed import Embedder, FaceEmbedder
    from edge.vision import eyecrop, facecrop, mask

    L = load_landmarks(a.landmarks)
    masked_too = fold_images(a.data, TRAIN_FOLDS[:2] + (DEV_FOLD,)) | {p for p in L["paths"] if p.startswith("gt_faces/")}
    eye_m, face_m = Embedder(EmbedConfig()), FaceEmbedder(EmbedConfig())
    bank = D.MaskBank(a.data)
    n = len(L["paths"])
    out = {k: np.zeros((n, 128), np.float32) for k in ("eye", "face", "eye_m", "face_m")}
    out |= {k: np.zeros((n, mask.N_COLOUR), np.float32) for k in ("col", "col_m")}
    out |= {"ok": np.zeros(n, bool), "ok_m": np.zeros(n, bool)}
    t0 = time.time()
    k, nshards = map(int, a.shard.split("/"))
    for i, rel in enumerate(L["paths"]):
        if not L["ok"][i] or i % nshards != k:
            continue
        img, lm = read_padded(a.data, rel, int(L["pad"][i])), L["lm"][i]
        versions = [("", img)]
        if rel in masked_too:
            versions.append(("_m", bank.paint(img, lm, np.random.default_rng(D.seed_of(rel)))))
        for suffix, im in versions:
            ec, fc = eyecrop.eye_crop(im, lm), facecrop.face_crop(im, lm)
            if ec is None or fc is None:
                continue
            out["eye" + suffix][i] = eye_m.embed_crop(ec)
            out["face" + suffix][i] = face_m.embed_crop(fc)
            out["col" + suffix][i] = mask.colour_features(fc)
            out["ok" + suffix][i] = True
        if i % 500 == 0:
            log.info("%d/%d (%.0fs)", i, n, time.time() - t0)
    np.savez(a.work / (f"face_eval_{k}.npz" if nshards > 1 else "face_eval.npz"), paths=np.array(L["paths"]), **out)
    log.info("embedded %d bare, %d masked images", out["ok"].sum(), out["ok_m"].sum())
    return 0


# ---------------------------------------------------------------- report

def logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 30) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method (standardised inside; raw-scale out)."""
    mu, sd = X.mean(0), X.std(0) + 1e-6
    Z = np.hstack([(X - mu) / sd, np.ones((len(X), 1))])
    w = np.zeros(Z.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-Z @ w))
        g = Z.T @ (p - y) / len(y) + l2 * np.r_[w[:-1], 0]
        H = (Z * (p * (1 - p))[:, None]).T @ Z / len(y) + l2 * np.diag(np.r_[np.ones(len(w) - 1), 0])
        w -= np.linalg.solve(H, g)
    return w[:-1] / sd, float(w[-1] - (w[:-1] / sd) @ mu)


def pair_sets(paths: list[str], ok: np.ndarray, data: Path) -> dict:
    """Per test set: image indices, identities, and the genuine pairs (LFW: pairs.txt; others: all)."""
    index = {p: i for i, p in enumerate(paths)}
    sets = {}
    for name, folds in (("lfw_dev", (DEV_FOLD,)), ("lfw_test", TEST_FOLDS)):
        all_folds = D.lfw_folds(data)
        rels, gen = [], []
        pos: dict[str, int] = {}
        for f in folds:
            for a_, na, b_, nb in all_folds[f]:
                ra, rb = D.lfw_rel(a_, na), D.lfw_rel(b_, nb)
                if not (ok[index[ra]] and ok[index[rb]]):
                    continue
                for r in (ra, rb):
                    pos.setdefault(r, len(rels)) == len(rels) and rels.append(r)
                if a_ == b_:
                    gen.append((pos[ra], pos[rb]))
        sets[name] = {"idx": np.array([index[r] for r in rels]),
                      "ids": np.array([D.identity_of(r) for r in rels]), "gen": np.array(gen)}
    gt = [i for i, p in enumerate(paths) if p.startswith("gt_faces/") and ok[i]]
    sets["gt"] = {"idx": np.array(gt), "ids": np.array([D.identity_of(paths[i]) for i in gt]), "gen": None}
    rm = [i for i, p in enumerate(paths) if p.startswith("realmask_dev/") and ok[i]]
    sets["realmask"] = {"idx": np.array(rm), "ids": np.array([paths[i].split("/")[1] for i in rm]),
                        "masked": np.array(["/mask_" in paths[i] for i in rm]), "gen": None}
    return sets


def scores(P: np.ndarray, G: np.ndarray, ids_p: np.ndarray, ids_g: np.ndarray, gen: np.ndarray | None,
           same: bool) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) cosines; ``same``: P and G are one set (each unordered pair once)."""
    s = P @ G.T
    diff = ids_p[:, None] != ids_g[None, :]
    if same:
        up = np.triu(np.ones(s.shape, bool), 1)
        g = s[gen[:, 0], gen[:, 1]] if gen is not None else s[~diff & up]
        return g, s[diff & up]
    return s[~diff], s[diff]


class Fusion:
    """A weighted sum of impostor-normalised scores, put back on the eye score's scale."""

    def __init__(self, eye_imp: np.ndarray, face_imp: np.ndarray, w_face: float) -> None:
        self.me, self.se = float(eye_imp.mean()), float(eye_imp.std())
        self.mf, self.sf = float(face_imp.mean()), float(face_imp.std())
        self.w = w_face
        z = (1 - w_face) * (eye_imp - self.me) / self.se + w_face * (face_imp - self.mf) / self.sf
        self.sz = float(z.std())

    def __call__(self, eye: np.ndarray, face: np.ndarray) -> np.ndarray:
        z = (1 - self.w) * (eye - self.me) / self.se + self.w * (face - self.mf) / self.sf
        return self.me + self.se * z / self.sz

    def table(self) -> dict:
        """The manifest's [face.fusion] coefficients: fused = a * eye + b * face + c."""
        k = self.se / self.sz
        a, b = k * (1 - self.w) / self.se, k * self.w / self.sf
        return {"eye_weight": a, "face_weight": b, "offset": self.me - a * self.me - b * self.mf}


def load_embeddings(work: Path) -> dict:
    """``embed``'s output, its shards (``--shard k/n``) put together."""
    if (work / "face_eval.npz").exists():
        return dict(np.load(work / "face_eval.npz"))
    parts = [dict(np.load(p)) for p in sorted(work.glob("face_eval_*.npz"))]
    out = {"paths": parts[0]["paths"]}
    for key in parts[0]:
        if key != "paths":
            out[key] = parts[0][key].copy()
            for p in parts[1:]:
                has = p["ok_m" if key.endswith("_m") else "ok"]
                out[key][has] = p[key][has]
    return out


def report(a: argparse.Namespace) -> int:
    z = load_embeddings(a.work)
    paths = [str(p) for p in z["paths"]]
    ok = z["ok"]
    E, F = z["eye"], z["face"]
    norm = np.linalg.norm(F, axis=1, keepdims=True)
    F = F / np.maximum(norm, 1e-12)
    sets = pair_sets(paths, ok, a.data)
    res: dict = {}

    # 1. Agreement of the whole path (MediaPipe chip, TFLite) with dlib's descriptors on LFW test folds.
    t = np.load(a.data / "teacher" / "lfw_dlib128.npz")
    row = {"lfw/images_deepfunneled/" + str(p): i for i, p in enumerate(t["paths"])}
    ti = sets["lfw_test"]["idx"]
    T = t["emb"][[row[paths[i]] for i in ti]]
    T = T / np.linalg.norm(T, axis=1, keepdims=True)
    cos = (F[ti] * T).sum(1)
    res["agreement_lfw_test"] = {"images": len(ti), "cos_mean": float(cos.mean()),
                                 "cos_median": float(np.median(cos)), "cos_p05": float(np.quantile(cos, 0.05)),
                                 "share_above_0.99": float(np.mean(cos > 0.99))}

    # 2. Mask check: fit on LFW folds 1-2 (synthetic), threshold on fold 5, check on realmask_dev.
    Fm = z["face_m"] / np.maximum(np.linalg.norm(z["face_m"], axis=1, keepdims=True), 1e-12)
    X = np.hstack([z["col"], F]); Xm = np.hstack([z["col_m"], Fm])
    tr = sorted(i for i in (paths.index(p) for p in fold_images(a.data, TRAIN_FOLDS[:2]))
                if ok[i] and z["ok_m"][i])
    dv = sorted(set(sets["lfw_dev"]["idx"]) & set(np.flatnonzero(z["ok_m"])))
    dv = [i for i in dv if i not in set(tr)]
    w, b = logistic(np.vstack([X[tr], Xm[tr]]), np.r_[np.zeros(len(tr)), np.ones(len(tr))])
    s_bare, s_mask = X[dv] @ w + b, Xm[dv] @ w + b
    # threshold: the best balanced accuracy on the development photos (fold 5, synthetic masks). A bare
    # face called covered only loses the face score; a covered face called bare is judged mostly by the
    # face of a mask, which costs that person the eye score's TAR: both errors cost, neither lets in.
    cand = np.sort(np.r_[s_bare, s_mask])
    bal = [(np.mean(s_bare <= c) + np.mean(s_mask > c)) / 2 for c in cand]
    thr = float(cand[int(np.argmax(bal))])
    rm = sets["realmask"]
    r_s = X[rm["idx"]] @ w + b
    res["mask_check"] = {
        "fit": f"LFW folds 1-2, {len(tr)} photos bare + synthetic-masked", "threshold": thr,
        "dev_synthetic": {"bare_called_bare": float(np.mean(s_bare <= thr)),
                          "masked_called_masked": float(np.mean(s_mask > thr))},
        "realmask_dev": {"bare_called_bare": float(np.mean(r_s[~rm["masked"]] <= thr)),
                         "masked_called_masked": float(np.mean(r_s[rm["masked"]] > thr)),
                         "accuracy": float(np.mean((r_s > thr) == rm["masked"])),
                         "bare": int((~rm["masked"]).sum()), "masked": int(rm["masked"].sum())}}
    covered = X @ w + b > thr

    # 3. Fusion on LFW fold 5: the face weight with the best TAR at FAR 1e-3 (then 1e-2).
    d = sets["lfw_dev"]
    ge, ie = scores(E[d["idx"]], E[d["idx"]], d["ids"], d["ids"], d["gen"], True)
    gf, if_ = scores(F[d["idx"]], F[d["idx"]], d["ids"], d["ids"], d["gen"], True)
    best = None
    for wf in np.linspace(0, 1, 21):
        fu = Fusion(ie, if_, wf)
        r = summary(fu(ge, gf), fu(ie, if_))
        key = (round(r["tar_1e-3"], 4), round(r["tar_1e-2"], 4), r["auc"])
        log.info("fold 5: face weight %.2f: AUC %.4f TAR@1e-2 %.3f @1e-3 %.3f", wf, r["auc"], r["tar_1e-2"], r["tar_1e-3"])
        if best is None or key > best[0]:
            best = (key, wf)
    fusion = Fusion(ie, if_, best[1])
    fi = fusion(ie, if_)
    face_thr = [far_threshold(if_, f) for f in FARS]
    fused_thr = [far_threshold(fi, f) for f in FARS]
    res["fusion"] = {"face_weight_normalised": best[1], **fusion.table(),
                     "threshold": fused_thr[0], "tail_far": list(FARS), "tail_threshold": fused_thr,
                     "face_threshold": face_thr[0], "face_tail_threshold": face_thr}

    # 4. Figures on the test sets: eye, face, fused (bare-bare); masked probe vs bare gallery. The gate
    # rule judges an eye-only comparison against the eye threshold and a fused one against the fused
    # threshold: pooled here (as in edge.fusion.search) with eye scores shifted by their difference.
    from edge.embed import load_spec

    shift = res["fusion"]["threshold"] - load_spec().threshold
    eye_only = lambda x: x + shift  # noqa: E731
    dl = np.load(a.dlib) if a.dlib and a.dlib.exists() else None
    dl_row = {str(p): i for i, p in enumerate(dl["paths"])} if dl is not None else {}
    figs = {}
    for name in ("lfw_test", "gt", "realmask"):
        s = sets[name]
        idx, ids = s["idx"], s["ids"]
        bare = ~s["masked"] if "masked" in s else np.ones(len(idx), bool)
        bi, bids = idx[bare], ids[bare]
        ge, ie = scores(E[bi], E[bi], bids, bids, s["gen"], True)
        gf, if_ = scores(F[bi], F[bi], bids, bids, s["gen"], True)
        row_ = {"eye": summary(ge, ie), "face": summary(gf, if_), "fused": summary(fusion(ge, gf), fusion(ie, if_))}
        # the gate's rule: fused only where the probe's lower face was judged visible
        cov = covered[bi]
        use = ~(cov[:, None] | cov[None, :])   # either photo judged covered: eye only (enrolment needs bare)
        up = np.triu(np.ones((len(bi), len(bi)), bool), 1)
        same = bids[:, None] == bids[None, :]
        S = np.where(use, fusion(E[bi] @ E[bi].T, F[bi] @ F[bi].T), eye_only(E[bi] @ E[bi].T))
        g_rule = S[s["gen"][:, 0], s["gen"][:, 1]] if s["gen"] is not None else S[same & up]
        row_["gate_rule"] = summary(g_rule, S[~same & up])
        if name == "lfw_test":
            T_ = t["emb"][[row[paths[i]] for i in bi]]
        elif dl is not None and all(paths[i] in dl_row for i in bi):
            T_ = dl["emb"][[dl_row[paths[i]] for i in bi]]
        else:
            T_ = None
        if T_ is not None:
            T_ = T_ / np.linalg.norm(T_, axis=1, keepdims=True)
            row_["dlib"] = summary(*scores(T_, T_, bids, bids, s["gen"], True))
        if "masked" in s:   # real masks: masked probe vs bare gallery, eye only vs the gate's rule
            mi = idx[s["masked"]]
            ge, ie = scores(E[mi], E[bi], ids[s["masked"]], bids, None, False)
            row_["masked_probe_eye"] = summary(ge, ie)
            Sm = np.where(covered[mi][:, None], eye_only(E[mi] @ E[bi].T), fusion(E[mi] @ E[bi].T, F[mi] @ F[bi].T))
            dm = ids[s["masked"]][:, None] != bids[None, :]
            row_["masked_probe_gate_rule"] = summary(Sm[~dm], Sm[dm])
        figs[name] = row_
    # synthetic masks on Georgia Tech: masked probe vs bare gallery, eye only vs the gate's rule
    s = sets["gt"]
    gi = np.array([i for i in s["idx"] if z["ok_m"][i]])
    gids = np.array([D.identity_of(paths[i]) for i in gi])
    Em = z["eye_m"][gi]
    same = gids[:, None] == gids[None, :]
    off = ~np.eye(len(gi), dtype=bool)
    Se = Em @ E[gi].T
    cov_m = (Xm[gi] @ w + b) > thr
    Sr = np.where(cov_m[:, None], eye_only(Se), fusion(Se, Fm[gi] @ F[gi].T))
    figs["gt"]["masked_probe_eye"] = summary(Se[same & off], Se[~same])
    figs["gt"]["masked_probe_gate_rule"] = summary(Sr[same & off], Sr[~same])
    figs["gt"]["synthetic_masks_called_masked"] = float(cov_m.mean())
    res["figures"] = figs
    (a.work / "face_report.json").write_text(json.dumps(res, indent=1))
    if a.json:
        print(json.dumps(res))
    else:
        print_table(res)
    if a.write_manifest:
        write_manifest(res, w, b, thr)
    return 0


def print_table(res: dict) -> None:
    """The figures as markdown tables (AUC, TAR at FAR 1e-2 and 1e-3, genuine/impostor pairs)."""
    ag, mc = res["agreement_lfw_test"], res["mask_check"]
    print(f"agreement with dlib's descriptors, LFW folds 6-10 ({ag['images']} images, the gate's chip "
          f"from MediaPipe): cosine mean {ag['cos_mean']:.4f}, median {ag['cos_median']:.4f}, "
          f"5th percentile {ag['cos_p05']:.4f}, {ag['share_above_0.99']:.1%} above 0.99")
    for name, r in (("synthetic masks, LFW fold 5", mc["dev_synthetic"]), ("realmask_dev (real masks)", mc["realmask_dev"])):
        print(f"mask check on {name}: bare called bare {r['bare_called_bare']:.1%}, masked called masked "
              f"{r['masked_called_masked']:.1%}" + (f", accuracy {r['accuracy']:.1%}" if "accuracy" in r else ""))
    fz = res["fusion"]
    print(f"fusion (LFW fold 5): fused = {fz['eye_weight']:.3f} eye + {fz['face_weight']:.3f} face + "
          f"{fz['offset']:.3f}; threshold {fz['threshold']:.4f} (FAR 1e-3)")
    labels = {"eye": "eye alone", "face": "face alone (gate's chip, TFLite)", "dlib": "dlib full face (dlib's pipeline)",
              "fused": "fused (both always)", "gate_rule": "gate rule (fused unless judged covered)",
              "masked_probe_eye": "masked probe vs bare: eye alone (today)",
              "masked_probe_gate_rule": "masked probe vs bare: gate rule"}
    for name, rows in res["figures"].items():
        print(f"\n{name}\n| | AUC | TAR@1e-2 | TAR@1e-3 | genuine / impostor |\n|---|---|---|---|---|")
        for key, label in labels.items():
            if key in rows:
                r = rows[key]
                print(f"| {label} | {r['auc']:.4f} | {r['tar_1e-2']:.3f} | {r['tar_1e-3']:.3f} | "
                      f"{r['genuine']} / {r['impostor']} |")


def write_manifest(res: dict, w: np.ndarray, b: float, thr: float) -> None:
    """The [face] tables of models/manifest.toml: model file, calibration, fusion, mask check."""
    import hashlib

    mdir = ROOT / "models"
    path = mdir / "face_embedder_int8.tflite"
    text = (mdir / "manifest.toml").read_text()
    text = text.split("\n# ---- the whole-face embedder")[0].rstrip("\n")
    f, u = res["fusion"], res["fusion"]
    fmt = lambda xs: "[" + ", ".join(f"{x:.4g}" for x in xs) + "]"  # noqa: E731
    text += f"""

# ---- the whole-face embedder (dlib's face ResNet, CC0; models/training/face_export.py, models/training/eval_face.py)
# Its own table, so the eye templates' embedding space (edge.embed.space_of) does not change.
[face]
default = "int8"

[face.input]
height = 150
width = 150
channels = "RGB"
mean = 0.0   # dlib's per-channel mean and /256 are inside the graph: give it pixels
std = 1.0

[face.output]
dim = 128
normalised = "L2"

[face.models.int8]
file = "{path.name}"
sha256 = "{hashlib.sha256(path.read_bytes()).hexdigest()}"
bytes = {path.stat().st_size}
threshold = {u['face_threshold']:.4f}  # cosine of the face alone; FAR 1e-3 on LFW View 2 fold 5 people
tail_far = {fmt(FARS)}
tail_threshold = {fmt(u['face_tail_threshold'])}

# fused = eye_weight * eye cosine + face_weight * face cosine + offset, on the eye score's scale;
# used only when the probe's lower face is visible; threshold and tail as the eye model's (fold 5)
[face.fusion]
eye_weight = {f['eye_weight']:.6f}
face_weight = {f['face_weight']:.6f}
offset = {f['offset']:.6f}
threshold = {f['threshold']:.4f}
tail_far = {fmt(FARS)}
tail_threshold = {fmt(f['tail_threshold'])}

# is the lower face covered: weights . [12 colour features, 128-D face embedding] + bias > threshold
# (edge.vision.mask); fitted on LFW folds 1-2 with synthetic masks, threshold on fold 5
[face.mask]
bias = {b:.6f}
threshold = {thr:.6f}
weights = {fmt(w)}
"""
    (mdir / "manifest.toml").write_text(text)
    log.info("wrote the [face] tables of %s", mdir / "manifest.toml")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", choices=("fit", "embed", "report"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/face-work"))
    ap.add_argument("--landmarks", type=Path, default=None, help="default: WORK/landmarks.npz")
    ap.add_argument("--dlib", type=Path, default=None,
                    help="dlib's own descriptors of Georgia Tech and realmask_dev (face_export.py --eval-dlib)")
    ap.add_argument("--write-manifest", action="store_true")
    ap.add_argument("--json", action="store_true", help="report: one JSON object instead of tables")
    ap.add_argument("--shard", default="0/1", help="embed: this process's share k/n of the images")
    a = ap.parse_args()
    a.landmarks = a.landmarks or a.work / "landmarks.npz"
    a.dlib = a.dlib or a.work / "dlib_eval.npz"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    return {"fit": fit, "embed": embed, "report": report}[a.step](a)


if __name__ == "__main__":
    sys.exit(main())
