"""The local event stream: one JSON line per decision, door change and alarm, on a Unix socket.

The gate serves ``[events] socket`` (``/run/maskgate/events.sock``: the unit's RuntimeDirectory) to
local readers only: ``maskgate events``, the MQTT bridge (``maskgate mqtt``, its own process and unit),
a site's own scripts. It is a Unix socket, so the gate still opens no IP socket (edge.privacy), and
the socket file is ``0660`` in the gate's group: who may read decisions is who is in that group
(a reader must be able to write to connect, so "group-readable" here is read-write for the group).

What a line carries is chosen field by field (:func:`stream_line`), never copied whole: the local
time, the gate, the event, the decision and its reason, the person id (the name only with ``[events]
names = true``), the door's action and the alarm. Never an image, an embedding, a score or a score
history: the stream is for doors and dashboards, not for judging faces.

A reader that does not keep up is dropped (its line is never allowed to hold up the gate); it may
connect again. A new reader first gets the door's current state (``"action": "status"``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from edge.errors import MaskgateError

log = logging.getLogger(__name__)

# How much a reader may fall behind (bytes queued in the kernel) before it is dropped.
SEND_BUFFER = 256 * 1024
MAX_LINE = 4096


class EventsError(MaskgateError):
    """The event stream cannot be served or read."""

    exit_code = 1


def gate_name(cfg: Any) -> str:
    """This gate's name on the stream and in MQTT topics: ``[events] gate``, else the host name."""
    return cfg.gate or socket.gethostname().split(".")[0]


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def stream_line(ev: dict[str, Any], gate: str, names: bool, now: Callable[[], str] = _now) -> dict[str, Any] | None:
    """The stream's line for one gate or door event, or None when it is not a decision, door or alarm."""
    kind = ev.get("event")
    line: dict[str, Any] = {"time": now(), "gate": gate, "event": kind}
    if kind == "decision":
        line.update(granted=bool(ev.get("granted")), reason=str(ev.get("reason", "")),
                    person=ev.get("person"))
        if names and ev.get("person"):
            line["name"] = ev.get("who")
        return line
    if kind == "door":
        line["action"] = ev.get("action")
        for key in ("by", "reason", "open", "input", "open_s", "locked", "contact"):
            if key in ev:
                line[key] = ev[key]
        return line
    if kind == "alarm":
        name = ev.get("alarm") or ev.get("kind")
        if name == "lockout_end":   # the gate's lock-out ending is the lock-out alarm clearing
            name, active = "lockout", False
        else:
            active = bool(ev.get("active", True))
        line.update(alarm=name, active=active)
        for key in ("detail", "seconds", "failures"):
            if key in ev:
                line[key] = ev[key]
        return line
    return None


