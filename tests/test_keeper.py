"""The door keeper (edge/keeper.py): a process of its own that owns the pins and times every pulse.

Real processes throughout: ``maskgate door-keeper`` and ``maskgate run`` as a user or systemd would
start them, killed with real signals; the relay's state is read back from the audit log the keeper
writes (mock pins live inside the keeper process).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from conftest import ROOT, maskgate
from edge.audit import verify_file
from edge.camera.replay import demo_clip
from edge.config import Config, replace
from edge.errors import DoorError
from edge.keeper import Keeper, KeeperDoor, socket_path

ENROLL = Path(demo_clip()).parent / "enroll"


def audit(state: Path) -> list[dict]:
    p = state / "audit.log"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


def wait_for(pred, timeout: float, step: float = 0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(step)
    return pred()


def door_events(state: Path, action: str) -> list[dict]:
    return [e for e in audit(state) if e["event"] == "door" and e.get("action") == action]


def ts(entry: dict) -> float:
    return datetime.fromisoformat(entry["ts"]).timestamp()


def keeper_config(tmp_path: Path, open_s: float = 30.0) -> Path:
    p = tmp_path / "keeper.toml"
    p.write_text(f'[door]\nbackend = "mock"\nopen_s = {open_s}\n')
    return p


def start_keeper(cfg: Path, state: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-m", "edge.cli", "door-keeper", "--config", str(cfg), "--state", str(state)],
                         cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    def up() -> bool:
        try:
            return KeeperDoor(state / "keeper.sock").status()["pid"] == p.pid
        except (DoorError, KeyError):
            return p.poll() is not None

    assert wait_for(up, 60, 0.1), "keeper never listened"
    assert p.poll() is None, p.stderr.read()
    return p


def stop_keeper_at(state: Path) -> None:
    """Whatever keeper serves this state dir (one `maskgate run` started): SIGTERM and wait."""
    try:
        pid = KeeperDoor(state / "keeper.sock", timeout=2).status()["pid"]
    except (DoorError, KeyError):
        return
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10)


# ---- in this process: the protocol and the bounds ----

@pytest.fixture
def keeper(tmp_path: Path, state: Path):
    import threading

    factory = MockFactory()
    cfg = replace(Config(), "door", open_s=0.5)
    k = Keeper(cfg, state, pin_factory=factory)
    t = threading.Thread(target=k.serve, daemon=True)
    t.start()
    yield k, factory.pin(17)
    k.stop.set()
    t.join(5)
    k.close()


def test_a_grant_pulses_for_the_keepers_open_s_and_is_not_extended_from_outside(keeper, state):
    k, relay = keeper
    door = KeeperDoor(k.path)
    door.grant()
    assert relay.state is True  # on when the reply came
    t0 = time.monotonic()
    time.sleep(0.3)
    door.grant()  # a second request while on: no longer pulse
    assert wait_for(lambda: relay.state is False, 2)
    assert 0.4 <= time.monotonic() - t0 + 0.0 <= 0.9
    assert door.status()["relay"] == "off"
    assert len(door_events(state, "unlock")) == 1
    assert [e["reason"] for e in door_events(state, "lock")] == ["timeout"]


def test_every_listener_hears_each_door_change_from_one_watcher(keeper):
    """The daemon listens twice (audit of the event stream, display): one status watcher serves both."""
    import threading

    k, _ = keeper
    door = KeeperDoor(k.path)
    heard: tuple[list, list] = ([], [])
    before = {t.name for t in threading.enumerate()}
    door.on_event(heard[0].append, every_s=0.05)
    door.on_event(heard[1].append, every_s=0.05)
    watchers = [t for t in threading.enumerate() if t.name == "keeper-door-events"]
    assert len(watchers) == 1 and "keeper-door-events" not in before
    time.sleep(0.2)   # the watcher's first status is its baseline
    door.grant()
    assert wait_for(lambda: all(any(e.get("action") == "lock" for e in h) for h in heard), 3)
    assert [e["action"] for e in heard[0] if "action" in e] == [e["action"] for e in heard[1] if "action" in e]
    assert [e["action"] for e in heard[0] if "action" in e][:2] == ["unlock", "lock"]
    door.close()


def test_bad_requests_are_answered_and_the_keeper_carries_on(keeper):
    import socket

    k, relay = keeper
    door = KeeperDoor(k.path)
    with pytest.raises(DoorError, match="unknown op 'open'"):
        door.call({"op": "open", "seconds": 3600})
    with pytest.raises(DoorError, match="unknown pattern"):
        door.call({"op": "indicate", "pattern": "party"})
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(k.path))
    s.sendall(b"not json\n")
    assert json.loads(s.makefile("rb").readline())["ok"] is False
    s.close()
    assert relay.state is False
    door.grant()
    assert relay.state is True
    door.lock("denied")
    assert relay.state is False


def test_one_keeper_per_socket(keeper, state):
    with pytest.raises(DoorError, match="already serves"):
        Keeper(replace(Config(), "door", open_s=0.5), state, pin_factory=MockFactory())


def test_the_gate_says_when_no_keeper_answers(tmp_path):
    with pytest.raises(DoorError, match="no door keeper at"):
        KeeperDoor(tmp_path / "none.sock")


def test_a_socket_path_longer_than_unix_allows_still_works(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    k = Keeper(replace(Config(), "door", open_s=0.5), deep, pin_factory=MockFactory())
    import threading

    t = threading.Thread(target=k.serve, daemon=True)
    t.start()
    try:
        assert len(str(socket_path(Config(), deep))) > 108
        assert KeeperDoor(k.path).status()["relay"] == "off"
    finally:
        k.stop.set()
        t.join(5)
        k.close()


# ---- real processes and real signals ----

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGABRT,
                                 signal.SIGQUIT])
def test_every_catchable_signal_turns_the_relay_off_first(tmp_path, state, sig):
    p = start_keeper(keeper_config(tmp_path, open_s=30), state)
    try:
        KeeperDoor(state / "keeper.sock").grant()
        assert wait_for(lambda: door_events(state, "unlock"), 5)
        p.send_signal(sig)
        _, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert "Traceback" not in err
    locks = door_events(state, "lock")
    assert [e["reason"] for e in locks] == ["signal"]  # the signal, not the 30 s timeout
    assert audit(state)[-1] | {"seq": 0, "ts": "", "prev": ""} == {"seq": 0, "ts": "", "prev": "", "event": "keeper",
                                                                  "action": "stop", "relay": "off"}
    assert verify_file(state / "audit.log", state / "audit.head").ok


def _unit_command(key: str, cfg: Path, state: Path) -> list[str]:
    line = next(s for s in (ROOT / "systemd/maskgate-keeper.service").read_text().splitlines()
                if s.startswith(key + "="))
    exe, *argv = shlex.split(line.split("=", 1)[1])
    assert exe == "/opt/maskgate/venv/bin/maskgate"
    argv = [str(cfg) if a == "/etc/maskgate/maskgate.toml" else str(state) if a == "/var/lib/maskgate" else a
            for a in argv]
    return [sys.executable, "-m", "edge.cli", *argv]


def test_sigkill_of_the_keeper_then_the_units_exec_stop_post_turns_the_line_off(tmp_path, state):
    cfg = keeper_config(tmp_path, open_s=30)
    p = start_keeper(cfg, state)
    KeeperDoor(state / "keeper.sock").grant()
    assert wait_for(lambda: door_events(state, "unlock"), 5)
    p.kill()
    p.wait(10)
    assert not door_events(state, "lock")  # nothing in the process could act on SIGKILL
    argv = _unit_command("ExecStopPost", cfg, state)
    assert argv[-5:] == ["--relay-off", "--config", str(cfg), "--state", str(state)]
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "SERVICE_RESULT": "signal", "EXIT_CODE": "killed"})
    assert r.returncode == 0, r.stderr
    assert [(e["reason"], e["by"]) for e in door_events(state, "lock")] == [("keeper stopped", "exec-stop-post")]
    # and a restarted keeper takes the socket over from the dead one
    p = start_keeper(cfg, state)
    try:
        door = KeeperDoor(state / "keeper.sock")
        assert door.status()["relay"] == "off"
        door.grant()
        # the command leaves a live keeper's pins alone (it would cut a resident's unlock short)
        r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and door.status()["relay"] == "on", r.stderr
        assert len(door_events(state, "lock")) == 1
    finally:
        p.terminate()
        p.wait(10)
    assert verify_file(state / "audit.log", state / "audit.head").ok


def test_the_relay_off_command_drives_a_real_line_off():
    """What --relay-off does to the pin itself (mock pins are per process, so here in-process)."""
    from edge.door import open_door

    factory = MockFactory()
    relay = factory.pin(17)
    relay.function = "output"
    relay.state = True  # a line left driven by a dead keeper
    door = open_door(replace(Config(), "door", backend="mock").door, pin_factory=factory)
    door.close()
    assert relay.state is False and relay.function == "input"


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("kstate")
    r = maskgate("enroll", "Demo Person", "--from", ENROLL, "--consent", "signed form #1", "--state", state)
    assert r.returncode == 0, r.stderr
    return state


def test_sigkill_of_maskgate_run_right_after_an_unlock_leaves_the_relay_off_within_open_s(tmp_path, enrolled):
    """Done-when of issue 20: the gate on the bundled clip with a mock door, killed with SIGKILL right
    after the unlock; the keeper it started outlives it and ends the pulse on time."""
    open_s = 2.0
    cfg = tmp_path / "maskgate.toml"
    cfg.write_text(f'[camera]\nsource = "replay"\npath = "{demo_clip()}"\nrealtime = true\n'
                   f'[door]\nbackend = "mock"\nopen_s = {open_s}\n'
                   f'[liveness]\nchallenges = ["blink"]\nsteps = 1\n')
    p = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(cfg), "--state", str(enrolled)],
                         cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        unlock = wait_for(lambda: door_events(enrolled, "unlock") or p.poll() is not None, 180, 0.005)
        assert isinstance(unlock, list), p.stderr.read()
        p.kill()
        p.wait(10)
        killed = time.time()
        lock = wait_for(lambda: door_events(enrolled, "lock"), open_s + 3)
        assert lock, audit(enrolled)
        assert lock[0]["reason"] == "timeout"
        assert ts(lock[0]) - ts(unlock[0]) <= open_s + 1
        assert ts(lock[0]) >= killed - 0.5  # the pulse outlived the gate: the keeper ended it
        assert unlock[0]["by"] == "grant"
    finally:
        if p.poll() is None:
            p.kill()
        stop_keeper_at(enrolled)
    assert verify_file(enrolled / "audit.log", enrolled / "audit.head").ok


def test_maskgate_run_keeps_deciding_when_the_audit_log_cannot_be_written(tmp_path, enrolled):
    """The log's path is a directory (every write fails, as on a full or read-only disk, which root
    in a test cannot make): the gate still runs, grants, and the keeper still pulses the relay."""
    import shutil

    state = tmp_path / "state"
    shutil.copytree(enrolled, state, ignore=shutil.ignore_patterns("audit.*", "keeper.*"))
    (state / "audit.log").mkdir()
    cfg = tmp_path / "maskgate.toml"
    cfg.write_text(f'[camera]\nsource = "replay"\npath = "{demo_clip()}"\nrealtime = true\nloop = true\n'
                   f'[door]\nbackend = "mock"\nopen_s = 1.0\n[liveness]\nchallenges = ["blink"]\nsteps = 1\n')
    p = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(cfg), "--state", str(state)],
                         cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def relay_on() -> bool:
        try:
            return KeeperDoor(state / "keeper.sock").status()["relay"] == "on" or p.poll() is not None
        except DoorError:
            return p.poll() is not None

    try:
        assert wait_for(relay_on, 180, 0.05)
        assert p.poll() is None, p.stderr.read()  # granted with no log to write, and still running
        p.terminate()
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
        stop_keeper_at(state)
    assert p.returncode == 0, err
    assert "audit log" in err and "the gate carries on and retries" in err and "Traceback" not in err
