#!/usr/bin/env python3
"""The whole gate on real people: how often it lets the right person in, and how fast.

Every person in the annotated LivePortrait clips (``evaluation/liveness_annotations.toml``) is enrolled
into one vault from frames of their clip *outside* every tested stretch. Then, for each annotated
action, the gate (edge.gate.Gate: tracking, the challenge, verify, 1:N match, decision, mock relay)
runs on the stretch that starts ``--lead-s`` before the person acts, with that action as the
challenge. Figures:

- grants of the right person, wrong-person grants, denials and their reasons;
- the same attempts as if the person were not enrolled: how often anyone else would be let in;
- first face -> relay on (clip time): what a resident waits, including their own action;
- action done -> relay on (clip time): what the gate adds after the person has answered;
- compute per frame (wall clock: landmarks + the gate's own turn) on this machine.

    .venv/bin/python evaluation/eval_gate.py [--videos DIR] [--clips d10 d13 ...] [--lead-s 1.5] [--json]

Nothing is written to disk but a temporary vault; figures go to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from edge.camera import Frame, frames
from edge.camera.replay import ReplaySource
from edge.config import Config
from edge.door import open_door
from edge.embed import Embedder
from edge.enroll import judge_face
from edge.gate import AGREEMENT_MIN, Gate
from edge.match import gate_threshold
from edge.vault import Vault
from edge.vision import landmarks
from edge.vision.landmarks import Landmarker

ROOT = Path(__file__).resolve().parent.parent

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

log = logging.getLogger("eval_gate")

VIDEOS = ROOT.parent / "shared" / "data" / "videos" / "liveportrait"
ANNOTATIONS = ROOT / "evaluation" / "liveness_annotations.toml"
AFTER_S = 1.5        # the stretch runs this long after the action ends (verify needs a few frames)
ENROL_FRAMES = 6     # frames per person, as `maskgate enroll` keeps at most 5 templates from them
MARGIN_S = 0.5       # enrolment frames stay this far from any tested stretch


def stretches(acts: list[dict], fps: float, lead_s: float) -> list[tuple[int, int, dict]]:
    """(first, last frame, action) of each tested stretch."""
    return [(max(0, a["start"] - int(round(lead_s * fps))), a["end"] + int(round(AFTER_S * fps)), a)
            for a in acts]


def analyse(clip: Path, lm: Landmarker) -> tuple[list, list[float], float]:
    """Faces per frame (tracked as on a camera), the landmark time per frame, and the clip's rate."""
    src = ReplaySource(clip, realtime=False)
    faces, ms = [], []
    for f in frames(src):
        t0 = time.perf_counter()
        faces.append(lm.detect(f.image))
        ms.append((time.perf_counter() - t0) * 1000)
    return faces, ms, src.fps


def enrol_embeddings(clip: Path, faces: list, banned: set[int], embedder: Embedder) -> list[np.ndarray]:
    """Embeddings of good frames outside the tested stretches, evenly spread over the clip."""
    good = []
    for f in frames(ReplaySource(clip, realtime=False)):
        if f.index in banned or f.index >= len(faces) or judge_face(f.image, faces[f.index]) is not None:
            continue
        good.append((f.index, f.image, faces[f.index][0]))
    pick = [good[int(i)] for i in np.linspace(0, len(good) - 1, min(ENROL_FRAMES, len(good)))] if good else []
    vecs = [embedder.embed_face(img, face) for _, img, face in pick]
    return [v for v in vecs if v is not None]


