"""``maskgate diag`` and ``maskgate preview`` on this machine: no camera, mock pins, real files.

Every check runs for real; the board/clock checks also run against small fake /proc and /sys trees
(``diag.base.SYS``) to reach the statuses this machine cannot show (a hot Pi, an RTC).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge import config, diag
from edge.cli import Output
from edge.commands import diag as diag_cmd
from edge.embed import load_spec
from tests.conftest import FIXTURES, ROOT, maskgate

SPACE = load_spec().space   # the installed model's embedding space, as enrolment records it

STATUSES = {"ok", "warn", "fail"}


@pytest.fixture(autouse=True)
def _device_id(monkeypatch: pytest.MonkeyPatch) -> None:
    # A container may have no board serial and no /etc/machine-id; play one board throughout.
    monkeypatch.setenv("MASKGATE_DEVICE_ID", "diag-test-board")


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def ctx_for(state: Path, text: str = "", yes: bool = False, pin_factory=None) -> diag.Context:
    cfg = config.from_dict(config.tomllib.loads(text)) if text else config.Config()
    return diag.Context(cfg, state, yes, pin_factory)


def unit(dim: int = 128, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


# ---- the whole command ----

def test_every_check_runs_here_and_reports_json(state: Path) -> None:
    r = maskgate("diag", "--json", "--state", state, env={"MASKGATE_DEVICE_ID": "diag-test-board"})
    lines = r.json_lines()
    assert [line["check"] for line in lines] == list(diag.CHECKS), r.stderr
    for line in lines:
        assert set(line) <= {"check", "status", "detail", "hint"}
        assert line["status"] in STATUSES
        assert isinstance(line["detail"], str) and line["detail"]
        if line["status"] != "ok":  # every warning and failure says what to do
            assert isinstance(line.get("hint"), str) and line["hint"].strip(), line
    by = {line["check"]: line for line in lines}
    assert r.returncode == (1 if any(line["status"] == "fail" for line in lines) else 0)
    # The bundled clip stands in for the camera: it works and shows a face, but is not a camera.
    assert by["camera"]["status"] == "warn"
    assert "face visible" in by["camera"]["detail"] and "replay" in by["camera"]["hint"]
    assert by["door"]["status"] == "warn" and "mock" in by["door"]["hint"]  # simulated pins
    assert by["vault"]["status"] == "warn" and "nobody enrolled" in by["vault"]["detail"]
    assert by["audit"]["status"] == "warn" and "no audit log" in by["audit"]["detail"]
    assert by["disk"]["status"] == "ok" and "GB free" in by["disk"]["detail"]
    if (ROOT / "models" / "manifest.toml").exists():
        assert by["models"]["status"] == "ok" and "known answer" in by["models"]["detail"]
    else:  # a checkout without the trained model: said plainly, with what to do
        assert by["models"]["status"] == "fail" and "manifest.toml is missing" in by["models"]["detail"]
    if not Path("/run/systemd/system").is_dir():
        assert by["service"]["status"] == "warn" and "systemd is not running" in by["service"]["detail"]
    assert "Traceback" not in r.stderr
    assert not any(state.iterdir()), "diag must not create files in the state directory"


def test_text_output_is_an_aligned_table_without_colour_off_a_tty(state: Path) -> None:
    r = maskgate("diag", "clock", "disk", "service", "--state", state)
    assert "\033[" not in r.stdout
    rows = [line for line in r.stdout.splitlines() if line.split(" ", 1)[0] in STATUSES]
    # the clock fails on a machine without an RTC or a time source (a container, CI): exit 1 then
    assert r.returncode == (1 if any(row.startswith("fail") for row in rows) else 0), r.stderr
    assert [row.split()[1] for row in rows] == ["clock", "disk", "service"]
    # The detail column starts at the same place on every row.
    starts = {len(re.match(r"\S+\s+\S+\s+", row).group(0)) for row in rows}
    assert len(starts) == 1
    hints = [line for line in r.stdout.splitlines() if line.lstrip().startswith("-> ")]
    assert hints and all(h.index("->") in starts for h in hints)
    assert r.stdout.splitlines()[-1].startswith("3 checks: ")


def test_unknown_check_is_bad_usage_with_the_list(state: Path) -> None:
    r = maskgate("diag", "camera", "nope", "--state", state)
    assert r.returncode == 2
    assert "unknown check 'nope'" in r.stderr and "camera, models, door" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_a_crashing_check_fails_alone(state: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture) -> None:
    def broken(ctx: diag.Context) -> diag.Finding:
        raise ZeroDivisionError("boom")

    monkeypatch.setitem(diag.CHECKS, "clock", broken)
    rc = diag_cmd.run_checks(["clock", "disk"], config.Config(), state, Output(True))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 1
    assert lines[0]["status"] == "fail" and "internal error: ZeroDivisionError: boom" in lines[0]["detail"]
    assert "--debug" in lines[0]["hint"]
    assert lines[1]["check"] == "disk" and lines[1]["status"] == "ok"


# ---- camera ----

def test_camera_opencv_without_a_device_fails_with_a_hint(state: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", '[camera]\nsource = "opencv"\ndevice = "/dev/video97"\n')
    r = maskgate("diag", "camera", "--json", "--config", cfg, "--state", state)
    (line,) = r.json_lines()
    assert r.returncode == 1
    assert line["status"] == "fail" and "/dev/video97" in line["detail"]
    assert "/dev/video" in line["hint"] and "Traceback" not in r.stderr


def test_camera_recording_without_a_face_warns(state: Path, tmp_path: Path) -> None:
    folder = tmp_path / "empty-room"
    folder.mkdir()
    for i in range(3):  # a grey wall: readable frames, nobody in them
        cv2.imwrite(str(folder / f"{i}.png"), np.full((240, 320, 3), 128, np.uint8))
    f = diag.check_camera(ctx_for(state, f'[camera]\npath = "{folder}"\n'))
    assert f.status == "warn"
    assert "320x240" in f.detail and "no face visible" in f.detail and "brightness 128" in f.detail
    assert "stand" in f.hint


def test_camera_dark_recording_says_so(state: Path, tmp_path: Path) -> None:
    folder = tmp_path / "night"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), np.full((120, 160, 3), 10, np.uint8))
    f = diag.check_camera(ctx_for(state, f'[camera]\npath = "{folder}"\n'))
    assert f.status == "warn" and "dark" in f.hint


def test_camera_unreadable_recording_fails(state: Path, tmp_path: Path) -> None:
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"not a video")
    f = diag.check_camera(ctx_for(state, f'[camera]\npath = "{bad}"\n'))
    assert f.status == "fail" and "not a readable video" in f.detail and "camera.path" in f.hint


def test_camera_fixture_clip_shows_a_face(state: Path) -> None:
    f = diag.check_camera(ctx_for(state, f'[camera]\npath = "{FIXTURES / "d11.mp4"}"\n'))
    assert f.status == "warn"  # only because it is a recording
    assert "recording d11.mp4: 512x512 at 25.0 fps" in f.detail and "face visible" in f.detail


# ---- models ----

MANIFEST = """default = "int8"
[input]
height = 56
width = 112
channels = "RGB"
mean = 127.5
std = 128.0
[output]
dim = 128
normalised = "L2"
[models.int8]
file = "eye_int8.tflite"
sha256 = "{sha}"
bytes = {size}
threshold = 0.5
"""


def fake_models(tmp_path: Path, payload: bytes, sha: str | None = None) -> Path:
    import hashlib

    d = tmp_path / "models"
    d.mkdir()
    (d / "eye_int8.tflite").write_bytes(payload)
    (d / "manifest.toml").write_text(MANIFEST.format(sha=sha or hashlib.sha256(payload).hexdigest(),
                                                     size=len(payload)))
    return d


def test_altered_model_file_fails(state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = fake_models(tmp_path, b"TFL3" + bytes(64), sha="0" * 64)
    monkeypatch.setenv("MASKGATE_MODELS", str(d))
    f = diag.check_models(ctx_for(state))
    assert f.status == "fail" and "eye_int8.tflite sha256 differs from the manifest" in f.detail
    assert "reinstall" in f.hint


def test_model_the_runtime_cannot_load_fails(state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASKGATE_MODELS", str(fake_models(tmp_path, b"not a flatbuffer" * 8)))
    f = diag.check_models(ctx_for(state))
    assert f.status == "fail" and "eye_int8.tflite" in f.detail and "reinstall" in f.hint


def test_missing_model_file_and_manifest_fail(state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = fake_models(tmp_path, b"x")
    (d / "eye_int8.tflite").unlink()
    monkeypatch.setenv("MASKGATE_MODELS", str(d))
    f = diag.check_models(ctx_for(state))
    assert f.status == "fail" and "eye_int8.tflite missing" in f.detail
    (d / "manifest.toml").unlink()
    f = diag.check_models(ctx_for(state))
    assert f.status == "fail" and "manifest.toml is missing" in f.detail


def test_a_corrupted_copy_of_the_real_model_fails(state: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    real = ROOT / "models"
    if not (real / "manifest.toml").exists():
        pytest.skip("models/ holds no trained model in this checkout")
    d = tmp_path / "models"
    shutil.copytree(real, d)
    monkeypatch.setenv("MASKGATE_MODELS", str(d))
    f = diag.check_models(ctx_for(state))
    assert f.status == "ok" and "known answer" in f.detail
    model = next(d.glob("*.tflite"))
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit on the SD card
    model.write_bytes(bytes(data))
    f = diag.check_models(ctx_for(state))
    assert f.status == "fail" and f"{model.name} sha256 differs" in f.detail


# ---- vault ----

def test_vault_with_people_is_ok(state: Path) -> None:
    from edge.vault import Vault

    Vault.open(state).add("Ann", [unit(seed=1), unit(seed=2)], consent="form 12", space=SPACE)
    f = diag.check_vault(ctx_for(state))
    assert f.status == "ok", f
    from edge.config import MatchConfig
    from edge.match import gate_threshold

    # One person: too few to estimate the site's stranger rate; the model's calibration for 2 templates.
    t = gate_threshold(2, load_spec(), MatchConfig())[0]
    assert "1 person, 2 templates" in f.detail and f"decision threshold {t:.3f}" in f.detail
    assert "too few people enrolled" in f.detail


def test_vault_too_big_for_the_stranger_rate_warns(state: Path) -> None:
    """Every person enrolled is one more chance for a stranger; past what the model was calibrated
    for, diag says the gate cannot hold match.stranger_rate."""
    from edge.vault import Vault

    v = Vault.open(state)
    for i in range(2):   # too few to estimate the site's own rate: the model's calibration alone
        v.add(f"P{i}", [unit(seed=i)], consent="form 12", space=SPACE)
    f = diag.check_vault(ctx_for(state))
    assert f.status == "ok" and "decision threshold" in f.detail, f
    f = diag.check_vault(ctx_for(state, "[match]\nstranger_rate = 1e-5\n"))
    assert f.status == "warn" and "strangers in more often than match.stranger_rate = 1e-05" in f.detail, f
    rarest = load_spec().tail[-1][1]
    assert f"decision threshold {rarest:.3f}" in f.detail


def test_vault_of_another_model_fails_with_a_hint(state: Path) -> None:
    """After a model update the old templates match nothing: diag says so and how to fix it."""
    from edge.vault import Vault

    Vault.open(state).add("Ann", [unit(seed=1)], consent="form 12")   # no embedder recorded: older release
    f = diag.check_vault(ctx_for(state))
    assert f.status == "fail" and "earlier maskgate release" in f.detail and "enrol them again" in f.hint, f


def test_foreign_vault_fails_with_a_hint(state: Path, tmp_path: Path) -> None:
    from edge.vault import Vault

    other = tmp_path / "other-gate"
    Vault.open(other).add("Bob", [unit()], consent="form 7")
    Vault.open(state)  # this gate's own key
    shutil.copy(other / "vault.bin", state / "vault.bin")
    f = diag.check_vault(ctx_for(state))
    assert f.status == "fail"
    assert "another board" in f.detail and "board that sealed it" in f.hint
    r = maskgate("diag", "vault", "--state", state, env={"MASKGATE_DEVICE_ID": "diag-test-board"})
    assert r.returncode == 1 and r.stdout.startswith("fail  vault")


def test_key_readable_by_others_fails(state: Path) -> None:
    from edge.vault import Vault

    Vault.open(state).add("Ann", [unit()], consent="form 12", space=SPACE)
    os.chmod(state / "device.key", 0o644)
    f = diag.check_vault(ctx_for(state))
    assert f.status == "fail" and "mode 0644" in f.detail
    assert "chmod 600" in f.hint and "rekey" in f.hint


def test_expired_records_are_a_backlog(state: Path) -> None:
    from edge.vault import Vault

    v = Vault.open(state)
    v.add("Ann", [unit(seed=1)], consent="form 12", space=SPACE)
    v.add("Temp", [unit(seed=2)], consent="form 13", expires=time.time() - 86400, space=SPACE)
    f = diag.check_vault(ctx_for(state))
    assert f.status == "warn" and "1 past expiry" in f.detail and "templates purge" in f.hint



def _site_with_faces(state: Path, people: int, faces: bool) -> None:
    """``people`` people of 3 templates each, clustered (separable); with ``faces``, a whole-face
    embedding beside each template, by the installed face model's embedder."""
    from edge.fusion import FaceModel
    from edge.vault import Vault

    rng = np.random.default_rng(7)
    face_space = FaceModel(config.Config().embed).space
    v = Vault.open(state)
    for i in range(people):
        eye_c, face_c = rng.standard_normal(128), rng.standard_normal(128)
        eyes = [eye_c + 0.6 * rng.standard_normal(128) for _ in range(3)]
        chips = [face_c + 0.15 * rng.standard_normal(128) for _ in range(3)]
        v.add(f"P{i:02d}", [e / np.linalg.norm(e) for e in eyes], consent="form 12", space=SPACE,
              faces=[c / np.linalg.norm(c) for c in chips] if faces else None,
              face_space=face_space if faces else "")


