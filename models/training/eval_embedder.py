"""Evaluate the eye embedder against the full-face dlib teacher, unmasked and with synthetic masks.

    python models/training/eval_embedder.py --data ../shared/data --models models/

LFW View 2, folds 6-10 (nobody in them, nor in fold 5, was trained on): genuine pairs are the
pairs.txt match pairs of those folds; impostor pairs are *all* cross-identity pairs among the images
those folds use (millions, so FAR 1e-3 is measured, not extrapolated). Georgia Tech faces (other
people, another camera) are a cross-dataset check with all their same/cross-identity pairs.
Three settings: unmasked vs unmasked; masked probe vs unmasked gallery (the gate's case: enrolled
bare-faced, seen masked); masked vs masked. Masks are synthetic (MaskTheFace photographs placed with
landmarks); no real-mask set exists here. The dlib teacher (the full-face baseline) is scored with
its own rule (Euclidean distance) on the same images masked with the same draw; it is slow on a small
CPU (about 0.3-1 s an image), so by default it runs on fold 10 and the student is reported on the
same fold beside it (``--teacher-folds 6,7,8,9,10`` for all).

Then the gate's own question on Georgia Tech (``open_set``): N people enrolled from 5 bare-faced
photos each, one of them seen masked, or a stranger seen masked; at the threshold the gate uses for N
people (edge.match.threshold_for) and at the model's fixed one, how often is the right person let in
and how often the stranger? Prints tables and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tomllib
from pathlib import Path

import numpy as np

from edge.embed import load_spec
from edge.match import threshold_for
import embedder_data as D
import embedder_teacher
from embedder_metrics import summary
from train_embedder import TEST_FOLDS, ensure_landmarks, make_crops, teacher_targets, tflite_embed

HERE = Path(__file__).resolve().parent

log = logging.getLogger("eval_embedder")
SETTINGS = ("unmasked", "masked_probe", "masked_both")


def pair_scores(score, g_pairs: np.ndarray, ids: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:  # noqa: ANN001
    """Genuine/impostor scores per setting. ``score(a_masked, b_masked)`` gives the full score matrix."""
    n = len(ids)
    diff = ids[:, None] != ids[None, :]
    upper = np.triu(np.ones((n, n), bool), 1)
    out = {}
    s = score(False, False)
    out["unmasked"] = (s[g_pairs[:, 0], g_pairs[:, 1]], s[diff & upper])
    s = score(True, False)    # rows masked probes, columns unmasked gallery
    out["masked_probe"] = (np.concatenate([s[g_pairs[:, 0], g_pairs[:, 1]], s[g_pairs[:, 1], g_pairs[:, 0]]]),
                           s[diff])
    s = score(True, True)
    out["masked_both"] = (s[g_pairs[:, 0], g_pairs[:, 1]], s[diff & upper])
    return out


def cosine_scorer(clean: np.ndarray, masked: np.ndarray):  # noqa: ANN201
    return lambda pm, gm: (masked if pm else clean) @ (masked if gm else clean).T


def euclid_scorer(clean: np.ndarray, masked: np.ndarray):  # noqa: ANN201
    def f(pm: bool, gm: bool) -> np.ndarray:
        a, b = (masked if pm else clean), (masked if gm else clean)
        d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
        return -np.sqrt(np.maximum(d2, 0))
    return f


def lfw_set(data: Path, lm: dict, fold_ids: tuple[int, ...]) -> dict:
    """The images of some View 2 folds, their genuine pairs (pairs.txt) and identities."""
    index = {p: i for i, p in enumerate(lm["paths"])}
    folds = D.lfw_folds(data)
    rels, pairs, missing = [], [], 0
    pos: dict[str, int] = {}
    for f in fold_ids:
        for k, (a, na, b, nb) in enumerate(folds[f]):
            ra, rb = D.lfw_rel(a, na), D.lfw_rel(b, nb)
            if not (lm["ok"][index[ra]] and lm["ok"][index[rb]]):
                missing += 1
                continue
            for r in (ra, rb):
                if r not in pos:
                    pos[r] = len(rels)
                    rels.append(r)
            if a == b:
                pairs.append((pos[ra], pos[rb]))
    return {"rels": rels, "ids": np.array([D.identity_of(r) for r in rels]), "pairs": np.array(pairs),
            "no_face_pairs": missing}


def test_sets(data: Path, lm: dict, teacher_folds: tuple[int, ...]) -> dict:
    """LFW folds 6-10 (student), the teacher's folds (both, side by side), Georgia Tech (student)."""
    index = {p: i for i, p in enumerate(lm["paths"])}
    gt = [p for p in lm["paths"] if p.startswith("gt_faces/") and lm["ok"][index[p]]]
    gt_ids = np.array([D.identity_of(r) for r in gt])
    same = (gt_ids[:, None] == gt_ids[None, :]) & np.triu(np.ones((len(gt), len(gt)), bool), 1)
    name = "lfw_fold" + "_".join(str(f + 1) for f in teacher_folds)
    return {
        "lfw": lfw_set(data, lm, TEST_FOLDS),
        name: lfw_set(data, lm, teacher_folds),
        "gt": {"rels": gt, "ids": gt_ids, "pairs": np.argwhere(same), "no_face_pairs": 0},
    }


