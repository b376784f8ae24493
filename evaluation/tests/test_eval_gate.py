"""evaluation/eval_gate.py still runs on one clip (the figures in docs come from the full run).

Research, not the product: run with `python -m pytest evaluation/tests` (not part of `pytest -q`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.mark.skipif(not (SHARED_DATA / "videos" / "liveportrait" / "d13.mp4").exists(),
                    reason="../shared/data/videos not present")
def test_eval_gate_script_on_one_clip() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "evaluation" / "eval_gate.py"), "--clips", "d13", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    *rows, summary = [json.loads(line) for line in r.stdout.splitlines()]
    assert summary["people"] == 1 and summary["attempts"] == len(rows) == 3
    assert {row["clip"] for row in rows} == {"d13"} and all(row["granted"] for row in rows)
    assert summary["granted_wrong"] == 0 and summary["unenrolled_would_grant"] == 0   # no one else enrolled