def test_vault_reports_the_fused_estimate_the_gate_decides_bare_faces_with(state: Path) -> None:
    """With the whole-face model and face templates the gate judges a bare face on the fused score
    (edge.fusion.thresholds); diag vault reports that estimate too, and its JSON line keeps its keys."""
    from edge import fusion
    from edge.calibration import calibrate
    from edge.vault import Vault

    _site_with_faces(state, 12, faces=True)
    r = diag.run_one("vault", ctx_for(state))
    assert r.status == "ok", r
    v = Vault.open(state)
    model = fusion.FaceModel(config.Config().embed)
    ids, rows = v.gallery()
    limits = fusion.thresholds((ids, rows), v.face_gallery(model.space), model, load_spec(), config.Config().match)
    assert limits.fused is not None
    line = r.as_dict()
    assert list(line)[:3] == ["check", "status", "detail"] and line["check"] == "vault"
    eye, fused = line["calibration"]["eye"], line["calibration"]["fused"]
    assert eye["threshold"] == pytest.approx(calibrate(ids, rows, load_spec(), config.Config().match).threshold, abs=1e-4)
    assert fused["threshold"] == pytest.approx(limits.fused_threshold, abs=1e-4)
    assert fused["threshold"] != pytest.approx(eye["threshold"], abs=1e-3)   # a different rule, not the eye's again
    assert fused["people"] == 12 and fused["estimated"] and 0.0 <= fused["strangers"] <= 1.0
    assert f"lower face visible (face+eye): {limits.fused.summary()}" in r.detail
    assert f"fused threshold {limits.fused_threshold:.3f}" in r.detail
    assert r.detail.index("decision threshold") < r.detail.index("fused threshold")
    json.dumps(line)   # plain JSON types


