"""1:N search: the right person, per-person best template, frame fusion, the threshold."""

from __future__ import annotations

import numpy as np
import pytest

from edge.match import Gallery, Match, cosine, decide, threshold_for


def unit(rng: np.random.Generator, n: int, dim: int = 128) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def noisy(v: np.ndarray, rng: np.random.Generator, sd: float) -> np.ndarray:
    w = v + rng.standard_normal(v.shape).astype(np.float32) * sd
    return w / np.linalg.norm(w)


def test_finds_the_person_among_many() -> None:
    rng = np.random.default_rng(1)
    people = unit(rng, 2000)
    ids = [f"p{i}" for i in range(2000) for _ in range(3)]
    templates = np.stack([noisy(people[i], rng, 0.02) for i in range(2000) for _ in range(3)])
    g = Gallery(ids, templates)
    assert len(g) == 6000 and len(g.people) == 2000 and g.dim == 128
    m = g.search(noisy(people[1234], rng, 0.02))
    assert m.person == "p1234" and m.score > 0.85 and m.runner_up < 0.5


def test_best_template_of_a_person_counts() -> None:
    rng = np.random.default_rng(2)
    masked, unmasked, other = unit(rng, 3)
    g = Gallery(["ann", "ann", "bob"], np.stack([unmasked, masked, other]))
    m = g.search(masked)
    assert m.person == "ann" and m.score == pytest.approx(1.0, abs=1e-5)


def test_ids_need_not_be_grouped() -> None:
    rng = np.random.default_rng(3)
    a, b = unit(rng, 2)
    g = Gallery(["a", "b", "a", "b"], np.stack([a, b, noisy(a, rng, 0.1), noisy(b, rng, 0.1)]))
    assert g.search(b).person == "b" and g.search(a).person == "a"


def test_fusion_averages_frames_so_one_lucky_frame_is_not_enough() -> None:
    rng = np.random.default_rng(4)
    a, stranger = unit(rng, 2)
    g = Gallery(["a"], a[None])
    lucky = [a, stranger, stranger]
    assert g.search(np.stack(lucky)).score < 0.5
    assert g.search(np.stack([noisy(a, rng, 0.02) for _ in range(3)])).score > 0.9


def test_empty_gallery_matches_nobody() -> None:
    g = Gallery([], np.zeros((0, 128), np.float32))
    m = g.search(np.ones(128, np.float32))
    assert m == Match(None, 0.0, 0.0) and not decide(m, 0.0)


def test_decide_uses_the_threshold() -> None:
    assert decide(Match("a", 0.61, 0.2), 0.6)
    assert not decide(Match("a", 0.59, 0.2), 0.6)


# The shipped int8 model's calibration (models/manifest.toml): one comparison's false-accept rate -> cosine.
TAIL = ((1e-3, 0.5853), (3e-4, 0.6386), (1e-4, 0.6809), (3e-5, 0.7169), (1e-5, 0.7456))


def test_one_person_enrolled_keeps_the_models_threshold() -> None:
    assert threshold_for(1, 0.5853, TAIL, 1e-3) == (0.5853, True)
    assert threshold_for(0, 0.5853, TAIL, 1e-3) == (0.5853, True)


def test_the_threshold_rises_with_the_people_a_stranger_is_compared_with() -> None:
    """Ten people: each comparison may false-accept a tenth as often, the 1e-4 point."""
    assert threshold_for(10, 0.5853, TAIL, 1e-3) == (pytest.approx(0.6809), True)
    assert threshold_for(100, 0.5853, TAIL, 1e-3) == (pytest.approx(0.7456), True)
    # between calibrated points: interpolated in log(rate), so 5 people sit between 3e-4 and 1e-4
    t5, ok = threshold_for(5, 0.5853, TAIL, 1e-3)
    w = np.log(2e-4 / 3e-4) / np.log(1e-4 / 3e-4)
    assert ok and t5 == pytest.approx(0.6386 + w * (0.6809 - 0.6386))
    ts = [threshold_for(n, 0.5853, TAIL, 1e-3)[0] for n in range(1, 101)]
    assert ts == sorted(ts) and len(set(ts)) > 90


def test_past_the_rarest_calibrated_rate_it_stays_there_and_says_so() -> None:
    assert threshold_for(101, 0.5853, TAIL, 1e-3) == (0.7456, False)
    assert threshold_for(5000, 0.5853, TAIL, 1e-3) == (0.7456, False)
    assert threshold_for(5000, 0.5853, TAIL, 0.5) == (pytest.approx(0.6809), True)   # an installer's choice


def test_never_below_the_models_threshold_and_fixed_wins() -> None:
    assert threshold_for(1, 0.5853, TAIL, 1e-2) == (0.5853, True)   # a laxer rate than calibrated: no lower
    assert threshold_for(500, 0.5853, TAIL, 1e-3, fixed=0.62) == (0.62, True)
    assert threshold_for(500, 0.5853, (), 1e-3) == (0.5853, True)   # a manifest without a tail


def test_unnormalised_inputs_are_normalised() -> None:
    rng = np.random.default_rng(5)
    a = unit(rng, 1)[0]
    g = Gallery(["a"], (a * 7)[None])
    assert g.search(a * 0.01).score == pytest.approx(1.0, abs=1e-5)
    assert cosine(a * 3, a) == pytest.approx(1.0, abs=1e-6)


def test_mismatched_ids_are_refused() -> None:
    with pytest.raises(ValueError):
        Gallery(["a"], np.zeros((2, 4), np.float32))
