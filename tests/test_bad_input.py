"""Issue 20's table, row by row: every bad input is a clear one-line error and exit 1 or 2 (no
traceback, no signal death, no vault left unreadable), and the audit rows keep the gate working."""

from __future__ import annotations

import errno
import json
import os
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import ROOT, maskgate
from edge import audit as audit_mod
from edge.audit import AuditLog, verify_file
from edge.config import Config, MatchConfig, replace
from edge.errors import ConfigError, ModelError

ENROLL = ROOT / "edge" / "demo" / "enroll"


def one_line_error(r, code: int = 2, *needles: str) -> None:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("maskgate: error: "), r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


# ---- the audit log cannot be written ----

def test_a_failed_audit_write_raises_nothing_is_retried_and_verifies(tmp_path, monkeypatch):
    log = AuditLog(tmp_path)
    log.append("service", action="start")
    real = AuditLog._write_line

    def full(self, line):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(AuditLog, "_write_line", full)
    out = log.append("decision", granted=False, reason="not recognised")
    assert out["written"] is False and log.failing and "No space left" in log.last_error
    log.append("door", action="lock")
    monkeypatch.setattr(AuditLog, "_write_line", real)
    log.append("camera", action="restored")
    assert not log.failing
    entries = [json.loads(x) for x in (tmp_path / "audit.log").read_text().splitlines()]
    assert [e["event"] for e in entries] == ["service", "decision", "door", "camera"]
    assert "made" in entries[1] and "made" in entries[2] and "made" not in entries[3]
    assert verify_file(tmp_path / "audit.log", tmp_path / "audit.head").ok


def test_a_short_write_leaves_no_torn_line(tmp_path, monkeypatch):
    log = AuditLog(tmp_path)
    log.append("service", action="start")
    write = os.write
    monkeypatch.setattr(audit_mod.os, "write", lambda fd, data: write(fd, data[:10]))
    assert log.append("door", action="lock")["written"] is False
    monkeypatch.undo()
    log.append("door", action="unlock")
    assert verify_file(tmp_path / "audit.log", tmp_path / "audit.head").ok
    assert len((tmp_path / "audit.log").read_text().splitlines()) == 3


def test_verify_tells_a_lagging_head_from_truncation(tmp_path, monkeypatch):
    log = AuditLog(tmp_path)
    for i in range(3):
        log.append("tick", i=i)
    monkeypatch.setattr(AuditLog, "_write_head", lambda self: (_ for _ in ()).throw(OSError(errno.EROFS, "ro")))
    for i in range(3):
        log.append("tick", i=10 + i)  # lines in, head not updated
    v = verify_file(tmp_path / "audit.log", tmp_path / "audit.head")
    assert v.ok and "the last 3 were appended after audit.head was last updated" in v.detail
    r = maskgate("audit", "verify", "--state", tmp_path)
    assert r.returncode == 0 and "not a truncation" in r.stdout
    # cut two lines off the end: that is truncation, whatever the head says
    lines = (tmp_path / "audit.log").read_bytes().splitlines(keepends=True)
    (tmp_path / "audit.head").write_text(json.dumps({"seq": 5, "hash": audit_mod.line_hash(lines[-1].rstrip())}))
    (tmp_path / "audit.log").write_bytes(b"".join(lines[:-2]))
    v = verify_file(tmp_path / "audit.log", tmp_path / "audit.head")
    assert not v.ok and "cut off the end" in v.detail


def test_the_gate_keeps_deciding_when_the_log_cannot_be_written(tmp_path, monkeypatch):
    from edge.gate import Gate

    class Door:
        calls: list = []

        def lock(self, *a):
            self.calls.append("lock")

        def indicate(self, p):
            self.calls.append(p)

    log = AuditLog(tmp_path)
    monkeypatch.setattr(AuditLog, "_write_line", lambda self, line: (_ for _ in ()).throw(OSError(errno.EROFS, "ro")))
    door = Door()
    gate = Gate(Config(), None, None, door, log, lambda ev: None)
    gate._deny(1.0, "not recognised")  # writes a decision line: fails, raises nothing
    assert log.failing
    assert door.calls[-2:] == ["fault", "denied"]  # the fault pattern instead of idle, then the beeps


# ---- the door's order and patterns ----