class EventServer:
    """The gate's side: serve the stream on a Unix socket; ``publish`` never blocks and never raises."""

    def __init__(self, path: Path | str, gate: str, names: bool = False,
                 snapshot: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        self.path = Path(path)
        self.gate = gate
        self.names = names
        self.snapshot = snapshot
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "EventServer":
        """Bind the socket (replacing a stale one left by a crash) as mode 0660; ``EventsError`` if it cannot."""
        if not self.path.parent.is_dir():
            raise EventsError(f"{self.path.parent} does not exist (the unit's RuntimeDirectory=maskgate makes it)")
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise EventsError(f"{self.path} exists and is not a socket; refusing to replace it")
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o660)
            sock.listen(16)
        except OSError as e:
            sock.close()
            raise EventsError(f"{self.path}: cannot serve the event stream: {e.strerror}") from None
        self._sock = sock
        self._thread = threading.Thread(target=self._accept, name="events", daemon=True)
        self._thread.start()
        log.info("event stream on %s", self.path)
        return self

    def _accept(self) -> None:
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            conn.setblocking(False)
            first = []
            if self.snapshot is not None:
                try:
                    first = [x for x in (stream_line(e, self.gate, self.names) for e in self.snapshot()) if x]
                except Exception:  # noqa: BLE001 - a snapshot is a courtesy, not worth a reader
                    log.exception("event stream: snapshot failed")
            with self._lock:
                if all(self._send(conn, line) for line in first):
                    self._clients.append(conn)
            log.info("event stream: a reader connected (%d now)", len(self._clients))

    @staticmethod
    def _send(conn: socket.socket, line: dict[str, Any]) -> bool:
        data = (json.dumps(line, separators=(",", ":"), ensure_ascii=True) + "\n").encode()
        try:
            conn.sendall(data)
            return True
        except OSError:   # gone, or too far behind: drop it (a half line ends with the connection)
            with contextlib.suppress(OSError):
                conn.close()
            return False

    def publish(self, ev: dict[str, Any]) -> None:
        """Send a gate or door event to every reader (decisions, door changes and alarms only)."""
        try:
            line = stream_line(ev, self.gate, self.names)
        except Exception:  # noqa: BLE001 - the gate goes on whatever the stream does
            log.exception("event stream: cannot write %s", ev.get("event"))
            return
        if line is None:
            return
        with self._lock:
            self._clients = [c for c in self._clients if self._send(c, line)]

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            with contextlib.suppress(OSError):
                self.path.unlink()
        with self._lock:
            for c in self._clients:
                with contextlib.suppress(OSError):
                    c.close()
            self._clients = []


def serve(cfg: Any, snapshot: Callable[[], list[dict[str, Any]]] | None = None) -> EventServer | None:
    """The stream ``[events]`` asks for, or None (none configured, or it cannot be served: logged)."""
    if not cfg.socket:
        return None
    try:
        return EventServer(cfg.socket, gate_name(cfg), cfg.names, snapshot).start()
    except EventsError as e:  # the door does not depend on the stream: the gate runs without it
        log.warning("no event stream: %s", e)
        return None


def door_snapshot(door: Any) -> Callable[[], list[dict[str, Any]]]:
    """The door's state as the events a new reader needs first (lock, contact, active alarms)."""
    def snapshot() -> list[dict[str, Any]]:
        st = door.status()
        if "locked" not in st:  # the door keeper does not answer: say nothing rather than guess
            return []
        return [{"event": "door", "action": "status", "locked": st["locked"], "contact": st["contact"]},
                *({"event": "alarm", "alarm": a, "active": True} for a in st["alarms"])]
    return snapshot


# ---------------------------------------------------------------- readers

def follow(path: Path | str, retry_s: float = 1.0, stop: threading.Event | None = None,
           wait_first: bool = False) -> Iterator[dict[str, Any]]:
    """Every line of the stream as a dict, reconnecting when the gate restarts.

    Raises ``EventsError`` when the socket is not there at the start (unless ``wait_first``)."""
    path = str(path)
    first = True
    while stop is None or not stop.is_set():
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(path)
        except OSError as e:
            sock.close()
            if first and not wait_first:
                raise EventsError(f"no event stream at {path} ({e.strerror}): is the gate running, and "
                                  "are you in its group (maskgate)?") from None
            time.sleep(retry_s)
            continue
        first = False
        log.info("event stream: connected to %s", path)
        buf = b""
        try:
            sock.settimeout(0.5)
            while stop is None or not stop.is_set():
                try:
                    chunk = sock.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                if len(buf) > MAX_LINE:
                    buf = b""
                for raw in lines:
                    try:
                        obj = json.loads(raw)
                    except ValueError:
                        log.warning("event stream: not a JSON line, skipped")
                        continue
                    if isinstance(obj, dict):
                        yield obj
        except OSError as e:
            log.warning("event stream: %s", e)
        finally:
            sock.close()
        if stop is None or not stop.is_set():
            log.warning("event stream: the gate closed it; reconnecting")
            time.sleep(retry_s)
