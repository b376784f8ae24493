"""Site calibration (edge/calibration.py) and `maskgate identify`: the threshold the gate, identify and
diag vault share, on the real enrolment path with the fixture faces, and the rule itself on vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, ROOT, maskgate
from edge import diag
from edge.calibration import MIN_PEOPLE, calibrate, one_person_threshold
from edge.config import Config, MatchConfig
from edge.embed import load_spec
from edge.match import gate_threshold

ENV = {"MASKGATE_DEVICE_ID": "test-board"}
SPEC = load_spec()
FACES = FIXTURES / "faces"
DEMO = ROOT / "edge" / "demo" / "enroll"


def _site(people: int, templates: int, spread: float, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """``people`` clusters of ``templates`` unit vectors: each person's random centre plus ``spread`` noise."""
    rng = np.random.default_rng(seed)
    ids, rows = [], []
    for p in range(people):
        centre = rng.standard_normal(128)
        for _ in range(templates):
            v = centre + spread * rng.standard_normal(128)
            ids.append(f"p{p:03d}")
            rows.append(v / np.linalg.norm(v))
    return ids, np.asarray(rows, np.float32)


def _collapsed(people: int, templates: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Everyone alike: all templates near one direction, no person closer to their own than to others."""
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal(128) * 3
    ids = [f"p{p:03d}" for p in range(people) for _ in range(templates)]
    rows = shared + rng.standard_normal((len(ids), 128))
    return ids, (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_too_few_people_falls_back_to_the_model_and_says_so() -> None:
    ids, rows = _site(MIN_PEOPLE - 1, 3, 0.5)
    cal = calibrate(ids, rows, SPEC, MatchConfig())
    assert not cal.estimated and cal.separates
    assert cal.threshold == gate_threshold(len(ids), SPEC, MatchConfig())[0]   # one chance per template
    assert "too few people enrolled" in cal.summary()


def test_separable_site_keeps_the_model_threshold_and_estimates_its_rates() -> None:
    ids, rows = _site(30, 3, 0.5)
    cal = calibrate(ids, rows, SPEC, MatchConfig(stranger_rate=0.01))
    assert cal.estimated and cal.separates
    assert cal.threshold == pytest.approx(max(cal.model_threshold, cal.site_threshold))
    assert cal.strangers <= 0.01 and cal.first_try > 0.9
    assert "strangers admitted about" in cal.summary() and "at 30 people" in cal.summary()


def test_collapsed_site_raises_the_threshold_and_does_not_separate() -> None:
    """A population the model maps close together: the model's own threshold would let most strangers
    in; the site estimate raises it past everyone's own scores and says the face alone cannot serve."""
    ids, rows = _collapsed(30, 3)
    cal = calibrate(ids, rows, SPEC, MatchConfig(stranger_rate=0.01))
    off = rows @ rows.T
    same = np.equal.outer(ids, ids)
    assert np.mean(off[~same] >= cal.model_threshold) > 0.5   # the model's calibration fails here
    assert cal.site_threshold > cal.model_threshold and cal.threshold == cal.site_threshold
    assert np.mean(off[~same] >= cal.threshold) < 0.01 / 30
    assert not cal.separates


def test_the_estimate_holds_for_strangers_it_never_saw() -> None:
    """Strangers drawn from the same population as the enrolled people pass the site estimate at about
    the asked rate: neither far above it (unsafe) nor far below (a threshold no one reaches)."""
    from edge.match import Gallery

    rate, measured = 0.05, []
    for seed in range(3):
        ids, rows = _site(40, 3, 0.7, seed=1 + 10 * seed)
        cal = calibrate(ids, rows, SPEC, MatchConfig(stranger_rate=rate))
        _, strangers = _site(400, 1, 0.7, seed=2 + 10 * seed)
        best = Gallery(ids, rows).person_scores(strangers).max(axis=1)
        measured.append(np.mean(best >= cal.site_threshold))
    assert rate / 3 <= np.mean(measured) <= 1.5 * rate, measured


def test_fixed_threshold_overrides_the_calibration() -> None:
    ids, rows = _collapsed(10, 2)
    cal = calibrate(ids, rows, SPEC, MatchConfig(threshold=0.9))
    assert cal.fixed and cal.threshold == 0.9 and cal.separates and "fixed" in cal.summary()


def test_one_person_threshold_is_the_same_rule_for_one_person() -> None:
    ids, rows = _site(30, 3, 0.5)
    cfg = MatchConfig(stranger_rate=0.01)
    one = one_person_threshold(ids, rows, SPEC, cfg)
    cal = calibrate(ids, rows, SPEC, cfg)
    assert one == cal.one_person and one <= cal.threshold
    assert one >= gate_threshold(3, SPEC, cfg)[0]   # never laxer than the model for one person's templates


def test_diag_vault_fails_with_the_claim_hint_when_people_cannot_be_told_apart(state: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.vault import Vault

    monkeypatch.setenv("MASKGATE_DEVICE_ID", "test-board")
    ids, rows = _collapsed(12, 2)
    v = Vault.open(state)
    for p in sorted(set(ids)):
        v.add(p, [r for i, r in zip(ids, rows) if i == p], consent="form 12", space=SPEC.space)
    f = diag.check_vault(diag.Context(Config(), state, False, None))
    assert f.status == "fail" and "strangers admitted about" in f.detail and "at 12 people" in f.detail, f
    assert 'mode = "claim"' in f.hint


# ---- on real faces, through the commands ----

@pytest.fixture(scope="module")
def site_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo person (from their enrolment frames) and the d18 man (from his clip) enrolled."""
    state = tmp_path_factory.mktemp("state")
    for name, src in (("Demo", DEMO), ("D18", FIXTURES / "d18.mp4")):
        r = maskgate("enroll", name, "--from", src, "--consent", "form 1", "--state", state, env=ENV)
        assert r.returncode == 0, r.stderr
    return state


def test_identify_names_the_enrolled_and_refuses_strangers(site_state: Path) -> None:
    images = [FACES / "d10_130_masked.jpg", FACES / "d18_010.jpg", FACES / "d12_010.jpg", FACES / "d19_010.jpg"]
    r = maskgate("identify", *images, "--state", site_state, "--json", env=ENV)
    assert r.returncode == 0, r.stderr
    lines = r.json_lines()
    assert [line["path"] for line in lines] == [str(p) for p in images]
    for line in lines:
        assert set(line) == {"path", "masked", "who", "score", "threshold", "granted", "used"}
        assert line["used"] in ("eye", "face+eye") and isinstance(line["masked"], bool)
        assert line["used"] == ("eye" if line["masked"] else "face+eye")
        assert line["granted"] == (line["score"] >= line["threshold"])
    demo, d18, d12, d19 = lines
    assert demo["masked"] and not d18["masked"] and not d12["masked"]
    assert demo["granted"] and demo["who"] == "Demo"      # masked, from a frame not enrolled
    assert d18["granted"] and d18["who"] == "D18"
    assert not d12["granted"] and not d19["granted"]      # strangers


def test_identify_uses_the_gates_threshold(site_state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The threshold identify reports is the site calibration of the vault, as the gate computes it."""
    from edge.vault import Vault

    from edge import fusion
    from edge.config import EmbedConfig

    r = maskgate("identify", FACES / "d12_010.jpg", FACES / "d10_130_masked.jpg", "--state", site_state,
                 "--json", env=ENV)
    monkeypatch.setenv("MASKGATE_DEVICE_ID", "test-board")
    vault = Vault.open(site_state)
    model = fusion.load(EmbedConfig())
    src = vault.gallery()
    limits = fusion.thresholds(src, vault.face_gallery(model.space), model, SPEC, MatchConfig())
    assert limits.eye.threshold == calibrate(*src, SPEC, MatchConfig()).threshold
    bare, masked = r.json_lines()
    assert (bare["used"], masked["used"]) == ("face+eye", "eye")
    assert bare["threshold"] == round(limits.fused_threshold, 4)
    assert masked["threshold"] == round(limits.eye_threshold, 4)


def test_identify_no_face_and_unreadable(site_state: Path, tmp_path: Path) -> None:
    import cv2

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 160, 3), 128, np.uint8))
    r = maskgate("identify", blank, "--state", site_state, "--json", env=ENV)
    assert r.returncode == 0 and r.json_lines() == [{"path": str(blank), "error": "no face"}]
    r = maskgate("identify", blank, tmp_path / "missing.jpg", "--state", site_state, "--json", env=ENV)
    assert r.returncode == 2 and "missing.jpg: no such image file" in r.stderr
    assert "Traceback" not in r.stderr and len(r.json_lines()) == 1


def test_enrolment_warns_when_the_site_can_no_longer_be_separated(tmp_path: Path) -> None:
    """At an impossible stranger rate even three clearly different people cannot be separated: the third
    enrolment says so and names claim mode."""
    state = tmp_path / "state"
    state.mkdir()
    cfg = tmp_path / "maskgate.toml"
    cfg.write_text("[match]\nstranger_rate = 1e-12\n")
    for name, src in (("Demo", DEMO), ("D18", FIXTURES / "d18.mp4"), ("D12", FIXTURES / "d12.mp4")):
        r = maskgate("enroll", name, "--from", src, "--consent", "form 1", "--state", state, "--config", cfg,
                     env=ENV)
        assert r.returncode == 0, r.stderr
    assert "warning: with D12 enrolled" in r.stdout and 'mode = "claim"' in r.stdout, r.stdout