def teacher(data: Path, work: Path, name: str, rels: list[str], lms: np.ndarray, workers: int) -> dict:
    cache = work / f"dlib_{name}.npz"
    if cache.exists():
        z = np.load(cache)
        if list(z["rels"]) == rels:
            return {"clean": z["clean"], "masked": z["masked"]}
    import embedder_dlib

    if name.startswith("lfw"):  # the unmasked LFW descriptors are the teacher file itself (same pipeline)
        z = np.load(data / "teacher" / "lfw_dlib128.npz")
        row = {str(p): i for i, p in enumerate(z["paths"])}
        clean = z["emb"][[row[r.removeprefix("lfw/images_deepfunneled/")] for r in rels]].astype(np.float32)
    else:
        log.info("dlib teacher on %d unmasked %s images", len(rels), name)
        clean = embedder_dlib.descriptors(data, rels, lms, False, workers)
    log.info("dlib teacher on %d masked %s images; slow, cached afterwards", len(rels), name)
    masked = embedder_dlib.descriptors(data, rels, lms, True, workers)
    np.savez(cache, rels=np.array(rels), clean=clean, masked=masked)
    return {"clean": clean, "masked": masked}


def load_eye_teachers(data: Path, work: Path, weights: list[Path]) -> list:
    """The fine-tuned dlib networks that taught the students (not shipped: 22 MB each), for comparison."""
    import keras

    mean = teacher_targets(data, [])[2]   # the LFW mean the teachers were trained around
    crop_hw = (D.eyecrop.CROP_H, D.eyecrop.CROP_W)
    layers = embedder_teacher.parse(embedder_teacher.dlib_xml(work))
    models = []
    for w in weights:
        models.append(embedder_teacher.eye_model(layers, mean, keras, crop_hw))
        models[-1].load_weights(w)
    return models


