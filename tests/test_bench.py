"""``maskgate bench``: the shape of its figures, never their size (timings belong to the benchmark)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import FIXTURES, ROOT, maskgate

BASE_STAGES = ["decode", "landmarks", "geometry", "eyecrop", "match_10k", "frame", "embed_frame"]
MODEL_INSTALLED = (ROOT / "models" / "manifest.toml").exists()


def expected_stages() -> list[str]:
    """Every stage, in order; embedding only where a trained model is installed."""
    stages = list(BASE_STAGES)
    if MODEL_INSTALLED:   # the eye embedding, then the whole face on the same frames
        for stage in ("embed", "facecrop", "face_embed", "mask_check"):
            stages.insert(stages.index("match_10k"), stage)
    return stages


@pytest.fixture(scope="module")
def bench_json() -> list[dict]:
    r = maskgate("bench", "--json", "--frames", "12")
    assert r.returncode == 0, r.stderr
    return r.json_lines()


def test_json_lines_have_every_stage_then_fps_and_rss(bench_json: list[dict]) -> None:
    *stages, last = bench_json
    assert [s["stage"] for s in stages] == expected_stages()
    for s in stages:
        assert set(s) == {"stage", "ms_median", "ms_p95", "frames"}
        assert s["ms_median"] > 0, s  # a stage that took no time was not timed
        assert 1 <= s["frames"] <= 12
    by = {s["stage"]: s["ms_median"] for s in stages}
    # a frame is the sum of the stages the gate runs on it: its median is at least that of landmarks and decode
    assert by["frame"] >= by["landmarks"] and by["frame"] >= by["decode"], by
    frames = {s["stage"]: s["frames"] for s in stages}
    assert frames["frame"] == 12
    # The gate embeds 2 x match.frames (3) frames of an approach and searches once: the frame counts them
    # on 6 of the 12 (the next approach waits for the cooldown), though each stage is timed on all 12.
    assert frames["embed_frame"] == 6 and frames["eyecrop"] == 12 and frames["match_10k"] == 12
    assert set(last) == {"frames", "fps", "rss_mb"}
    assert last["frames"] == 12 and last["fps"] > 0 and last["rss_mb"] > 0


def test_table_without_json_on_another_clip() -> None:
    r = maskgate("bench", "--frames", "8", "--video", FIXTURES / "d11.mp4")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("maskgate bench: 8 frames of d11.mp4 (512x512)")
    assert ("embed stage left out" in r.stdout) != MODEL_INSTALLED
    header = next(line for line in lines if line.startswith("stage "))
    assert header.split() == ["stage", "median", "ms", "p95", "ms", "frames"]
    rows = [line for line in lines if line and line.split()[0] in expected_stages()]
    assert [row.split()[0] for row in rows] == expected_stages()
    assert lines.index(header) + 1 == lines.index(rows[0])
    # Right-aligned numbers: every row ends at the header's width, columns line up.
    assert {len(row) for row in rows} == {len(header)}
    assert all(re.fullmatch(r"\S+\s+\d+\.\d\d\s+\d+\.\d\d\s+\d+", row) for row in rows)
    assert re.search(r"^\d+\.\d frames per second \(median frame\), peak RSS \d+ MB$", r.stdout, re.M)


def test_bad_frame_count_and_missing_video_are_bad_usage(tmp_path) -> None:
    r = maskgate("bench", "--frames", "0")
    assert r.returncode == 2 and "--frames" in r.stderr and "Traceback" not in r.stderr
    r = maskgate("bench", "--video", tmp_path / "none.mp4")
    assert r.returncode == 2 and "none.mp4" in r.stderr and "Traceback" not in r.stderr


def test_gallery_size_names_the_match_stage() -> None:
    r = maskgate("bench", "--json", "--frames", "3", "--templates", "1000")
    assert r.returncode == 0, r.stderr
    names = [s["stage"] for s in r.json_lines() if "stage" in s]
    assert "match_1k" in names and "match_10k" not in names
    r = maskgate("bench", "--templates", "0")
    assert r.returncode == 2 and "--templates" in r.stderr and "Traceback" not in r.stderr