def run_stretch(clip: Path, faces: list, first: int, last: int, action: str, fps: float, cfg: Config,
                vault: Vault, embedder: Embedder, door) -> dict:
    events: list[dict] = []
    gate = Gate(cfg, vault, embedder, door, None, events.append, challenges=[action])
    turn_ms = []
    try:
        for f in frames(ReplaySource(clip, realtime=False)):
            if f.index < first:
                continue
            if f.index > last or f.index >= len(faces):
                break
            t0 = time.perf_counter()
            gate.process(Frame(f.image, f.index / fps, f.index), faces[f.index])
            turn_ms.append((time.perf_counter() - t0) * 1000)
            if gate.decisions:
                break
    finally:
        gate.close()
    seen = [i for i in range(first, min(last + 1, len(faces))) if faces[i]]
    decision = next((e for e in events if e["event"] == "decision"), None)
    match = next((e for e in events if e["event"] == "match"), None)
    return {"decision": decision, "agreement": match and match["agreement"],
            "runner_up": match and match["runner_up"], "first_face_t": seen[0] / fps if seen else None, "turn_ms": turn_ms}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=Path, default=VIDEOS, help="folder of the annotated clips")
    ap.add_argument("--annotations", type=Path, default=ANNOTATIONS)
    ap.add_argument("--clips", nargs="+", help="only these annotated clips (default: all)")
    ap.add_argument("--lead-s", type=float, default=1.5,
                    help="the person is in view this long before they act (default 1.5 s)")
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not args.videos.is_dir():
        print(f"eval_gate: {args.videos} is not a folder of clips (give --videos)", file=sys.stderr)
        return 2

    acts = defaultdict(list)
    for a in tomllib.loads(args.annotations.read_text())["action"]:
        if not args.clips or a["clip"] in args.clips:
            acts[a["clip"]].append(a)
    if not acts:
        print(f"eval_gate: no annotated actions for {' '.join(args.clips or [])}", file=sys.stderr)
        return 2
    cfg = Config()
    embedder = Embedder(cfg.embed)
    rows, lm_ms = [], []
    with tempfile.TemporaryDirectory(prefix="maskgate-eval-") as tmp, landmarks.for_video(cfg.vision) as lm:
        vault = Vault.open(Path(tmp), cfg.vault)
        cache = {}
        for name in sorted(acts):
            clip = args.videos / f"{name}.mp4"
            faces, ms, fps = analyse(clip, lm)
            lm_ms += ms
            tested = stretches(acts[name], fps, args.lead_s)
            margin = int(round(MARGIN_S * fps))
            banned = {i for a, b, _ in tested for i in range(a - margin, b + margin + 1)}
            vecs = enrol_embeddings(clip, faces, banned, embedder)
            if len(vecs) < 2:
                log.warning("%s: %d usable enrolment frames outside the tested stretches; left out", name,
                            len(vecs))
                continue
            vault.add(name, vecs[:cfg.vault.max_templates], consent="eval_gate: LivePortrait clip (MIT)",
                      space=embedder.space)
            cache[name] = (clip, faces, fps, tested)
        door = open_door(cfg.door)
        try:
            for name, (clip, faces, fps, tested) in cache.items():
                for first, last, a in tested:
                    r = run_stretch(clip, faces, first, last, a["action"], fps, cfg, vault, embedder, door)
                    d = r["decision"]
                    row = {"clip": name, "action": a["action"], "start": a["start"],
                           "granted": bool(d and d["granted"]), "who": d and d["who"],
                           "reason": d["reason"] if d else "no decision", "score": d and d["score"],
                           "agreement": r["agreement"], "runner_up": r["runner_up"],
                           "first_face_to_relay_s": None, "action_to_relay_s": None,
                           "turn_ms_median": round(statistics.median(r["turn_ms"]), 2) if r["turn_ms"] else None}
                    if row["granted"] and r["first_face_t"] is not None:
                        row["first_face_to_relay_s"] = round(d["t"] - r["first_face_t"], 3)
                        row["action_to_relay_s"] = round(d["t"] - a["end"] / fps, 3)
                    rows.append(row)
                    if args.json:
                        print(json.dumps(row))
        finally:
            door.close()
        people = len(vault.people())

    right = [r for r in rows if r["granted"] and r["who"] == r["clip"]]
    wrong = [r for r in rows if r["granted"] and r["who"] != r["clip"]]
    denied = [r for r in rows if not r["granted"]]
    reasons = defaultdict(int)
    for r in denied:
        reasons[r["reason"].split(" (")[0]] += 1

    def med_p90(xs: list[float]) -> tuple[float, float]:
        return (statistics.median(xs), float(np.percentile(xs, 90))) if xs else (float("nan"),) * 2

    ff = med_p90([r["first_face_to_relay_s"] for r in right])
    ar = med_p90([r["action_to_relay_s"] for r in right])
    turn = med_p90([r["turn_ms_median"] for r in rows if r["turn_ms_median"] is not None])
    lmm = med_p90(lm_ms)
    threshold = gate_threshold(people, embedder, cfg.match)[0]   # what each attempt's gate used
    # The same fused probes against everyone else: had this person not been enrolled, the gate (then
    # with one person fewer, so a threshold a little lower) would have let in whoever scored best
    # among the others if that score reached it.
    without = gate_threshold(people - 1, embedder, cfg.match)[0]
    others = [r["runner_up"] for r in rows if r["runner_up"] is not None]
    unenrolled = sum(o >= without for o in others)
    summary = {"people": people, "attempts": len(rows), "granted_right": len(right), "granted_wrong": len(wrong),
               "denied": len(denied), "denied_reasons": dict(reasons),
               "unenrolled_would_grant": unenrolled, "others_best_max": round(max(others, default=0.0), 3),
               "first_face_to_relay_s_median": round(ff[0], 3), "first_face_to_relay_s_p90": round(ff[1], 3),
               "action_to_relay_s_median": round(ar[0], 3), "action_to_relay_s_p90": round(ar[1], 3),
               "landmarks_ms_median": round(lmm[0], 2), "gate_turn_ms_median": round(turn[0], 2),
               "lead_s": args.lead_s}
    if args.json:
        print(json.dumps(summary))
        return 0
    for r in rows:
        print(f"{r['clip']:>4} {r['action']:<10} start {r['start']:>4}  "
              + (f"granted {r['who']} ({r['score']}) first face -> relay {r['first_face_to_relay_s']} s"
                 if r["granted"] else f"denied: {r['reason']}"))
    print(f"\n{people} people enrolled from frames outside the tested stretches; {len(rows)} attempts, "
          f"person in view {args.lead_s} s before acting")
    print(f"right person granted {len(right)}/{len(rows)} ({100 * len(right) / max(1, len(rows)):.0f}%), "
          f"wrong person granted {len(wrong)}, denied {len(denied)} {dict(reasons)}")
    print(f"first face -> relay on: median {ff[0]:.2f} s, p90 {ff[1]:.2f} s (includes the person's own action)")
    print(f"action done -> relay on: median {ar[0]:.2f} s, p90 {ar[1]:.2f} s (what the gate adds)")
    agree = sorted(r["agreement"] for r in rows if r["agreement"] is not None)
    if agree:
        print(f"before/after agreement (cosine of the means; the gate needs {AGREEMENT_MIN}): "
              f"min {agree[0]:.2f}, median {statistics.median(agree):.2f}, max {agree[-1]:.2f}")
    if others:
        print(f"best score of anyone else enrolled (the margin against a wrong grant): max {max(others):.3f}, "
              f"median {statistics.median(others):.2f}; threshold {threshold:.3f}")
        print(f"had the person not been enrolled, someone else would have been let in: {unenrolled} of "
              f"{len(others)} attempts (threshold {without:.3f} for {people - 1} people)")
    print(f"compute per frame here: landmarks {lmm[0]:.1f} ms median, the gate's own turn {turn[0]:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