def open_set(clean: np.ndarray, masked: np.ndarray, ids: np.ndarray, base: float,
             tail: tuple[tuple[float, float], ...], stranger_rate: float, sizes: tuple[int, ...] = (1, 5, 10, 20, 49),
             templates: int = 5, trials: int = 2000, seed: int = 0) -> list[dict]:
    """Single masked photos against N people's bare-faced templates (best template a person, as
    edge/match.py scores them), N + 1 people drawn at random per trial: one masked probe of an
    enrolled person (right = the best match is them and reaches the threshold) and every masked
    photo of the one left out (stranger = anyone reaches it). No frame fusion, so harder than a gate."""
    rng = np.random.default_rng(seed)
    names, counts = np.unique(ids, return_counts=True)
    people = names[counts > templates]   # enrolled from some photos, seen in another
    rows = []
    for n in sizes:
        if n + 1 > len(people):
            continue
        t_n, reached = threshold_for(n, base, tail, stranger_rate)
        tally = {t: [0, 0] for t in (t_n, base)}   # right, strangers let in
        shown = 0
        for _ in range(trials):
            pick = rng.choice(people, n + 1, replace=False)
            rows_of = [rng.permutation(np.flatnonzero(ids == p)) for p in pick[1:]]
            gallery = np.concatenate([clean[r[:templates]] for r in rows_of])
            owner = np.repeat(np.arange(n), templates)   # every person in ``people`` has more photos
            k = rng.integers(n)
            probe = masked[rng.choice(rows_of[k][templates:])] @ gallery.T
            strangers = (masked[ids == pick[0]] @ gallery.T).max(axis=1)
            shown += len(strangers)
            for t, c in tally.items():
                c[0] += int(owner[probe.argmax()] == k and probe.max() >= t)
                c[1] += int((strangers >= t).sum())
        rows.append({"people": n, "threshold": round(t_n, 4), "calibrated": reached,
                     "right": tally[t_n][0] / trials, "stranger": tally[t_n][1] / shown,
                     "right_fixed": tally[base][0] / trials, "stranger_fixed": tally[base][1] / shown,
                     "fixed_threshold": base, "trials": trials, "stranger_photos": shown})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--models", type=Path, default=HERE.parents[1] / "models")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "maskgate-embedder")
    ap.add_argument("--runtime-python", default=str(HERE.parents[1] / ".venv" / "bin" / "python"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-teacher", action="store_true", help="skip the dlib baseline")
    ap.add_argument("--teacher-folds", default="10",
                    help="View 2 folds (of 6-10) to run the slow dlib baseline on, e.g. 10 or 6,7,8,9,10")
    ap.add_argument("--teacher-gt", action="store_true", help="also run dlib on the Georgia Tech faces")
    ap.add_argument("--eye-teacher", type=Path, nargs="+", default=[],
                    help="also score the eye teachers (their eye_teacher_*.weights.h5 in train_embedder's "
                         "--work; several: their summed embedding)")
    ap.add_argument("--json", type=Path, help="write the figures here (default WORK/eval_report.json)")
    ap.add_argument("--stranger-rate", type=float, default=1e-3, help="the gate's match.stranger_rate")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    a.work.mkdir(parents=True, exist_ok=True)
    manifest = tomllib.loads((a.models / "manifest.toml").read_text())
    mirror = bool(manifest["input"].get("mirror_average", False))  # embed as edge/embed.py does
    lm = ensure_landmarks(a.data, a.work, a.runtime_python)
    index = {p: i for i, p in enumerate(lm["paths"])}
    teacher_folds = tuple(int(f) - 1 for f in a.teacher_folds.split(","))
    assert set(teacher_folds) <= set(TEST_FOLDS), "the baseline is compared on reported (held-out) folds"
    sets = test_sets(a.data, lm, teacher_folds)
    eye_teachers = load_eye_teachers(a.data, a.work, a.eye_teacher)
    report: dict = {}
    for name, s in sets.items():
        lms = lm["landmarks"][[index[r] for r in s["rels"]]]
        clean, masked, _, _ = make_crops(a.data, s["rels"], lms, 0, a.workers)
        systems, embedded = {}, {}
        for kind, m in manifest["models"].items():
            path = a.models / m["file"]
            embedded[kind] = tflite_embed(path, clean, mirror), tflite_embed(path, masked, mirror)
            systems[f"eye_{kind}"] = cosine_scorer(*embedded[kind])
        if eye_teachers:
            systems["eye_teacher"] = cosine_scorer(embedder_teacher.embed_summed(eye_teachers, clean),
                                                   embedder_teacher.embed_summed(eye_teachers, masked))
        if not a.no_teacher and (name.startswith("lfw_fold") or (name == "gt" and a.teacher_gt)):
            t = teacher(a.data, a.work, name, s["rels"], lms, a.workers)
            systems["dlib_fullface"] = euclid_scorer(t["clean"], t["masked"])
        report[name] = {"images": len(s["rels"]), "genuine_pairs": int(len(s["pairs"])),
                        "pairs_without_face": s["no_face_pairs"]}
        for sysname, scorer in systems.items():
            sc = pair_scores(scorer, s["pairs"], s["ids"])
            report[name][sysname] = {k: summary(*v) for k, v in sc.items()}
        if name == "gt":
            spec = load_spec(manifest["default"], a.models)
            report[name]["open_set"] = open_set(*embedded[manifest["default"]], s["ids"], spec.threshold,
                                                spec.tail, a.stranger_rate)
    print_table(report)
    out = a.json or a.work / "eval_report.json"
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(markdown(report))
    log.info("wrote %s and %s", out, out.with_suffix(".md"))
    return 0


def _title(name: str) -> str:
    return {"lfw": "LFW View 2 folds 6-10 (held out)",
            "gt": "Georgia Tech faces (cross-dataset, held out)"}.get(
        name, f"LFW View 2 {name[4:].replace('_', ', ')} (held out): student and dlib teacher on the same pairs")


def markdown(report: dict) -> str:
    """The figures as Markdown tables, for the model card."""
    lines = []
    for name, r in report.items():
        lines += [f"**{_title(name)}**: {r['images']} images, {r['genuine_pairs']} genuine pairs"
                  + (f", {r['pairs_without_face']} pairs dropped (no face found)" if r["pairs_without_face"] else ""),
                  "", "| system | setting | AUC | EER | TAR@FAR1e-2 | TAR@FAR1e-3 | impostor pairs |",
                  "|---|---|---|---|---|---|---|"]
        for sysname, v in r.items():
            if isinstance(v, dict):
                for st in SETTINGS:
                    m = v[st]
                    lines.append(f"| {sysname} | {st} | {m['auc']:.4f} | {m['eer']:.3f} | {m['tar_1e-2']:.3f} "
                                 f"| {m['tar_1e-3']:.3f} | {m['impostor']:,} |")
        lines.append("")
        if r.get("open_set"):
            lines += ["**The gate's question** (" + _title(name) + ", default model; single masked photos vs 5 "
                      "bare-faced templates a person)", "",
                      "| people enrolled | gate threshold | right person let in | stranger let in "
                      "| at the fixed threshold: right | stranger |", "|---|---|---|---|---|---|"]
            for o in r["open_set"]:
                lines.append(f"| {o['people']} | {o['threshold']:.3f}{'' if o['calibrated'] else ' (uncalibrated)'} "
                             f"| {o['right']:.1%} | {o['stranger']:.2%} | {o['right_fixed']:.1%} "
                             f"| {o['stranger_fixed']:.2%} |")
            lines.append("")
    return "\n".join(lines)


def print_table(report: dict) -> None:
    for name, r in report.items():
        title = _title(name)
        print(f"\n{title}: {r['images']} images, {r['genuine_pairs']} genuine pairs"
              f"{', ' + str(r['pairs_without_face']) + ' pairs dropped (no face)' if r['pairs_without_face'] else ''}")
        print(f"{'system':<15}{'setting':<14}{'AUC':>8}{'EER':>8}{'TAR@1e-2':>10}{'TAR@1e-3':>10}{'impostors':>12}")
        for sysname, v in r.items():
            if not isinstance(v, dict):
                continue
            for setting in SETTINGS:
                m = v[setting]
                print(f"{sysname:<15}{setting:<14}{m['auc']:>8.4f}{m['eer']:>8.4f}{m['tar_1e-2']:>10.3f}"
                      f"{m['tar_1e-3']:>10.3f}{m['impostor']:>12d}")
        if r.get("open_set"):
            fixed = r["open_set"][0]["fixed_threshold"]
            print(f"\nthe gate's question, {title}: a masked photo vs N people's 5 bare-faced templates")
            print(f"{'people':>7}{'threshold':>11}{'right in':>10}{'stranger in':>13}"
                  f"{'right @' + format(fixed, '.3f'):>14}{'stranger @' + format(fixed, '.3f'):>17}")
            for o in r["open_set"]:
                print(f"{o['people']:>7}{o['threshold']:>10.3f}{' ' if o['calibrated'] else '*'}"
                      f"{o['right']:>10.1%}{o['stranger']:>13.2%}{o['right_fixed']:>14.1%}{o['stranger_fixed']:>17.2%}")


if __name__ == "__main__":
    sys.exit(main())