def test_vault_without_face_templates_reports_the_eye_estimate_alone(state: Path) -> None:
    _site_with_faces(state, 4, faces=False)
    line = diag.run_one("vault", ctx_for(state)).as_dict()
    assert line["calibration"]["fused"] is None and line["calibration"]["eye"]["people"] == 4
    assert "face+eye" not in line["detail"] and "strangers admitted about" in line["detail"]


def test_vault_json_line_through_the_command(state: Path) -> None:
    _site_with_faces(state, 3, faces=True)
    r = maskgate("diag", "vault", "--json", "--state", state, env={"MASKGATE_DEVICE_ID": "diag-test-board"})
    (line,) = r.json_lines()
    assert {"check", "status", "detail", "calibration"} <= set(line) and line["check"] == "vault", r.stderr
    assert set(line["calibration"]) == {"eye", "fused"} and line["calibration"]["fused"]["people"] == 3


# ---- audit ----

def test_audit_chain_ok_then_tampered(state: Path) -> None:
    from edge.audit import AuditLog

    log = AuditLog(state)
    for i in range(3):
        log.append("test", n=i)
    f = diag.check_audit(ctx_for(state))
    assert f.status == "ok" and "chain intact, 3 entries" in f.detail and "oldest" in f.detail
    path = state / "audit.log"
    path.write_bytes(path.read_bytes().replace(b'"n": 1', b'"n": 7').replace(b'"n":1', b'"n":7'))
    f = diag.check_audit(ctx_for(state))
    assert f.status == "fail" and "line" in f.detail and "evidence" in f.hint