def test_grant_moves_the_relay_before_the_audit_line_and_the_last_seen_time():
    from edge.gate import Gate
    from edge.match import Match

    order: list[str] = []

    class Door:
        def grant(self):
            order.append("relay")

        def lock(self, *a):
            pass

        def indicate(self, p):
            order.append(f"indicate:{p}")

    class Audit:
        failing = False

        def append(self, event, **f):
            order.append(f"audit:{event}")

    class Vault:
        def touch(self, pid):
            order.append("touch")

        def name_of(self, pid):
            return "Demo"

        def find(self, pid):  # the access rules read the person's groups and pass
            return SimpleNamespace(id=pid, groups=(), valid_from=None, valid_until=None)

    gate = Gate(Config(), Vault(), None, Door(), Audit(), lambda ev: None)
    gate._grant(2.0, Match("p-0123456789abcdef", 0.9, 0.1))
    assert order[0] == "relay"
    assert order.index("audit:decision") < order.index("touch")


def test_lockout_shows_its_pattern():
    from edge.gate import Gate

    shown: list[str] = []

    class Door:
        def lock(self, *a):
            pass

        def indicate(self, p):
            shown.append(p)

    gate = Gate(replace(Config(), "gate", max_failures=2), None, None, Door(), None, lambda ev: None)
    gate._deny(1.0, "x")
    gate._deny(5.0, "x")
    assert shown == ["idle", "denied", "lockout", "denied"]


# ---- config: every value and the rules between them ----

@pytest.mark.parametrize("text, says", [
    ("[door]\nrelay_pin = 5\nrex_pin = 5\n", "door.relay_pin and door.rex_pin are both GPIO 5"),
    ('[liveness]\nprompt = "led"\n', 'liveness.prompt = "led" needs door.led_pin'),
    ("[service]\nretry_initial_s = 10\nretry_max_s = 5\n", "service.retry_initial_s (10) is more than"),
    ("[liveness]\nstep_timeout_s = inf\n", "liveness.step_timeout_s must be a finite number, not inf"),
    ("[door]\nopen_s = nan\n", "door.open_s must be a finite number"),
    (f'[vault]\ntrusted_keys = ["{"z" * 64}"]\n', "vault.trusted_keys must be a list of 64-character hex"),
    ("[match]\nthreshold = 0.05\n", "match.threshold = 0.05 is below the model's calibrated"),
])
def test_bad_config_is_one_line_and_exit_2(tmp_path, state, text, says):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[camera]\nsource = "replay"\n[door]\nbackend = "mock"\n' + text
                   if not text.startswith("[door]") else '[camera]\nsource = "replay"\n' + text.replace(
                       "[door]\n", '[door]\nbackend = "mock"\n'))
    r = maskgate("replay", ROOT / "tests/fixtures/d18.mp4", "--config", cfg, "--state", state, timeout=120)
    one_line_error(r, 2, says)


def test_run_refuses_the_demo_door_and_camera_unless_named(tmp_path, state):
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    one_line_error(maskgate("run", "--config", empty, "--state", state, timeout=60), 2,
                   "door.backend is not set, and its default ('mock') is for the demo")
    cam = tmp_path / "cam.toml"
    cam.write_text('[door]\nbackend = "mock"\n')
    one_line_error(maskgate("run", "--config", cam, "--state", state, timeout=60), 2,
                   "camera.source is not set, and its default ('replay') is for the demo")


def test_a_lower_threshold_needs_saying_so():
    from edge.match import gate_threshold

    class Model:
        threshold, tail = 0.58, ()

    with pytest.raises(ConfigError, match="below the model's calibrated 0.580"):
        gate_threshold(1, Model(), MatchConfig(threshold=0.05))
    assert gate_threshold(1, Model(), MatchConfig(threshold=0.05, allow_lower_threshold=True))[0] == 0.05
    assert gate_threshold(1, Model(), MatchConfig(threshold=0.7))[0] == 0.7  # higher is always allowed


@pytest.mark.parametrize("threshold", ["-1", "0", "1.0", "nan"])
def test_a_manifest_threshold_outside_0_1_refuses_the_model(tmp_path, threshold):
    models = tmp_path / "models"
    models.mkdir()
    for f in (ROOT / "models").glob("*.tflite"):
        (models / f.name).symlink_to(f)
    text = (ROOT / "models/manifest.toml").read_text()
    (models / "manifest.toml").write_text(text.replace("threshold = 0.5853", f"threshold = {threshold}", 1))
    from edge.embed import load_spec

    with pytest.raises(ModelError, match="is not between 0 and 1; the model is refused"):
        load_spec("int8", models)
    r = maskgate("embed", ENROLL / "d10_005.jpg", env={"MASKGATE_MODELS": str(models)}, timeout=120)
    one_line_error(r, 2, "the model is refused")


# ---- images and files ----

def _png_header(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))


