"""The local event stream (edge.events) and the MQTT bridge (edge.mqtt_bridge), end to end: the real
gate daemon on the demo recording, under strace, serving its Unix socket; ``maskgate events``
following it; ``maskgate mqtt`` publishing to a real mosquitto broker the test starts on 127.0.0.1;
a paho subscriber reading what a Home Assistant would."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge import events
from edge.camera.replay import demo_clip
from edge.mqtt_bridge import Bridge, MqttError, read_credentials
from edge.config import MqttConfig
from conftest import ROOT, maskgate

ENROLL = Path(demo_clip()).parent / "enroll"
MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or shutil.which("mosquitto_passwd", path="/usr/sbin:/usr/bin")
needs_broker = pytest.mark.skipif(MOSQUITTO is None or MOSQUITTO_PASSWD is None,
                                  reason="mosquitto not installed (apt-get install mosquitto; .ci/run does)")


# ---- what a line may carry ----

def test_stream_lines_carry_no_score_image_or_embedding_and_names_only_when_asked() -> None:
    decision = {"t": 2.6, "event": "decision", "granted": True, "who": "Ann", "score": 0.84,
                "reason": "recognised and live", "person": "p-0123456789abcdef", "embedding": [0.1] * 64,
                "image": b"\xff\xd8\xff" * 100}
    line = events.stream_line(decision, "gate-1", names=False, now=lambda: "2027-01-05T12:00:03+00:00")
    assert line == {"time": "2027-01-05T12:00:03+00:00", "gate": "gate-1", "event": "decision", "granted": True,
                    "reason": "recognised and live", "person": "p-0123456789abcdef"}
    assert events.stream_line(decision, "g", names=True)["name"] == "Ann"
    for kind in ("face", "match", "liveness", "challenge", "tracking", "error"):
        assert events.stream_line({"event": kind, "score": 0.9}, "g", False) is None
    alarm = events.stream_line({"event": "alarm", "kind": "lockout_end"}, "g", False)
    assert (alarm["alarm"], alarm["active"]) == ("lockout", False)
    door = events.stream_line({"event": "door", "action": "contact", "open": True, "pins": [1, 2]}, "g", False)
    assert {k: door[k] for k in ("action", "open")} == {"action": "contact", "open": True} and "pins" not in door


def read_lines(path: Path, n: int, timeout: float = 10) -> list[dict]:
    out: list[dict] = []
    stop = threading.Event()
    timer = threading.Timer(timeout, stop.set)
    timer.start()
    try:
        for line in events.follow(path, stop=stop):
            out.append(line)
            if len(out) >= n:
                break
    finally:
        timer.cancel()
    return out


def test_server_serves_every_reader_as_0660_and_replaces_only_a_stale_socket(tmp_path: Path) -> None:
    path = tmp_path / "events.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()                                   # a crashed gate's socket file
    server = events.EventServer(path, "g", snapshot=lambda: [{"event": "door", "action": "status",
                                                              "locked": True, "contact": "closed"}]).start()
    try:
        assert path.stat().st_mode & 0o777 == 0o660
        got: list[list[dict]] = [[], []]
        readers = [threading.Thread(target=lambda i=i: got[i].extend(read_lines(path, 2))) for i in (0, 1)]
        for r in readers:
            r.start()
        time.sleep(0.5)
        server.publish({"event": "decision", "granted": False, "reason": "holiday", "person": "p-1", "score": 0.8})
        for r in readers:
            r.join(10)
        for lines in got:
            assert [(x["event"], x.get("action") or x.get("reason")) for x in lines] == [
                ("door", "status"), ("decision", "holiday")]
            assert "score" not in lines[1]
    finally:
        server.close()
    assert not path.exists()
    path.write_text("not a socket")
    with pytest.raises(events.EventsError, match="not a socket"):
        events.EventServer(path, "g").start()


def test_a_reader_that_does_not_read_is_dropped_and_the_gate_is_not_held_up(tmp_path: Path) -> None:
    path = tmp_path / "events.sock"
    server = events.EventServer(path, "g").start()
    lazy = socket.socket(socket.AF_UNIX)
    lazy.connect(str(path))
    try:
        time.sleep(0.3)
        start = time.monotonic()
        for i in range(20000):
            server.publish({"event": "door", "action": "lock", "reason": "x" * 100})
        assert time.monotonic() - start < 10
        assert server._clients == []
    finally:
        lazy.close()
        server.close()


def test_events_without_a_gate_is_one_line_and_exit_1(tmp_path: Path) -> None:
    cfg = tmp_path / "maskgate.toml"
    cfg.write_text(f'[events]\nsocket = "{tmp_path / "none.sock"}"\n')
    r = maskgate("events", "--config", cfg)
    assert r.returncode == 1 and "no event stream at" in r.stderr and "Traceback" not in r.stderr


# ---- the bridge's pieces ----

def test_credentials_must_be_root_only(tmp_path: Path) -> None:
    f = tmp_path / "mqtt.secret"
    assert read_credentials(f) is None                       # absent: no login
    f.write_text('username = "gate"\npassword = "s3cret"\n')
    f.chmod(0o644)
    with pytest.raises(MqttError, match="readable by root only"):
        read_credentials(f)
    f.chmod(0o600)
    assert read_credentials(f) == ("gate", "s3cret")
    f.write_text('user = "gate"\n')
    with pytest.raises(MqttError, match="needs username"):
        read_credentials(f)


def test_discovery_and_messages() -> None:
    b = Bridge(MqttConfig(host="x"), "gate-1")
    topics = dict(b.discovery())
    door = topics["homeassistant/binary_sensor/maskgate_gate-1/door/config"]
    assert door["device_class"] == "door" and door["state_topic"] == "maskgate/gate-1/door"
    assert topics["homeassistant/binary_sensor/maskgate_gate-1/lock/config"]["payload_on"] == "unlocked"
    assert all("command_topic" not in p for p in topics.values()), "read-only: nothing from MQTT reaches the door"
    msgs = b.messages({"event": "alarm", "alarm": "forced", "active": True, "time": "t"})
    assert ("maskgate/gate-1/alarm", "ON", True) in msgs
    msgs = b.messages({"event": "alarm", "alarm": "forced", "active": False, "time": "t"})
    assert ("maskgate/gate-1/alarm", "OFF", True) in msgs


def test_the_bridge_needs_a_broker(tmp_path: Path) -> None:
    r = maskgate("mqtt", "--config", tmp_path / "none.toml")
    assert r.returncode == 2 and "does not exist" in r.stderr
    cfg = tmp_path / "maskgate.toml"
    cfg.write_text("[mqtt]\ntls = false\n")
    r = maskgate("mqtt", "--config", cfg)
    assert r.returncode == 2 and "[mqtt] host" in r.stderr and "Traceback" not in r.stderr


# ---- end to end ----

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A real mosquitto on 127.0.0.1 with a password file (and TLS when given a certificate)."""

    def __init__(self, tmp: Path, tls: tuple[Path, Path] | None = None) -> None:
        self.port = free_port()
        passwd = tmp / "passwd"
        subprocess.run([MOSQUITTO_PASSWD, "-b", "-c", str(passwd), "gate", "s3cret"], check=True,
                       capture_output=True)
        conf = [f"listener {self.port} 127.0.0.1", "allow_anonymous false", f"password_file {passwd}",
                "persistence false", "log_dest stderr"]
        if os.geteuid() == 0:
            conf.append("user root")        # keep reading the test's files instead of dropping to mosquitto
        if tls:
            conf += [f"certfile {tls[0]}", f"keyfile {tls[1]}"]
        (tmp / "mosquitto.conf").write_text("\n".join(conf) + "\n")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(tmp / "mosquitto.conf")], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        self.close()
        raise AssertionError(f"mosquitto did not start: {self.proc.stdout.read()}")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Subscriber:
    """What Home Assistant would see: every message on the broker, retained ones included."""

    def __init__(self, port: int, ca: Path | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, str, bool]] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ha-test")
        self.c.username_pw_set("gate", "s3cret")
        if ca:
            self.c.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
        self.c.on_connect = lambda c, *a: c.subscribe("#", qos=1)
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload.decode(), bool(msg.retain)))

    def wait(self, pred, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if pred(list(self.messages)):
                    return True
            time.sleep(0.1)
        return False

    def payloads(self, topic: str) -> list[str]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("events") / "state"
    r = maskgate("enroll", "Demo Person", "--from", ENROLL, "--consent", "signed form #1", "--state", state)
    assert r.returncode == 0, r.stderr
    return state


def gate_config(tmp: Path, sock: Path, broker_port: int, tls: bool = False, ca: Path | None = None,
                creds: Path | None = None) -> Path:
    cfg = tmp / "maskgate.toml"
    cfg.write_text(
        f'[camera]\nsource = "replay"\npath = "{demo_clip()}"\nrealtime = false\nloop = true\n'
        f'[door]\nbackend = "mock"\nopen_s = 1.0\n'
        f'[liveness]\nchallenges = ["blink"]\nsteps = 1\n'
        f'[events]\nsocket = "{sock}"\ngate = "gate-1"\nnames = true\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\ntls = {"true" if tls else "false"}\n'
        f'ca_file = "{ca or ""}"\ncredentials = "{creds or tmp / "mqtt.secret"}"\n')
    return cfg


def start(*args: str, strace_log: Path | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "edge.cli", *args]
    if strace_log is not None:
        from test_privacy import TRACED, strace_cmd

        cmd = [strace_cmd(), "-f", "--seccomp-bpf", "-y", "-qq", "-s", "256", "-e", f"trace={TRACED}",
               "-o", str(strace_log), *cmd]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def stop(p: subprocess.Popen) -> tuple[str, str]:
    """SIGTERM to maskgate (under strace: to strace's child, as strace itself would only detach)."""
    if p.poll() is None:
        try:
            children = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
        except OSError:
            children = []
        traced = Path(f"/proc/{p.pid}/comm").read_text().strip() == "strace" if children else False
        for pid in children if traced else []:
            os.kill(int(pid), signal.SIGTERM)
        if not traced:
            p.send_signal(signal.SIGTERM)
    try:
        return p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.communicate()


@needs_broker
def test_gate_to_event_stream_to_mqtt_end_to_end(enrolled: Path, tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    sock = tmp_path / "run" / "events.sock"
    sock.parent.mkdir()
    (tmp_path / "mqtt.secret").write_text('username = "gate"\npassword = "s3cret"\n')
    (tmp_path / "mqtt.secret").chmod(0o600)
    cfg = gate_config(tmp_path, sock, broker.port)
    # in real time, as from a camera: the next approach comes after the 3 s cooldown, so the relay's
    # 1 s pulse has ended first (as fast as it decodes, the looping clip can decide again before)
    cfg.write_text(cfg.read_text().replace("realtime = false", "realtime = true"))
    # the door keeper as its own unit runs it: started first, outside the trace (a keeper that the
    # gate started itself would outlive the gate, and strace -f would wait for it)
    cfg.write_text(cfg.read_text().replace('[door]\n', f'[door]\nkeeper_socket = "{tmp_path / "keeper.sock"}"\n'))
    keeper = start("door-keeper", "--config", str(cfg), "--state", str(enrolled))
    ha = Subscriber(broker.port)
    trace = tmp_path / "gate.strace"
    gate = start("run", "--config", str(cfg), "--state", str(enrolled), strace_log=trace)
    bridge = reader = None
    try:
        deadline = time.monotonic() + 120
        while not sock.exists() and time.monotonic() < deadline and gate.poll() is None:
            time.sleep(0.2)
        assert sock.exists(), stop(gate)[1][-3000:]
        assert sock.stat().st_mode & 0o777 == 0o660
        bridge = start("mqtt", "--config", str(cfg))
        reader = start("events", "--json", "--count", "6", "--config", str(cfg))
        # the demo person blinks at 2.6 s into the clip, which loops: a grant, then the relay's lock
        assert ha.wait(lambda m: any(t == "maskgate/gate-1/decision" and '"granted"' in p for t, p, _ in m)
                       and any(t == "maskgate/gate-1/lock" and p == "unlocked" for t, p, _ in m)
                       and ("maskgate/gate-1/lock", "locked") in [(t, p) for t, p, _ in m], 120), \
            (ha.messages[-20:], stop(bridge)[1][-2000:])
        out, err = reader.communicate(timeout=60)
        lines = [json.loads(x) for x in out.splitlines()]
        assert lines[0] == {**lines[0], "event": "door", "action": "status", "locked": True, "gate": "gate-1"}
        decision = next(x for x in lines if x["event"] == "decision")
        assert decision["granted"] and decision["person"].startswith("p-") and decision["name"] == "Demo Person"
        assert set(decision) == {"time", "gate", "event", "granted", "reason", "person", "name"}
        after = [(x["event"], x.get("action")) for x in lines[lines.index(decision) + 1:]]
        assert after[:2] == [("door", "unlock"), ("door", "lock")], "one unlock per grant, from the door"
    finally:
        if reader is not None and reader.poll() is None:
            reader.kill()
        gate_out = stop(gate)     # first: its last word (the relay off) goes through the bridge
        time.sleep(1.0)
        bridge_out = stop(bridge) if bridge is not None else ("", "")
        stop(keeper)
    try:
        # Home Assistant discovery: four read-only entities of one device, and the bridge's availability
        configs = {t: json.loads(p) for t, p, _ in ha.messages if t.startswith("homeassistant/")}
        assert {t.split("/")[1] + "/" + t.split("/")[3] for t in configs} == {
            "binary_sensor/door", "binary_sensor/lock", "sensor/decision", "binary_sensor/alarm"}
        assert ha.wait(lambda m: "offline" in [p for t, p, _ in m if t == "maskgate/gate-1/availability"], 10), \
            bridge_out[1][-2000:]
        assert "online" in ha.payloads("maskgate/gate-1/availability")
        stream = [json.loads(p) for p in ha.payloads("maskgate/gate-1/events")]
        assert stream and all(not ({"score", "embedding", "image", "runner_up"} & set(x)) for x in stream)
        # a Home Assistant that starts later still finds the entities and their last states (retained)
        late = Subscriber(broker.port)
        try:
            assert late.wait(lambda m: {t for t, _, r in m if r} >= set(configs) | {
                "maskgate/gate-1/lock", "maskgate/gate-1/decision", "maskgate/gate-1/availability"}, 10), late.messages
            assert late.payloads("maskgate/gate-1/lock")[-1] == "locked"
            assert late.payloads("maskgate/gate-1/availability")[-1] == "offline"
            assert not late.payloads("maskgate/gate-1/events"), "single events are not retained"
        finally:
            late.close()
    finally:
        ha.close()
        broker.close()
    assert gate.returncode == 0, gate_out[1][-3000:]
    # the gate serving the stream to the bridge opened no IP socket and sent nothing to the network
    from test_privacy import parse_strace

    t = parse_strace(trace.read_text(errors="replace"), ROOT)
    assert t.text and str(sock) in t.text, "strace saw the gate bind its socket"
    assert t.ip == [] and all(s in ("AF_UNIX", "AF_LOCAL") for s in t.sockets), (t.ip[:5], t.sockets)


@needs_broker
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed to make a test certificate")
def test_bridge_over_tls_with_a_login(tmp_path: Path) -> None:
    """TLS to the broker with a private CA, and the login: a stream line arrives over it."""
    cert, key = tmp_path / "broker.crt", tmp_path / "broker.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    broker = Broker(tmp_path, tls=(cert, key))
    sock = tmp_path / "events.sock"
    server = events.EventServer(sock, "gate-1").start()
    (tmp_path / "mqtt.secret").write_text('username = "gate"\npassword = "s3cret"\n')
    (tmp_path / "mqtt.secret").chmod(0o600)
    cfg = gate_config(tmp_path, sock, broker.port, tls=True, ca=cert)
    ha = Subscriber(broker.port, ca=cert)
    bridge = start("mqtt", "--config", str(cfg))
    try:
        assert ha.wait(lambda m: "online" in [p for t, p, _ in m if t == "maskgate/gate-1/availability"], 30), \
            stop(bridge)[1][-2000:]
        deadline = time.monotonic() + 10
        while not server._clients and time.monotonic() < deadline:
            time.sleep(0.1)
        server.publish({"event": "alarm", "alarm": "forced", "active": True})
        assert ha.wait(lambda m: "ON" in [p for t, p, _ in m if t == "maskgate/gate-1/alarm"], 15), ha.messages
    finally:
        out, err = stop(bridge)
        server.close()
        ha.close()
        broker.close()
    assert "TLS, login gate" in out, err[-2000:]
