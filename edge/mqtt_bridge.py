"""The optional MQTT bridge (``maskgate mqtt``): the local event stream to a site's broker.

The one part of maskgate that opens an IP socket, and only to ``[mqtt] host``: it runs as its own
process under its own unit (``systemd/maskgate-mqtt.service``, not enabled by default, with
``IPAddressDeny=any`` and ``IPAddressAllow=`` the broker alone), never inside the gate, which keeps
``IPAddressDeny=any`` and its privacy guard. It reads only the event stream (edge.events), so what it
can send is what a stream line holds: time, gate, decision, reason, person id (name only with
``[events] names = true``), door actions and alarms; never an image, an embedding or a score.

Topics (``T`` = ``[mqtt] topic_prefix``/gate), all retained except ``T/events``:
``T/availability`` (online/offline, also the last will), ``T/door`` (open/closed), ``T/lock``
(locked/unlocked), ``T/decision`` (JSON: result, reason, person, time), ``T/alarm`` (ON/OFF) with
``T/alarm/attributes`` (active alarms, last), and ``T/events`` (every stream line). Home Assistant
finds them by MQTT discovery under ``[mqtt] discovery_prefix``: a door contact, a lock state, the last
decision and an alarm, as read-only sensors. The bridge subscribes to nothing: nothing from the
broker can reach the door.

Credentials: ``username`` and ``password`` in a TOML file only root may read (``[mqtt] credentials``,
or systemd's ``LoadCredential=mqtt:...``, which hands a root-only file to the unit's user); TLS on by
default, with ``[mqtt] ca_file`` for a private CA.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import ssl
import threading
from pathlib import Path
from typing import Any, Callable

from edge import __version__
from edge.config import tomllib
from edge.errors import ConfigError, MaskgateError
from edge.events import follow, gate_name

log = logging.getLogger(__name__)

ALARMS = ("forced", "held_open", "lockout", "clock")


class MqttError(MaskgateError):
    """The bridge cannot start: no broker configured, unreadable or exposed credentials."""


def read_credentials(path: Path, check_owner: bool = True) -> tuple[str, str] | None:
    """(username, password) from a root-only TOML file; None when the file is absent (no login)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if check_owner and (st.st_mode & 0o077 or st.st_uid not in (0, os.getuid())):
        raise MqttError(f"{path}: MQTT credentials must be readable by root only (chown root:root {path}; "
                        f"chmod 600 {path}); it is mode {st.st_mode & 0o777:o}, owner uid {st.st_uid}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise MqttError(f"{path}: not a TOML file with username and password: {e}") from None
    user, password = data.get("username"), data.get("password", "")
    if not isinstance(user, str) or not user or not isinstance(password, str):
        raise MqttError(f"{path}: needs username = \"...\" and password = \"...\"")
    return user, password


def credentials_path(cfg: Any) -> Path:
    """systemd's credential (``LoadCredential=mqtt:...``) when the unit passes one, else ``[mqtt] credentials``."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / "mqtt").exists():
        return Path(creds) / "mqtt"
    return Path(cfg.credentials)


class Bridge:
    """Stream lines in, MQTT messages out; Home Assistant discovery on every (re)connection."""

    def __init__(self, mqtt_cfg: Any, gate: str) -> None:
        self.cfg = mqtt_cfg
        self.gate = gate
        self.base = f"{mqtt_cfg.topic_prefix}/{gate}"
        self.active: set[str] = set()
        self.connected = threading.Event()

    # ---- what is published

    def discovery(self) -> list[tuple[str, dict[str, Any]]]:
        """Home Assistant MQTT discovery: (config topic, payload) for each entity; read-only sensors."""
        device = {"identifiers": [f"maskgate_{self.gate}"], "name": f"maskgate {self.gate}",
                  "manufacturer": "maskgate", "model": "face access gate", "sw_version": __version__}
        common = {"availability_topic": f"{self.base}/availability", "device": device}
        uid = f"maskgate_{self.gate}"
        d = self.cfg.discovery_prefix
        return [
            (f"{d}/binary_sensor/{uid}/door/config",
             {**common, "name": "Door", "unique_id": f"{uid}_door", "device_class": "door",
              "state_topic": f"{self.base}/door", "payload_on": "open", "payload_off": "closed"}),
            (f"{d}/binary_sensor/{uid}/lock/config",
             {**common, "name": "Lock", "unique_id": f"{uid}_lock", "device_class": "lock",
              "state_topic": f"{self.base}/lock", "payload_on": "unlocked", "payload_off": "locked"}),
            (f"{d}/sensor/{uid}/decision/config",
             {**common, "name": "Last decision", "unique_id": f"{uid}_decision", "icon": "mdi:account-check",
              "state_topic": f"{self.base}/decision", "value_template": "{{ value_json.result }}",
              "json_attributes_topic": f"{self.base}/decision"}),
            (f"{d}/binary_sensor/{uid}/alarm/config",
             {**common, "name": "Alarm", "unique_id": f"{uid}_alarm", "device_class": "problem",
              "state_topic": f"{self.base}/alarm", "json_attributes_topic": f"{self.base}/alarm/attributes"}),
        ]

    def messages(self, line: dict[str, Any]) -> list[tuple[str, str, bool]]:
        """(topic, payload, retain) for one stream line."""
        out = [(f"{self.base}/events", json.dumps(line, separators=(",", ":")), False)]
        kind = line.get("event")
        if kind == "decision":
            state = {"result": "granted" if line.get("granted") else "denied", "reason": line.get("reason", ""),
                     "person": line.get("person"), "time": line.get("time")}
            if "name" in line:
                state["name"] = line["name"]
            out.append((f"{self.base}/decision", json.dumps(state), True))
        elif kind == "door":
            action = line.get("action")
            if action == "unlock":
                out.append((f"{self.base}/lock", "unlocked", True))
            elif action == "lock":
                out.append((f"{self.base}/lock", "locked", True))
            elif action == "contact":
                out.append((f"{self.base}/door", "open" if line.get("open") else "closed", True))
            elif action == "status":
                out.append((f"{self.base}/lock", "locked" if line.get("locked") else "unlocked", True))
                if line.get("contact") in ("open", "closed"):
                    out.append((f"{self.base}/door", line["contact"], True))
                self.active.clear()   # a (re)connection: the status lines that follow say which are on
                out += self._alarm_state(line.get("time"), None)
        elif kind == "alarm":
            name = str(line.get("alarm"))
            (self.active.add if line.get("active") else self.active.discard)(name)
            out += self._alarm_state(line.get("time"), name)
        return out

    def _alarm_state(self, when: Any, last: str | None) -> list[tuple[str, str, bool]]:
        attrs = {"active": sorted(self.active), "last": last, "time": when}
        return [(f"{self.base}/alarm", "ON" if self.active else "OFF", True),
                (f"{self.base}/alarm/attributes", json.dumps(attrs), True)]

    # ---- the connection

    def client(self, credentials: tuple[str, str] | None) -> Any:
        import paho.mqtt.client as mqtt

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"maskgate-{self.gate}")
        c.will_set(f"{self.base}/availability", "offline", qos=1, retain=True)
        if credentials:
            c.username_pw_set(*credentials)
        if self.cfg.tls:
            c.tls_set(ca_certs=self.cfg.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        c.reconnect_delay_set(1, 30)
        c.max_queued_messages_set(1000)   # a long broker outage must not grow the bridge without bound

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
            if reason.is_failure:
                log.error("broker %s refused the bridge: %s", self.cfg.host, reason)
                return
            log.info("connected to %s", self.cfg.host)
            for topic, payload in self.discovery():
                client.publish(topic, json.dumps(payload), qos=1, retain=True)
            client.publish(f"{self.base}/availability", "online", qos=1, retain=True)
            self.connected.set()

        def on_disconnect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
            self.connected.clear()
            log.warning("disconnected from %s (%s); reconnecting", self.cfg.host, reason)

        c.on_connect, c.on_disconnect = on_connect, on_disconnect
        return c


def run(cfg: Any, say: Callable[[str], None], stop: threading.Event | None = None) -> int:
    """``maskgate mqtt``: until SIGTERM, every event stream line to the broker; 0 on a clean stop.
    ``say`` hears the one line naming the socket, the broker and the login (the command prints it)."""
    m = cfg.mqtt
    if not m.host:
        raise ConfigError("the MQTT bridge needs [mqtt] host (the broker's address) in the config")
    if not cfg.events.socket:
        raise ConfigError("the MQTT bridge reads the event stream, but [events] socket is empty")
    credentials = read_credentials(credentials_path(m))
    if credentials is None:
        log.warning("no %s: connecting to the broker without a login", credentials_path(m))
    port = m.port or (8883 if m.tls else 1883)
    bridge = Bridge(m, gate_name(cfg.events))
    client = bridge.client(credentials)
    stop = stop or threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)} \
        if threading.current_thread() is threading.main_thread() else {}
    try:
        client.connect_async(m.host, port, keepalive=m.keepalive_s)
        client.loop_start()
        say(f"bridging {cfg.events.socket} to {m.host}:{port} as {bridge.base} "
            f"({'TLS' if m.tls else 'no TLS'}, {'login ' + credentials[0] if credentials else 'no login'})")
        for line in follow(cfg.events.socket, stop=stop, wait_first=True):
            for topic, payload, retain in bridge.messages(line):
                client.publish(topic, payload, qos=1, retain=retain)
        return 0
    finally:
        if bridge.connected.is_set():
            client.publish(f"{bridge.base}/availability", "offline", qos=1, retain=True).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()
        for s, h in previous.items():
            signal.signal(s, h)
