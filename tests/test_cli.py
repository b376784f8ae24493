"""The command-line contract of DESIGN.md for the foundation commands."""

from __future__ import annotations

from conftest import FIXTURES, maskgate


def test_replay_prints_face_events(state) -> None:
    r = maskgate("replay", FIXTURES / "d19.mp4", "--json", "--state", state)
    assert r.returncode == 1, r.stderr  # nobody is enrolled in a new state dir: access denied
    faces = [e for e in r.json_lines() if e["event"] == "face"]
    assert len(faces) >= 200
    e = faces[0]
    assert {"t", "box", "yaw", "pitch", "roll", "ear_left", "ear_right"} <= e.keys()
    assert len(e["box"]) == 4


def test_bench_prints_stages() -> None:
    r = maskgate("bench", "--json", "--frames", "20")
    assert r.returncode == 0, r.stderr
    lines = r.json_lines()
    stages = {e["stage"] for e in lines if "stage" in e}
    assert {"decode", "landmarks", "geometry", "frame"} <= stages
    assert all(e["ms_median"] > 0 and e["ms_p95"] >= e["ms_median"] for e in lines if "stage" in e)
    assert any("rss_mb" in e for e in lines)


def test_missing_file_is_bad_input() -> None:
    r = maskgate("replay", "no/such/clip.mp4")
    assert r.returncode == 2 and "no/such/clip.mp4" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_usage_error_exits_2() -> None:
    assert maskgate("liveness", FIXTURES / "d18.mp4", "--challenge", "smile").returncode == 2