def test_a_huge_image_is_refused_by_its_header(tmp_path, state):
    big = tmp_path / "big.png"
    big.write_bytes(_png_header(30000, 30000) + b"\x00" * 64)  # never decoded
    r = maskgate("embed", big, timeout=120)
    assert r.returncode == 2 and "30000 x 30000 pixels is more than the 40 megapixels" in r.stderr, r.stderr
    r = maskgate("enroll", "Big", "--from", big, "--consent", "form 1", "--state", state, timeout=120)
    one_line_error(r, 2, "30000 x 30000 pixels")


def test_header_sizes_of_real_images():
    from edge.camera.replay import header_size

    import cv2

    img = np.zeros((37, 53, 3), np.uint8)
    for ext in (".png", ".jpg", ".bmp"):
        ok, data = cv2.imencode(ext, img)
        assert header_size(bytes(data[:65536])) == (53, 37), ext
    jpg = cv2.imread(str(ENROLL / "d10_005.jpg"))
    assert header_size((ENROLL / "d10_005.jpg").read_bytes()[:65536]) == (jpg.shape[1], jpg.shape[0])


def test_a_fifo_is_refused_not_waited_on(tmp_path, state):
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    one_line_error(maskgate("liveness", fifo, "--challenge", "blink", timeout=60), 2, "not a regular file")
    one_line_error(maskgate("enroll", "X", "--from", fifo, "--consent", "form", "--state", state, timeout=60), 2,
                   "not a regular file")
    img = tmp_path / "a.jpg"
    os.mkfifo(img)
    r = maskgate("embed", img, timeout=60)
    assert r.returncode == 2 and "not a regular file" in r.stderr


def test_wrong_state_dirs_are_explained(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    one_line_error(maskgate("templates", "list", "--state", afile, timeout=60), 2, "is not a directory")
    one_line_error(maskgate("templates", "list", "--state", afile / "sub", timeout=60), 2,
                   "cannot create the state directory: Not a directory")


# ---- enrolment ----

@pytest.mark.parametrize("expires, says", [("9999-12-30", "more than 100 years ahead"),
                                           ("9999-12-31", "more than 100 years ahead"),
                                           ("2001-01-01", "is in the past")])
def test_expiry_dates_are_bounded_and_the_vault_stays_readable(state, expires, says):
    r = maskgate("enroll", "Demo", "--from", ENROLL, "--consent", "form 1", "--expires", expires, "--state", state,
                 timeout=120)
    one_line_error(r, 2, says)
    r = maskgate("templates", "list", "--state", state, timeout=60)
    assert r.returncode == 0, r.stderr


def test_a_vault_the_reader_would_refuse_is_never_written(state):
    from edge.errors import VaultError
    from edge.vault import Vault

    v = Vault.open(state)
    rng = np.random.default_rng(1)
    v.add("A", list(rng.normal(size=(3, 128))), "form 1")
    before = (state / "vault.bin").read_bytes() if (state / "vault.bin").exists() else None
    rec = next(iter(v._records.values()))
    object.__setattr__(rec.person, "expires", 2.5e11)  # what 9999-12-30 was: past what the reader takes
    with pytest.raises(VaultError, match="the vault about to be written"):
        v._save()  # what any change ends in
    assert Vault.open(state).people()[0].name == "A"
    if before is not None:
        assert (state / "vault.bin").read_bytes() == before


def test_names_that_look_like_person_ids_are_refused(state):
    r = maskgate("enroll", "p-0d4339b173ca90df", "--from", ENROLL, "--consent", "form 1", "--state", state,
                 timeout=60)
    one_line_error(r, 2, "looks like a person id")
    r = maskgate("enroll", "Demo", "--from", ENROLL, "--consent", "form 1", "--operator", "ann\x1b[2J",
                 "--state", state, timeout=60)
    one_line_error(r, 2, "--operator must be at most 200 printable characters")


def test_control_characters_are_escaped_in_human_output(state):
    AuditLog(state).append("vault.enroll", name="evil\x1b]0;pwned\x07\x1b[2J", operator="x\ry\nz")
    r = maskgate("audit", "show", "--state", state, timeout=60)
    assert r.returncode == 0
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout and "\r" not in r.stdout
    assert "evil\\x1b]0;pwned\\x07\\x1b[2J" in r.stdout and "x\\ry\\nz" in r.stdout
    r = maskgate("audit", "show", "--json", "--state", state, timeout=60)
    assert r.json_lines()[-1]["name"] == "evil\x1b]0;pwned\x07\x1b[2J"  # JSON carries the value itself