# ---- door ----

def test_door_inputs_without_yes_do_not_click(state: Path) -> None:
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    f = diag.check_door(ctx_for(state, "[door]\ncontact_pin = 22\nrex_pin = 23\n", pin_factory=factory))
    assert f.status == "warn"
    assert "relay GPIO 17 off, contact open, rex released" in f.detail and "--yes" in f.hint
    assert "contact (GPIO 22) read open" in f.hint  # idle mock inputs read open: a cut wire looks the same
    assert not factory.pin(17).states[-1].state  # the relay was never driven on


def _click_test(state: Path, open_door: bool) -> diag.Finding:
    """Run the --yes click on mock pins; a 'person' opens the door while the relay is on."""
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    ctx = ctx_for(state, "[door]\nopen_s = 0.6\ncontact_pin = 22\n", yes=True, pin_factory=factory)
    result: list[diag.Finding] = []
    t = threading.Thread(target=lambda: result.append(diag.check_door(ctx)))
    t.start()
    relay = factory.pin(17)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not relay.state:
        time.sleep(0.01)
    assert relay.state, "the relay was not driven on"
    if open_door:
        contact = factory.pin(22)
        contact.drive_low()   # shut (the switch closes to ground)
        time.sleep(0.05)
        contact.drive_high()  # pushed open while the strike is released
    t.join(10)
    assert not relay.state, "relay left on"
    return result[0]


