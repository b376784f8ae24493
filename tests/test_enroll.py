"""Enrolment: consent first, quality gates on real faces (real MediaPipe), diverse templates, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import FIXTURES, ROOT, maskgate
from edge.camera import frames
from edge.camera.replay import ReplaySource, read_image
from edge.enroll import Candidate, choose_diverse, judge_face
from edge.vision import landmarks
from edge.vision.landmarks import Landmarker

DEMO = sorted((ROOT / "edge" / "demo" / "enroll").glob("*.jpg"))
HAS_MODEL = (ROOT / "models" / "manifest.toml").exists()
ENV = {"MASKGATE_DEVICE_ID": "test-board"}


@pytest.fixture(scope="module")
def still() -> Landmarker:
    with landmarks.for_images(max_faces=2) as lm:
        yield lm


# ---------------------------------------------------------------- consent and bad input

@pytest.mark.parametrize("consent", ["", "   "])
def test_refuses_without_consent(state: Path, consent: str) -> None:
    r = maskgate("enroll", "Demo", "--from", ROOT / "edge/demo/enroll", "--consent", consent, "--state", state,
                 env=ENV)
    assert r.returncode == 2 and "consent" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (state / "vault.bin").exists()


def test_refuses_missing_consent_option_and_bad_sources(state: Path) -> None:
    r = maskgate("enroll", "Demo", "--from", ROOT / "edge/demo/enroll", "--state", state, env=ENV)
    assert r.returncode == 2 and "--consent" in r.stderr
    r = maskgate("enroll", "Demo", "--from", state / "nothing.mp4", "--consent", "form 1", "--state", state, env=ENV)
    assert r.returncode == 2 and "nothing.mp4: no such file" in r.stderr
    r = maskgate("enroll", "Demo", "--from", ROOT / "edge/demo/enroll", "--consent", "form 1", "--expires",
                 "next week", "--state", state, env=ENV)
    assert r.returncode == 2 and "not a date" in r.stderr
    assert not (state / "vault.bin").exists()


# ---------------------------------------------------------------- quality gates on real faces

def test_demo_enrolment_images_pass_the_gates(still: Landmarker) -> None:
    assert len(DEMO) == 6
    for p in DEMO:
        img = read_image(p)
        assert judge_face(img, still.detect(img)) is None, p.name


def test_gates_refuse_poor_frames(still: Landmarker) -> None:
    img = read_image(DEMO[0])
    other = read_image(DEMO[3])
    h, w = img.shape[:2]
    cases = {
        "blurred": cv2.GaussianBlur(img, (0, 0), 2.5),
        "too far": cv2.resize(img, (w * 5 // 16, h * 5 // 16)),
        "more than one face": np.concatenate([img, other], axis=1),
        "not frontal": cv2.warpAffine(img, cv2.getRotationMatrix2D((w / 2, h / 2), 25, 1), (w, h)),
        "too dark": (img * 0.12).astype(np.uint8),
        "too bright": np.clip(img.astype(int) + 130, 0, 255).astype(np.uint8),
        "no face": np.full_like(img, 128),
    }
    for why, bad in cases.items():
        assert judge_face(bad, still.detect(bad)) == why


def test_gates_on_fixture_clips() -> None:
    """A blink (d6, around frame 50) is refused as eyes closed; a head turned ~20 deg (s18) as not frontal;
    the open-eyed frontal frames of d6 pass."""
    verdicts: dict[int, str | None] = {}
    with landmarks.for_video(max_faces=2) as lm:
        for f in frames(ReplaySource(FIXTURES / "d6.mp4")):
            if f.index > 56:
                break
            if f.index >= 40:
                verdicts[f.index] = judge_face(f.image, lm.detect(f.image))
    assert verdicts[50] == "eyes closed" and verdicts[40] is None
    assert sum(v is None for v in verdicts.values()) >= 8
    with landmarks.for_video(max_faces=2) as lm:
        src = ReplaySource(FIXTURES / "s18.mp4")
        f = src.read()
        src.close()
        assert judge_face(f.image, lm.detect(f.image)) == "not frontal"


def test_choose_diverse_takes_each_source_then_the_most_different() -> None:
    e = np.eye(4, dtype=np.float32)
    near = (e[0] + 0.05 * e[1]) / np.linalg.norm(e[0] + 0.05 * e[1])
    cands = [Candidate(0, e[0], 50.0), Candidate(0, near, 40.0), Candidate(0, e[2], 10.0),
             Candidate(1, e[3], 5.0)]
    chosen = choose_diverse(cands, 3)
    assert [c.source for c in chosen[:2]] == [0, 1] and chosen[0] is cands[0]
    assert chosen[2] is cands[2]          # the different one, not the near-duplicate sharper one
    assert len(choose_diverse(cands, 10)) == 4 and choose_diverse([], 3) == []


# ---------------------------------------------------------------- end to end (needs the embedder model)

@pytest.mark.skipif(not HAS_MODEL, reason="models/manifest.toml not present yet (the embedder model)")
def test_enrol_demo_person_end_to_end(state: Path) -> None:
    r = maskgate("enroll", "Demo Person", "--from", *DEMO, "--consent", "demo consent form 1", "--operator",
                 "tester", "--json", "--state", state, env=ENV)
    assert r.returncode == 0, r.stderr
    [done] = [e for e in r.json_lines() if "enrolled" in e]
    assert done["enrolled"] and 2 <= done["templates"] <= 5 and done["good_frames"] == 6
    assert done["look_alike"] is None   # nobody else enrolled
    r = maskgate("templates", "list", "--json", "--state", state, env=ENV)
    [p] = r.json_lines()
    assert (p["id"], p["name"], p["templates"]) == (done["person"], "Demo Person", done["templates"])
    assert p["consent"]["text"] == "demo consent form 1" and p["consent"]["operator"] == "tester"
    r = maskgate("enroll", "Demo Person", "--from", ROOT / "edge/demo/enroll", "--consent", "again",
                 "--state", state, env=ENV)
    assert r.returncode == 2 and "already enrolled" in r.stderr
    # someone else: no warning
    faces = ROOT / "tests" / "fixtures" / "faces"
    r = maskgate("enroll", "Other Person", "--from", faces / "d12_010.jpg", faces / "d12_060.jpg",
                 faces / "d12_060_masked.jpg", "--consent", "form 3", "--json", "--state", state, env=ENV)
    assert r.returncode == 0, r.stderr
    assert r.json_lines()[-1]["look_alike"] is None
    # the same face under another name is refused, naming the look-alike; enrolled only when allowed
    vault_before = (state / "vault.bin").read_bytes()
    r = maskgate("enroll", "D. Person", "--from", *DEMO, "--consent", "form 2", "--state", state, env=ENV)
    assert r.returncode == 2 and "matches Demo Person at the gate's threshold" in r.stderr
    assert "--allow-look-alike" in r.stderr and "templates add" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert (state / "vault.bin").read_bytes() == vault_before
    r = maskgate("enroll", "D. Person", "--from", *DEMO, "--consent", "form 2", "--allow-look-alike",
                 "--state", state, env=ENV)
    assert r.returncode == 0, r.stderr
    assert "warning: D. Person resembles Demo Person" in r.stdout and "templates remove" in r.stdout


@pytest.mark.skipif(not HAS_MODEL, reason="models/manifest.toml not present yet (the embedder model)")
def test_enroll_returns_its_result_and_prints_nothing(state: Path, capsys: pytest.CaptureFixture) -> None:
    """``edge.enroll.enroll`` (the command's and the demo's enrolment): a result, progress only to
    ``say``, nothing on stdout; the person is in the vault and the audit log."""
    from edge.audit import LOG_NAME
    from edge.config import Config
    from edge.enroll import enroll
    from edge.vault import Vault

    said: list[str] = []
    r = enroll("Demo Person", [str(ROOT / "edge/demo/enroll")], "form 4", Config(), state, said.append,
               operator="tester")
    assert r.person is not None and r.name == "Demo Person" and r.reason == ""
    assert (r.good_frames, r.frames) == (6, 6) and 2 <= r.templates <= 5 and r.look_alike is None
    assert said == [f"{ROOT / 'edge/demo/enroll'}: 6 frames, 6 good (refused: none)"]
    assert capsys.readouterr().out == ""
    [p] = Vault.open(state, Config().vault).people()
    assert (p.id, p.name, p.templates) == (r.person, "Demo Person", r.templates)
    [entry] = [json.loads(line) for line in (state / LOG_NAME).read_text().splitlines()]
    assert (entry["event"], entry["person"], entry["operator"]) == ("vault.enroll", r.person, "tester")


@pytest.mark.skipif(not HAS_MODEL, reason="models/manifest.toml not present yet (the embedder model)")
def test_templates_add_and_expiry_shown_as_given(state: Path) -> None:
    faces = ROOT / "tests" / "fixtures" / "faces"
    r = maskgate("enroll", "Ben", "--from", faces / "d12_010.jpg", faces / "d12_060.jpg", "--consent", "form 3",
                 "--expires", "2099-01-31", "--state", state, env=ENV)
    assert r.returncode == 0, r.stderr
    r = maskgate("enroll", "Demo", "--from", *DEMO[:3], "--consent", "form 4", "--state", state, env=ENV)
    assert r.returncode == 0, r.stderr
    r = maskgate("templates", "list", "--state", state, env=ENV)
    assert "expires=2099-01-31 " in r.stdout and "2099-02-01" not in r.stdout
    [ben] = [p for p in maskgate("templates", "list", "--json", "--state", state, env=ENV).json_lines()
             if p["name"] == "Ben"]
    assert ben["expires_on"] == "2099-01-31" and ben["templates"] == 2
    # his masked frame: added through the same gates; the count grows, the person stays one
    r = maskgate("templates", "add", "Ben", "--from", faces / "d12_060_masked.jpg", "--json", "--state", state, env=ENV)
    assert r.returncode == 0, r.stderr
    done = r.json_lines()[-1]
    assert (done["added"], done["templates"], done["person"]) == (1, 3, ben["id"])
    # the demo person's frames are someone else: refused for Ben, and nothing changes
    before = (state / "vault.bin").read_bytes()
    r = maskgate("templates", "add", "Ben", "--from", *DEMO[3:], "--state", state, env=ENV)
    assert r.returncode == 2 and "match Demo" in r.stderr and (state / "vault.bin").read_bytes() == before
    r = maskgate("templates", "add", "Ben", "--from", ROOT / "tests/fixtures/faces/README.md", "--state", state, env=ENV)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    r = maskgate("templates", "add", "Nobody", "--from", *DEMO[3:], "--state", state, env=ENV)
    assert r.returncode == 2 and "nobody called 'Nobody'" in r.stderr
    log = (state / "audit.log").read_text()
    assert '"event":"vault.add_templates"' in log and '"total":3' in log


@pytest.mark.skipif(not HAS_MODEL, reason="models/manifest.toml not present yet (the embedder model)")
def test_enrolment_into_another_models_vault_is_refused(state: Path) -> None:
    """Templates of two models cannot be compared: after a model update, enrol everyone again."""
    from edge.vault import Vault

    Vault.open(state, device_id=ENV["MASKGATE_DEVICE_ID"]).add(
        "Old Resident", [np.eye(1, 128, 0)[0]], "form 0", space="0123456789abcdef")
    r = maskgate("enroll", "Demo Person", "--from", *DEMO, "--consent", "form 1", "--state", state, env=ENV)
    assert r.returncode == 2 and "embedder 0123456789abcdef" in r.stderr and "enrol everyone again" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert [p.name for p in Vault.open(state, device_id=ENV["MASKGATE_DEVICE_ID"]).people()] == ["Old Resident"]


def _camera_config(tmp_path: Path, challenge: str) -> Path:
    """The "camera" is the replay source on a real clip (d12 answers a blink; it turns left, never right)."""
    cfg = tmp_path / "camera.toml"
    cfg.write_text(f'[camera]\nsource = "replay"\npath = "{FIXTURES / "d12.mp4"}"\nrealtime = false\n'
                   f'[liveness]\nchallenges = ["{challenge}"]\nsteps = 1\n')
    return cfg


@pytest.mark.skipif(not HAS_MODEL, reason="models/manifest.toml not present yet (the embedder model)")
def test_camera_enrolment_needs_liveness_first(state: Path, tmp_path: Path) -> None:
    r = maskgate("enroll", "Clip Person", "--from", "camera", "--consent", "form 7", "--json",
                 "--config", _camera_config(tmp_path, "turn-right"), "--state", state, env=ENV)
    assert r.returncode == 1 and r.json_lines()[-1]["enrolled"] is False
    assert "liveness failed" in r.json_lines()[-1]["reason"]
    r = maskgate("templates", "list", "--json", "--state", state, env=ENV)
    assert r.json_lines() == []
    r = maskgate("enroll", "Clip Person", "--from", "camera", "--consent", "form 7", "--json",
                 "--config", _camera_config(tmp_path, "blink"), "--state", state, env=ENV)
    assert r.returncode == 0, r.stderr
    assert r.json_lines()[-1]["enrolled"] is True and r.json_lines()[-1]["templates"] >= 2


def _tight_crop(img: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """A 160x160 crop as face datasets and ID-photo cutters make them: eyes to mouth, forehead and chin cut."""
    cx = (lm[234, 0] + lm[454, 0]) / 2
    cy = (lm[168, 1] + lm[1, 1]) / 2 + 0.1 * (lm[152, 1] - lm[10, 1])
    s = 0.9 * (lm[454, 0] - lm[234, 0])
    c = img[int(cy - s / 2):int(cy + s / 2), int(cx - s / 2):int(cx + s / 2)]
    return cv2.resize(np.ascontiguousarray(c), (160, 160), interpolation=cv2.INTER_AREA)


def test_tight_crops_of_frontal_faces_read_frontal(still: Landmarker) -> None:
    """Cutting the chin and forehead off a frontal photo tilts head_pose's chin-forehead axis (the mesh
    guesses where they were); the nose line of upper_face_pose moves less, and the crops still enrol."""
    from edge.vision import geometry

    shift_head, shift_upper, accepted = [], [], 0
    for p in DEMO:
        img = read_image(p)
        full = still.detect(img)[0].landmarks
        crop = _tight_crop(img, full)
        faces = still.detect(crop)
        assert faces, p.name
        tight = faces[0].landmarks
        shift_head.append(abs(geometry.head_pose(tight).pitch - geometry.head_pose(full).pitch))
        shift_upper.append(abs(geometry.upper_face_pose(tight).pitch - geometry.upper_face_pose(full).pitch))
        assert abs(geometry.upper_face_pose(full).pitch) < 12, p.name  # the offset: frontal reads near 0
        accepted += judge_face(crop, faces) is None
    assert np.mean(shift_upper) < np.mean(shift_head)
    assert accepted >= 4  # d10_005 blinks
