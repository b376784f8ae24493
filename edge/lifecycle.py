"""What each of our long-running processes (the gate daemon, the door keeper) needs from the system.

sd_notify spoken directly over the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (``@name`` is the
abstract namespace), signal handlers that drive the relay off before anything else, and door events
into the audit log. Kept apart from ``edge.service`` (the gate daemon's loop) so that the keeper can
use them without importing the daemon that starts keepers.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from edge.audit import AuditLog
from edge.door import Door

log = logging.getLogger(__name__)


class Notifier:
    """sd_notify over ``$NOTIFY_SOCKET``; every call is a silent no-op when not run by systemd."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ if env is None else env)
        self.address: str | None = env.get("NOTIFY_SOCKET") or None
        self.interval: float | None = None
        self._last_ping = 0.0
        self._sock: socket.socket | None = None
        usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
        if usec and (not pid or pid == str(os.getpid())):
            try:
                self.interval = int(usec) / 2e6 if int(usec) > 0 else None
            except ValueError:
                log.warning("ignoring WATCHDOG_USEC=%r (not a number of microseconds)", usec)
        if self.address:
            if self.address[0] not in "/@":
                log.warning("ignoring NOTIFY_SOCKET=%r (neither a path nor an @abstract name)", self.address)
                self.address = None
            else:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; False when there is no socket or it failed."""
        if self._sock is None or self.address is None:
            return False
        addr = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            self._sock.sendto("\n".join(fields).encode(), addr)
            return True
        except OSError as e:  # systemd gone or the socket full: never a reason to stop the gate
            log.debug("sd_notify %s failed: %s", fields, e)
            return False

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")
        self._last_ping = time.monotonic()

    def status(self, text: str) -> None:
        log.info("status: %s", text)
        self.send(f"STATUS={text}")

    def stopping(self, status: str = "stopping") -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def watchdog(self, force: bool = False) -> None:
        """Ping when half the watchdog period has passed (call it every loop turn; it is cheap)."""
        if self.interval is None:
            return
        now = time.monotonic()
        if force or now >= self._last_ping + self.interval - 0.005:  # a timed wait may wake a hair early
            self._last_ping = now
            self.send("WATCHDOG=1")

    def due_in(self) -> float:
        """Seconds until the next ping is due (``inf`` without a watchdog)."""
        if self.interval is None:
            return float("inf")
        return max(0.0, self._last_ping + self.interval - time.monotonic())

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def install_signal_handlers(stop: threading.Event, door: Door | None = None) -> dict[int, Any]:
    """SIGTERM / SIGINT: relay off at once, then ask the loop to stop. Returns the old handlers."""
    def handler(signum: int, _frame: Any) -> None:
        if door is not None:
            door.lock("signal")
        if not stop.is_set():
            log.info("%s: shutting down", signal.Signals(signum).name)
        stop.set()

    return {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}


def restore_signal_handlers(previous: dict[int, Any]) -> None:
    for s, h in previous.items():
        signal.signal(s, h)


def audit_door_events(door: Door, audit: AuditLog) -> None:
    """Record every door event (unlock, lock, contact, inputs, alarms) in the audit log."""
    def record(event: dict[str, Any]) -> None:
        audit.append(event["event"], **{k: v for k, v in event.items() if k not in ("event", "t")})
        log.info("%s", json.dumps(event))

    door.on_event(record)
