#!/usr/bin/env python3
"""Open-set figures of the gate's recogniser through its real commands: enrol N people from their bare
photos with `maskgate enroll` (the same ``edge.enroll.enroll``), then `maskgate identify` (the same
``identify_images``) every photo of the people not enrolled (strangers) and the enrolled people's
other photos (right person).

    DIR/PERSON/*.jpg      one folder per person; "mask" in a file name marks a masked photo

    .venv/bin/python models/training/eval_identify.py ../shared/data/realmask_dev --people 60 --rate 0.01
    .venv/bin/python models/training/eval_identify.py ../shared/data/gt_faces --people 25 --rate 0.01
    .venv/bin/python models/training/eval_identify.py DIR --people 60 --halves     # two disjoint sites

People are taken in a random order (``--seed``); each is enrolled from their bare photos but the last
third (held out, when they have three or more, for the bare right-person rate) until N are enrolled; the
rest are strangers. A person whose photos give fewer than two good frames cannot be enrolled and is
a stranger too. With ``--halves`` the people are split in two and each half is its own site (N/2
enrolled, strangers from that half only), so the site calibration of one half never saw the other.
Printed: the people enrolled and refused, the site calibration line (as `maskgate diag vault`), and
strangers admitted and the right person admitted, masked and bare. The state lives in a temporary
folder; nothing is written elsewhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm"}


class _Collect:
    """An Output for the in-process commands: keeps the JSON events, prints nothing."""

    json = True

    def __init__(self) -> None:
        self.events: list[dict] = []

    def event(self, obj: dict, text: str | None = None) -> None:
        self.events.append(obj)

    def text(self, line: str) -> None:
        pass


def photos_by_person(root: Path) -> dict[str, tuple[list[Path], list[Path]]]:
    """person -> (masked photos, bare photos), sorted."""
    out = {}
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(f for f in person.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        out[person.name] = ([f for f in files if "mask" in f.stem.lower()],
                            [f for f in files if "mask" not in f.stem.lower()])
    return out


def site(people: list[str], photos: dict, n: int, cfg: Any, embedder: Any) -> dict:
    """Enrol up to ``n`` of ``people`` (in order) in a fresh vault, identify everyone's photos."""
    from edge.calibration import calibrate
    from edge.enroll import enroll
    from edge.errors import MaskgateError
    from edge.commands.identify import identify_images
    from edge.vault import Vault

    with tempfile.TemporaryDirectory(prefix="eval-identify-") as tmp:
        state = Path(tmp)
        enrolled, refused, held = [], [], {}
        for who in people:
            if len(enrolled) >= n:
                break
            masked, bare = photos[who]
            n_held = max(1, len(bare) // 3) if len(bare) >= 3 else 0
            keep = bare[:len(bare) - n_held]
            try:
                enroll(who, [str(p) for p in keep], "evaluation", cfg, state, embedder=embedder)
            except MaskgateError:
                refused.append(who)
                continue
            enrolled.append(who)
            held[who] = bare[len(bare) - n_held:]
        strangers = [w for w in people if w not in enrolled]
        probes: list[tuple[Path, str, bool, bool]] = []   # path, owner, masked, genuine
        for w in people:
            masked, bare = photos[w]
            genuine = w in enrolled
            probes += [(p, w, True, genuine) for p in masked]
            probes += [(p, w, False, genuine) for p in (held[w] if genuine else bare)]
        out = _Collect()
        identify_images([p for p, *_ in probes], cfg, state, out, embedder=embedder)
        vault = Vault.open(state, cfg.vault)
        cal = calibrate(*vault.gallery(), embedder, cfg.match)
    by_path = {e["path"]: e for e in out.events}
    fig_ceiling = ceiling(probes, by_path, cfg.match.stranger_rate)
    from edge.match import gate_threshold

    old_t = gate_threshold(len(enrolled), embedder, cfg.match)[0]   # before the site calibration
    fig_ceiling["model_rule"] = {"threshold": round(old_t, 4), **{
        f"{'strangers' if not g else 'right'}_{'masked' if m else 'bare'}": _share(
            [(by_path.get(str(p), {}), w) for p, w, mm, gg in probes if mm == m and gg == g], old_t, g)
        for m in (True, False) for g in (False, True)}}
    fig: dict[str, Any] = {"enrolled": len(enrolled), "tried": len(enrolled) + len(refused),
                           "strangers_people": len(strangers), "threshold": round(cal.threshold, 4),
                           "calibration": cal.summary(), "separates": cal.separates, "ceiling": fig_ceiling}
    for masked in (True, False):
        kind = "masked" if masked else "bare"
        for genuine in (False, True):
            rows = [(p, w) for p, w, m, g in probes if m == masked and g == genuine]
            res = [by_path.get(str(p), {}) for p, _ in rows]
            faced = [(r, w) for r, (_, w) in zip(res, rows) if "granted" in r]
            if genuine:
                ok = sum(r["granted"] and r["who"] == w for r, w in faced)
                key = f"right_{kind}"
            else:
                ok = sum(r["granted"] for r, _ in faced)
                key = f"strangers_{kind}"
            fig[key] = {"admitted": ok, "photos": len(rows), "no_face": len(rows) - len(faced),
                        "rate": (ok / len(rows)) if rows else None,
                        "face_eye": sum(r.get("used") == "face+eye" for r, _ in faced)}
    return fig


def _share(rows: list[tuple[dict, str]], t: float, genuine: bool) -> float | None:
    """Share of photos admitted at threshold ``t`` (genuine: as their owner)."""
    if not rows:
        return None
    return sum("score" in r and r["score"] >= t and (r["who"] == w or not genuine) for r, w in rows) / len(rows)


def ceiling(probes: list, by_path: dict, rate: float) -> dict:
    """Hindsight, not a setting: the threshold that admits ``rate`` of these strangers' photos (masked
    and bare, whichever is stricter), measured on the very photos, and the right person there. What
    any threshold of this model could do for these people: the most the safety allows."""
    def scores(masked: bool, genuine: bool) -> list[tuple[float, bool]]:
        out = []
        for p, w, m, g in probes:
            r = by_path.get(str(p), {})
            if m == masked and g == genuine and "score" in r:
                out.append((r["score"], r["who"] == w))
        return out
    t = 0.0
    for masked in (True, False):
        s = np.array([x for x, _ in scores(masked, False)])
        if s.size:
            t = max(t, float(np.quantile(s, 1 - rate, method="higher")) + 1e-6)
    res = {"threshold": round(t, 4)}
    for masked in (True, False):
        g = scores(masked, True)
        res["right_" + ("masked" if masked else "bare")] = (sum(x >= t and ok for x, ok in g) / len(g)) if g else None
    return res


def _line(f: dict) -> str:
    def r(k: str) -> str:
        x = f[k]
        return "n/a" if x["rate"] is None else f"{x['rate']:.1%} ({x['admitted']}/{x['photos']})"
    return (f"  {f['enrolled']} enrolled ({f['tried'] - f['enrolled']} of {f['tried']} tried could not be), "
            f"{f['strangers_people']} strangers\n  {f['calibration']}\n"
            f"  strangers admitted: masked {r('strangers_masked')}, bare {r('strangers_bare')}\n"
            f"  right person admitted: masked {r('right_masked')}, bare {r('right_bare')}\n"
            f"  ceiling (hindsight: the threshold {f['ceiling']['threshold']:.3f} that admits the asked share of "
            f"these very strangers): right person masked {_pct(f['ceiling']['right_masked'])}, "
            f"bare {_pct(f['ceiling']['right_bare'])}\n"
            f"  the model's calibration alone (the rule before, threshold {f['ceiling']['model_rule']['threshold']:.3f}): "
            f"strangers masked {_pct(f['ceiling']['model_rule']['strangers_masked'])}, "
            f"bare {_pct(f['ceiling']['model_rule']['strangers_bare'])}; right person masked "
            f"{_pct(f['ceiling']['model_rule']['right_masked'])}, bare {_pct(f['ceiling']['model_rule']['right_bare'])}")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", type=Path, help="DIR/PERSON/*.jpg; 'mask' in a file name marks a masked photo")
    ap.add_argument("--people", type=int, default=60, help="people to enrol (default 60)")
    ap.add_argument("--rate", type=float, help="[match] stranger_rate (default: the config's)")
    ap.add_argument("--seed", type=int, default=0, help="the order people are taken in")
    ap.add_argument("--halves", action="store_true", help="two disjoint sites of N/2 people each")
    ap.add_argument("--config", help="the gate's config file (default: built-in)")
    ap.add_argument("--json", action="store_true", help="one JSON object")
    a = ap.parse_args(argv)
    if not a.dir.is_dir():
        print(f"eval_identify: error: {a.dir} is not a folder (give DIR/PERSON/*.jpg)", file=sys.stderr)
        return 2
    import logging

    logging.basicConfig(level=logging.ERROR)
    from edge.config import load
    from edge.embed import Embedder

    cfg = load(a.config)
    if a.rate is not None:
        cfg = dataclasses.replace(cfg, match=dataclasses.replace(cfg.match, stranger_rate=a.rate))
    embedder = Embedder(cfg.embed)
    photos = photos_by_person(a.dir)
    order = sorted(photos)
    random.Random(a.seed).shuffle(order)
    if a.halves:
        parts = {"half 1": order[0::2], "half 2": order[1::2]}
        report = {k: site(v, photos, a.people // 2, cfg, embedder) for k, v in parts.items()}
    else:
        report = {"all": site(order, photos, a.people, cfg, embedder)}
    report = {"dir": str(a.dir), "people": len(photos), "stranger_rate": cfg.match.stranger_rate,
              "seed": a.seed, **report}
    if a.json:
        print(json.dumps(report))
        return 0
    print(f"{a.dir}: {len(photos)} people; match.stranger_rate {cfg.match.stranger_rate:g}; seed {a.seed}")
    for k, v in report.items():
        if isinstance(v, dict):
            print(f"{k}:\n{_line(v)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
