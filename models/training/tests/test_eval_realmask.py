"""models/training/eval_realmask.py measures a folder of photos through `maskgate embed`.

Research, not the product: run with `python -m pytest models/training/tests` (not part of `pytest -q`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
FACES = ROOT / "tests" / "fixtures" / "faces"
D10 = [ROOT / "edge" / "demo" / "enroll" / "d10_005.jpg", ROOT / "edge" / "demo" / "enroll" / "d10_130.jpg"]
SCRIPT = [sys.executable, str(ROOT / "models" / "training" / "eval_realmask.py")]


def test_eval_realmask_measures_a_folder_through_the_command(tmp_path: Path) -> None:
    """DIR/PERSON/*.jpg, 'mask' in a name = masked; figures via `maskgate embed`."""
    people = {"d10": [*D10, FACES / "d10_130_masked.jpg"],
              "d12": [FACES / "d12_010.jpg", FACES / "d12_060.jpg", FACES / "d12_060_masked.jpg"],
              "d18": [FACES / "d18_010.jpg"], "d19": [FACES / "d19_010.jpg"]}
    for who, paths in people.items():
        (tmp_path / who).mkdir()
        for p in paths:
            shutil.copy(p, tmp_path / who / p.name)
    (tmp_path / "notes.txt").write_text("not a person")
    r = subprocess.run([*SCRIPT, str(tmp_path), "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert (rep["people"], rep["images"], rep["masked_images"], rep["no_face"]) == (4, 8, 2, 0)
    m, u = rep["masked_probe"], rep["unmasked"]
    assert (m["genuine"], m["impostor"]) == (4, 8)         # 2 masked x (their own 2 | the other 4 bare)
    assert (u["genuine"], u["impostor"]) == (2, 13)        # 6 bare photos: 15 unordered pairs
    assert m["accepted_genuine"] == 1.0 and m["accepted_impostor"] == 0.0
    assert m["tar_1e-2"] is None    # 8 impostor pairs cannot measure FAR 1e-2: said, not invented
    r = subprocess.run([*SCRIPT, str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "is not a folder" in r.stderr