def test_relay_click_seen_by_the_contact(state: Path) -> None:
    f = _click_test(state, open_door=True)
    assert "relay clicked for 0.6 s" in f.detail and "the door contact saw the door open" in f.detail
    # the technician's unlock is in the audit log, as the gate's own unlocks are
    log = [json.loads(line) for line in (state / "audit.log").read_text().splitlines()]
    [unlock] = [e for e in log if e.get("action") == "unlock"]
    assert (unlock["event"], unlock["by"], unlock["source"]) == ("door", "technician", "diag")
    assert any(e.get("action") == "contact" and e.get("open") for e in log)
    from edge.audit import verify_file

    assert verify_file(state / "audit.log", state / "audit.head").ok


def test_relay_click_not_seen_by_the_contact(state: Path) -> None:
    f = _click_test(state, open_door=False)
    assert f.status == "warn" and "did not see the door open" in f.detail and "GPIO 22" in f.hint


# ---- clock, board, service (fake /proc and /sys) ----

def fake_root(tmp_path: Path, model: str | None = None, temp_mc: int | None = None, rtc: bool = False) -> Path:
    root = tmp_path / "root"
    (root / "sys/class/thermal").mkdir(parents=True)
    (root / "dev").mkdir()
    if model is not None:
        (root / "proc/device-tree").mkdir(parents=True)
        (root / "proc/device-tree/model").write_bytes(model.encode() + b"\x00")
    if temp_mc is not None:
        zone = root / "sys/class/thermal/thermal_zone0"
        zone.mkdir()
        (zone / "temp").write_text(f"{temp_mc}\n")
    if rtc:
        (root / "sys/class/rtc/rtc0").mkdir(parents=True)
    return root


@pytest.mark.parametrize("model, temp, status, words", [
    ("NVIDIA Jetson Orin Nano Developer Kit", 45000, "ok", "CPU 45 C"),
    ("NVIDIA Jetson Orin Nano Developer Kit", 74000, "warn", "runs hot"),
    ("NVIDIA Jetson Orin Nano Developer Kit", 86500, "fail", "throttling limit"),
    (None, None, "warn", "no /sys/class/thermal"),
])
def test_board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model, temp, status, words) -> None:
    monkeypatch.setattr(diag.base, "SYS", fake_root(tmp_path, model, temp))
    f = diag.check_board(ctx_for(tmp_path))
    assert f.status == status
    assert words in f.detail + f.hint
    if model:
        assert f.detail.startswith(model)


def test_pi_without_vcgencmd_says_how_to_read_throttling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diag.base, "SYS", fake_root(tmp_path, "Raspberry Pi 5 Model B Rev 1.0", 50000))
    monkeypatch.setenv("PATH", str(tmp_path))  # no vcgencmd on this PATH
    f = diag.check_board(ctx_for(tmp_path))
    assert f.status == "warn" and "vcgencmd missing" in f.detail and "libraspberrypi-bin" in f.hint


