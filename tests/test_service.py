"""``maskgate run`` for real: a child process on a real clip with mock door pins, talking sd_notify
to a socket this test binds (a path, and an @abstract name), stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT, maskgate
from edge.audit import verify_file
from edge.lifecycle import Notifier

WATCHDOG_USEC = 400_000  # pings every 0.2 s


class NotifySocket:
    """The systemd side of sd_notify: a datagram socket collecting messages with arrival times."""

    def __init__(self, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"maskgate-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            self._dir = tempfile.mkdtemp(prefix="mg-")  # short: AF_UNIX paths end at 107 bytes
            path = os.path.join(self._dir, "notify")
            self.sock.bind(path)
            self.env = path
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []

    def collect(self, until, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if until(self):
                return True
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))
        return until(self)

    def has(self, key: str, value: str | None = None) -> bool:
        return any(key in m and (value is None or m[key] == value) for _, m in self.messages)

    def times(self, key: str) -> list[float]:
        return [t for t, m in self.messages if key in m]

    def statuses(self) -> list[str]:
        return [m["STATUS"] for _, m in self.messages if "STATUS" in m]

    def close(self) -> None:
        self.sock.close()


def config(tmp_path: Path, path: str, **extra: str) -> Path:
    text = (f'[camera]\nsource = "replay"\npath = "{path}"\nrealtime = true\nloop = true\n'
            f'[door]\nbackend = "mock"\nopen_s = 1.0\n'
            f'[service]\nretry_initial_s = 0.2\nretry_max_s = 0.8\n')
    for section, body in extra.items():
        text += f"[{section}]\n{body}\n"
    p = tmp_path / "maskgate.toml"
    p.write_text(text)
    return p


def start(cfg: Path, state: Path, notify: NotifySocket) -> subprocess.Popen:
    env = {**os.environ, "NOTIFY_SOCKET": notify.env, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    env.pop("WATCHDOG_PID", None)
    return subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(cfg), "--state", str(state)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(p: subprocess.Popen, notify: NotifySocket) -> tuple[int, str]:
    p.send_signal(signal.SIGTERM)
    assert notify.collect(lambda n: n.has("STOPPING", "1"), 30), notify.messages
    _, err = p.communicate(timeout=30)
    return p.returncode, err


def audit_events(state: Path) -> list[dict]:
    return [json.loads(line) for line in (state / "audit.log").read_text().splitlines()]


@pytest.fixture(autouse=True)
def no_keeper_left(state):
    """`maskgate run` starts a door keeper that outlives it (edge/keeper.py): stop it after each test."""
    yield
    from test_keeper import stop_keeper_at

    stop_keeper_at(state)


@pytest.fixture
def notify():
    n = NotifySocket()
    yield n
    n.close()


def test_run_on_a_clip_notifies_pings_and_stops_cleanly(tmp_path, state, notify):
    p = start(config(tmp_path, str(FIXTURES / "d18.mp4")), state, notify)
    try:
        assert notify.collect(lambda n: n.has("READY", "1"), 120), (notify.messages, p.poll())
        ready = notify.times("READY")[0]
        assert notify.collect(lambda n: any(s.startswith("running: camera replay:") for s in n.statuses()), 30)
        assert notify.collect(lambda n: len([t for t in n.times("WATCHDOG") if t > ready]) >= 4, 30)
        rc, err = stop(p, notify)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 0, err
    assert "Traceback" not in err
    assert any(s.endswith("relay off") for s in notify.statuses())
    pings = [t for t in notify.times("WATCHDOG") if t > ready]
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert max(gaps) < WATCHDOG_USEC / 1e6  # never let half the watchdog period pass twice
    events = audit_events(state)
    assert events[0]["event"] == "service" and events[0]["action"] == "start"
    assert events[-1] | {"ts": "", "prev": "", "seq": 0} == {"ts": "", "prev": "", "seq": 0, "event": "service",
                                                              "action": "stop", "relay": "off"}
    assert verify_file(state / "audit.log", state / "audit.head").ok


def test_camera_that_cannot_open_backs_off_keeps_pinging_and_the_door_locked(tmp_path, state):
    notify = NotifySocket(abstract=True)  # systemd's @abstract socket names work too
    p = start(config(tmp_path, str(tmp_path / "no-camera.mp4")), state, notify)
    try:
        assert notify.collect(lambda n: n.has("READY", "1"), 120), (notify.messages, p.poll())
        assert notify.collect(lambda n: sum("retry 5 in" in s for s in n.statuses()) > 0, 30), notify.statuses()
        t0 = time.monotonic()
        notify.collect(lambda n: time.monotonic() - t0 > 1.0, 5)  # watch one back-off wait of 0.8 s
        rc, err = stop(p, notify)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        notify.close()
    assert rc == 0, err
    retries = [s for s in notify.statuses() if s.startswith("camera unavailable")]
    assert [s.split("; ")[1] for s in retries[:5]] == ["retry 1 in 0.2 s", "retry 2 in 0.4 s", "retry 3 in 0.8 s",
                                                       "retry 4 in 0.8 s", "retry 5 in 0.8 s"]
    assert all(s.endswith("relay off") for s in retries)
    assert "no-camera.mp4: no such file or folder" in retries[0]
    assert "retry 3 in 0.8 s (door locked)" in err  # logged for the journal too
    pings = notify.times("WATCHDOG")
    assert len(pings) >= 8 and max(b - a for a, b in zip(pings, pings[1:])) < WATCHDOG_USEC / 1e6
    events = audit_events(state)
    lost = [e for e in events if e["event"] == "camera"]
    assert len(lost) == 1 and lost[0]["action"] == "lost"  # one event per outage, not per retry
    assert not [e for e in events if e["event"] == "door" and e.get("action") == "unlock"]


def test_stalled_camera_stops_the_watchdog_pings_and_recovery_resumes_them(tmp_path, state, notify):
    """A read that never returns must starve systemd's watchdog (so systemd restarts the gate):
    the camera here is a FIFO nobody writes to, so opening it blocks inside FFmpeg."""
    fifo = tmp_path / "stalled.mp4"
    os.mkfifo(fifo)
    p = start(config(tmp_path, str(fifo)), state, notify)
    try:
        assert notify.collect(lambda n: n.has("READY", "1"), 120), (notify.messages, p.poll())
        ready = notify.times("READY")[0]
        t0 = time.monotonic()
        notify.collect(lambda n: time.monotonic() - t0 > 1.5, 5)
        assert not [t for t in notify.times("WATCHDOG") if t > ready]  # seven periods of silence
        # The "camera" answers with garbage: every open gets a writer that sends junk and hangs up,
        # so the read fails, the loop goes back to its back-off, and the pings resume.
        done = threading.Event()

        def feed() -> None:
            while not done.is_set():
                try:
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # fails while no reader waits
                except OSError:
                    time.sleep(0.02)
                    continue
                try:
                    os.write(fd, b"not a video\n" * 64)
                except OSError:
                    pass
                os.close(fd)

        threading.Thread(target=feed, daemon=True).start()
        try:
            assert notify.collect(lambda n: len(n.times("WATCHDOG")) >= 2, 60), notify.statuses()
        finally:
            done.set()
        assert any(s.startswith("camera unavailable") for s in notify.statuses())
    finally:
        p.kill()  # as systemd would after a stall
        p.wait()


def test_bad_config_path_is_one_line_and_exit_2(tmp_path, state):
    r = maskgate("run", "--config", tmp_path / "nope.toml", "--state", state, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"maskgate: error: config file {tmp_path / 'nope.toml'} does not "
                                             f"exist (give an existing file to --config)"]


def test_bad_service_value_names_the_key(tmp_path, state):
    cfg = config(tmp_path, str(FIXTURES / "d18.mp4"))
    cfg.write_text(cfg.read_text().replace("retry_initial_s = 0.2", "retry_initial_s = -1"))
    r = maskgate("run", "--config", cfg, "--state", state, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "service.retry_initial_s must be between 0.05 and 60 seconds" in r.stderr


def test_notifier_speaks_the_protocol(monkeypatch):
    n = NotifySocket(abstract=True)
    try:
        sender = Notifier({"NOTIFY_SOCKET": n.env, "WATCHDOG_USEC": "2000000"})
        assert sender.interval == 1.0
        sender.ready("up")
        sender.watchdog()  # not due yet: half the period has not passed
        sender.watchdog(force=True)
        sender.stopping()
        assert n.collect(lambda s: len(s.messages) >= 3, 5)
        assert [m for _, m in n.messages] == [{"READY": "1", "STATUS": "up", "MAINPID": str(os.getpid())},
                                              {"WATCHDOG": "1"}, {"STOPPING": "1", "STATUS": "stopping"}]
        sender.close()
    finally:
        n.close()
    assert Notifier({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}).interval is None  # not for us
    assert Notifier({}).send("READY=1") is False  # not under systemd: silently nothing