def test_pi_throttling_from_vcgencmd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diag.base, "SYS", fake_root(tmp_path, "Raspberry Pi 4 Model B Rev 1.4", 60000))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "vcgencmd"  # the firmware tool's real output format, from a script
    tool.write_text("#!/bin/sh\necho throttled=0x50005\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    f = diag.check_board(ctx_for(tmp_path))
    assert f.status == "fail" and "under-voltage now" in f.detail and "power supply" in f.hint


def test_throttle_flags() -> None:
    assert diag.throttle_flags(0) == []
    assert diag.throttle_flags(0x50005) == ["under-voltage now", "throttled now", "under-voltage has occurred",
                                            "throttling has occurred"]


def test_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diag.base, "SYS", fake_root(tmp_path, rtc=True))
    assert diag.check_clock(ctx_for(tmp_path)).status == "ok"
    monkeypatch.setattr(diag.base, "SYS", fake_root(tmp_path / "b"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no timedatectl: no time source either
    f = diag.check_clock(ctx_for(tmp_path))
    assert f.status == "fail" and "no real-time clock and no time source" in f.detail
    assert "RTC" in f.hint and "Pi 5" in f.hint and "admin USB stick" in f.hint
    (tmp_path / "b/root/run/systemd/timesync").mkdir(parents=True)   # systemd-timesyncd has synchronised
    (tmp_path / "b/root/run/systemd/timesync/synchronized").touch()
    f = diag.check_clock(ctx_for(tmp_path))
    assert f.status == "warn" and "no real-time clock" in f.detail


def test_service_without_systemd_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diag.base, "SYS", fake_root(tmp_path))
    f = diag.check_service(ctx_for(tmp_path))
    assert f.status == "warn" and "systemd is not running" in f.detail


def test_disk_of_a_missing_state_dir_warns(tmp_path: Path) -> None:
    f = diag.check_disk(ctx_for(tmp_path / "not" / "yet"))
    assert f.status == "warn" and "does not exist yet" in f.detail and "GB free" in f.detail


# ---- preview ----

@pytest.mark.parametrize("pd, box, hint", [
    (20.0, (200, 200, 260, 270), "move closer"),
    (30.0, (200, 200, 280, 290), "a little closer"),
    (80.0, (150, 100, 400, 400), "good distance"),
    (80.0, (0, 100, 300, 400), "move further"),      # the face runs off the image
    (250.0, (100, 10, 600, 470), "move further"),
])
def test_distance_hint(pd, box, hint) -> None:
    assert diag.distance_hint(pd, box, (640, 480), 28.0) == hint


def _preview(tmp_path: Path, extra: str = "", *args: str) -> subprocess.CompletedProcess:
    cfg = write_config(tmp_path / "p.toml", f'[camera]\npath = "{FIXTURES / "d11.mp4"}"\nrealtime = false\n{extra}')
    work = tmp_path / "cwd"
    work.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DISPLAY": ""}
    p = subprocess.run([sys.executable, "-m", "edge.cli", "preview", "--config", str(cfg), *args],
                       capture_output=True, text=True, timeout=300, cwd=work, env=env)
    assert not any(work.iterdir()), "preview saved something"
    return p


def test_preview_text_readout_on_a_clip(tmp_path: Path) -> None:
    p = _preview(tmp_path)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("preview of replay:") and "nothing is saved" in lines[0]
    readings = lines[1:]
    assert 35 <= len(readings) <= 50  # five a second over the 9 s clip, one line each off a TTY
    assert "\r" not in p.stdout
    assert all("pupils" in r and r.endswith("good distance") for r in readings), readings[:3]


def test_preview_says_move_closer_when_the_gate_needs_bigger_faces(tmp_path: Path) -> None:
    p = _preview(tmp_path, "[vision]\nmin_pupil_distance_px = 150\n", "--json")
    assert p.returncode == 0, p.stderr
    readings = [json.loads(line) for line in p.stdout.splitlines()]
    faces = [r for r in readings if r["face"]]
    assert faces and all(r["hint"] == "move closer" for r in faces)
    assert set(faces[0]) == {"t", "face", "box", "yaw", "pitch", "roll", "pupil_distance", "hint"}


def test_preview_ctrl_c_exits_0(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "p.toml", f'[camera]\npath = "{FIXTURES / "d11.mp4"}"\nrealtime = true\n'
                                            'loop = true\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DISPLAY": ""}
    p = subprocess.Popen([sys.executable, "-m", "edge.cli", "preview", "--config", str(cfg)], cwd=ROOT,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [p.stdout.readline() for _ in range(4)]  # the banner and three readings
        assert all("pupils" in line for line in lines[1:]), lines
        p.send_signal(signal.SIGINT)
        rc = p.wait(30)
    finally:
        p.kill()
    assert rc == 0 and "Traceback" not in p.stderr.read()
