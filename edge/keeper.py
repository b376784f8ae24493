"""The door keeper: the one process that owns the GPIO lines, so the gate cannot leave the door unlocked.

The keeper holds :class:`edge.door.Door` (relay, door contact, exit button, alternative entry, LED,
buzzer) and nothing else: no camera, no models, no frames. The gate asks it over a local stream
socket (``AF_UNIX``, a path in the state directory or ``door.keeper_socket``; never IP) to unlock,
and the keeper times the pulse itself (``door.open_s`` from its own config; a request names no
duration and does not extend a pulse that is on). So a gate that dies (SIGKILL, a native crash),
hangs or is compromised cannot hold the relay on, and the exit button, the alternative entry and
the alarms keep working while the gate restarts.

The protocol is one JSON object per line each way::
    {"op": "grant"}                      -> {"ok": true, "relay": "on", "extended": false}
    {"op": "grant", "card": "123456"}    -> {..., "wiegand": "sent"}   ([door] mode wiegand / both)
    {"op": "lock", "reason": "denied"}   -> {"ok": true, "relay": "off"}
    {"op": "indicate", "pattern": "busy"}-> {"ok": true}
    {"op": "status"}                     -> {"ok": true, "pid": 123, "relay": "off", ...}

Anything else gets ``{"ok": false, "error": ...}``. The socket file is mode 0600 in a directory only
the service user can enter: whoever can connect can unlock, exactly as whoever can run the gate.

Fail secure inside the keeper: every catchable signal drives the relay off before anything else and
then stops the keeper (systemd's ``Restart=always`` brings it back); SIGKILL and native crashes are
covered by the unit's ``ExecStopPost=maskgate door-keeper --relay-off``, which opens the lines again
and drives the relay off, and by the external pull-down on the relay line (docs/installer.md, "Wiring").
The keeper writes its own door events to the audit log, under the log's cross-process lock.

Why one module of over 500 lines: the server, its client (``KeeperDoor``, what the gate holds) and
the start-up of a keeper by ``maskgate run`` speak one protocol; kept together, a change to a
request cannot miss its other end.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from edge import __version__, privacy
from edge.audit import AuditLog
from edge.config import Config
from edge.door import open_door
from edge.errors import DoorError
from edge.lifecycle import Notifier, audit_door_events
from edge.wiegand import WiegandError
from edge.wiegand_out import WiegandOut

log = logging.getLogger(__name__)

SOCKET_NAME = "keeper.sock"
LOCK_NAME = "keeper.lock"
LOG_NAME = "keeper.log"
MAX_LINE = 4096
# AF_UNIX paths end at 107 bytes; longer ones are reached through the directory's descriptor.
_SUN_PATH_MAX = 100
# Signals that end the keeper with the relay driven off first. Not SIGKILL/SIGSTOP (uncatchable),
# not SIGSEGV/SIGBUS/SIGFPE/SIGILL (a Python handler cannot run after a native fault: ExecStopPost
# covers those), not SIGCHLD/SIGWINCH/SIGURG/SIGCONT (ignored by default, they end nothing).
STOP_SIGNALS = tuple(s for s in (
    "SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGABRT", "SIGALRM", "SIGVTALRM",
    "SIGPROF", "SIGXCPU", "SIGXFSZ", "SIGPWR", "SIGSTKFLT", "SIGTRAP", "SIGSYS", "SIGIO", "SIGPIPE")
    if hasattr(signal, s))


def socket_path(cfg: Config, state: Path) -> Path:
    """Where the gate and the keeper meet: ``door.keeper_socket``, or ``keeper.sock`` in the state dir."""
    return Path(cfg.door.keeper_socket) if cfg.door.keeper_socket else Path(state) / SOCKET_NAME


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """An address ``bind``/``connect`` accept for ``path``, however long its directory name is."""
    if len(os.fsencode(str(path))) <= _SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def _send(sock: socket.socket, obj: dict[str, Any]) -> None:
    sock.sendall(json.dumps(obj, separators=(",", ":")).encode() + b"\n")


def _recv_line(f: Any) -> dict[str, Any] | None:
    raw = f.readline(MAX_LINE + 1)
    if not raw:
        return None
    if len(raw) > MAX_LINE or not raw.endswith(b"\n"):
        raise ValueError("line too long")
    obj = json.loads(raw)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj


# ---- the keeper (server) ----

class Keeper:
    """Serves unlock requests for one door; see the module docstring for the rules it keeps."""

    def __init__(self, cfg: Config, state: Path, path: Path | None = None, pin_factory: Any = None) -> None:
        self.cfg = cfg
        self.state = Path(state)
        self.path = path or socket_path(cfg, state)
        self.stop = threading.Event()
        self._lockfd = self._take_lock()
        self.audit = AuditLog(self.state, cfg.audit)
        self.door = open_door(cfg.door, pin_factory=pin_factory)
        audit_door_events(self.door, self.audit)
        self.wiegand = self._open_wiegand(pin_factory)
        self._sock = self._listen()
        self.audit.append("keeper", action="start", version=__version__, door=cfg.door.backend,
                          open_s=cfg.door.open_s)

    def _open_wiegand(self, pin_factory: Any) -> Any:
        """The D0/D1 lines to an access panel (edge.wiegand_out) when ``door.mode`` sends frames."""
        if self.cfg.door.mode == "relay":
            return None

        try:
            return WiegandOut(self.cfg.door, pin_factory=pin_factory)
        except WiegandError as e:  # relay off, pins and the keeper's lock let go: nothing half-open
            self.door.close()
            os.close(self._lockfd)
            raise DoorError(str(e)) from None

    def _take_lock(self) -> int:
        """One keeper per socket: an ``flock`` held for the keeper's life (freed when it dies)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise DoorError(f"{lock}: cannot open the keeper's lock: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DoorError(f"a door keeper already serves {self.path} (only one process may own the "
                            f"door's pins)") from None
        return fd

    def _listen(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # a stale socket of a keeper that died (we hold the lock)
            old = os.umask(0o177)
            try:
                with _address(self.path) as addr:
                    sock.bind(addr)
            finally:
                os.umask(old)
            sock.listen(8)
        except OSError as e:
            sock.close()
            raise DoorError(f"{self.path}: cannot listen for the gate: {e.strerror or e}") from None
        sock.settimeout(0.5)
        return sock

    def install_signal_handlers(self) -> None:
        """Every catchable signal: relay off first, then stop (from the main thread only)."""
        def handler(signum: int, _frame: Any) -> None:
            self.door.lock("signal")
            if not self.stop.is_set():
                log.info("%s: relay off, keeper stopping", signal.Signals(signum).name)
            self.stop.set()

        for name in STOP_SIGNALS:
            with contextlib.suppress(OSError, ValueError):
                signal.signal(getattr(signal, name), handler)

    def serve(self) -> None:
        """Accept gates until stopped; each connection gets its own thread (the main thread stays
        free for signal handlers, which take the door's lock)."""
        log.info("door keeper ready on %s (relay pulses of %.1f s)", self.path, self.cfg.door.open_s)
        while not self.stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, InterruptedError):
                continue
            except OSError as e:
                if self.stop.is_set():
                    break
                log.error("keeper socket: %s", e)
                time.sleep(0.5)
                continue
            threading.Thread(target=self._client, args=(conn,), name="keeper-client", daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as f:
            while not self.stop.is_set():
                try:
                    req = _recv_line(f)
                except (ValueError, UnicodeDecodeError) as e:
                    with contextlib.suppress(OSError):
                        _send(conn, {"ok": False, "error": f"bad request: {e}"})
                    return
                except OSError:
                    return
                if req is None:
                    return
                try:
                    reply = self.handle(req)
                except Exception as e:  # noqa: BLE001 - a bad request must not stop the keeper
                    log.exception("keeper request %r failed", req)
                    reply = {"ok": False, "error": f"{type(e).__name__}: {e}"[:200]}
                try:
                    _send(conn, reply)
                except OSError:
                    return

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        """One request; the reply says what the relay does now."""
        op = req.get("op")
        if op == "grant":
            # A pulse is not extended from outside (each one is bounded); the relay goes first.
            if self.cfg.door.mode != "wiegand" and not self.door.relay_on:
                self.door.grant("grant")
            reply = {"ok": True, "relay": "on" if self.door.relay_on else "off", "extended": False}
            if self.wiegand is not None:
                reply["wiegand"] = self._send_wiegand(req.get("card"))
            return reply
        if op == "lock":
            self.door.lock(str(req.get("reason", "lock"))[:40])
            return {"ok": True, "relay": "off"}
        if op == "indicate":
            try:
                self.door.indicate(str(req.get("pattern")))
            except ValueError as e:
                return {"ok": False, "error": str(e)}
            return {"ok": True}
        if op == "status":
            return {"ok": True, "pid": os.getpid(), "open_s": self.cfg.door.open_s, **self.door.status()}
        return {"ok": False, "error": f"unknown op {op!r} (grant, lock, indicate, status)"}

    def _send_wiegand(self, card: Any) -> str:
        """The person's card to the access panel; logged and audited whether sent or not."""
        done = self.wiegand.send(card)
        if done["sent"]:
            log.info("Wiegand %d-bit frame sent (%s)", done["bits"], done["source"])
        else:
            log.warning("Wiegand frame not sent: %s", done["error"])
        try:
            self.audit.append("door", action="wiegand", **done)
        except Exception as e:  # noqa: BLE001 - the panel has its frame; the record is second
            log.error("audit log: Wiegand send not recorded: %s", e)
        return "sent" if done["sent"] else f"not sent: {done['error']}"

    def close(self) -> None:
        """Relay off and pins released first; then the socket and the record of it."""
        try:
            self.door.close()
            if self.wiegand is not None:
                self.wiegand.close()
        finally:
            self._sock.close()
            with contextlib.suppress(OSError):
                self.path.unlink()
            try:
                self.audit.append("keeper", action="stop", relay="off" if self.door.closed else "unknown")
            except Exception as e:  # noqa: BLE001 - the relay is off; the record is second
                log.error("audit log: keeper stop not recorded: %s", e)
            os.close(self._lockfd)


def serve(cfg: Config, state: Path, path: Path | None = None) -> int:
    """``maskgate door-keeper``: own the door until a signal; relay off whatever happens."""
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        logging.getLogger("edge").setLevel(logging.INFO)  # door events belong in the journal
    privacy.install()  # no frame ever comes here, and no IP socket either

    notifier = Notifier()
    keeper = Keeper(cfg, state, path)
    try:
        keeper.install_signal_handlers()
        notifier.ready(f"door locked; serving the gate on {keeper.path}")
        keeper.serve()
    finally:
        notifier.stopping("relay off")
        keeper.close()
        notifier.close()
    log.info("door keeper stopped; relay off")
    return 0


def relay_off(cfg: Config, state: Path) -> int:
    """``maskgate door-keeper --relay-off`` (the unit's ``ExecStopPost=``): the keeper is gone, maybe
    killed mid-pulse, so open the lines again, drive the relay off and release it; say so in the log."""
    path = socket_path(cfg, state)
    lock = path.with_name(path.name + ".lock")
    if lock.exists():
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another keeper (one `maskgate run` started) owns the door now
            log.info("a door keeper still serves %s; the pins are its to drive", path)
            return 0
        finally:
            os.close(fd)
    door = open_door(cfg.door)
    door.close()
    if os.environ.get("SERVICE_RESULT") == "success":  # a clean stop: the keeper said so itself
        return 0
    try:
        AuditLog(state, cfg.audit).append("door", action="lock", reason="keeper stopped", by="exec-stop-post")
    except Exception as e:  # noqa: BLE001 - the relay is off; the record is second
        log.error("audit log: relay-off not recorded: %s", e)
    return 0


# ---- the gate's side (client) ----

class KeeperDoor:
    """The door as the gate sees it when a keeper owns the pins: the calls the gate and the daemon
    make on :class:`edge.door.Door`, each one request to the keeper."""

    def __init__(self, path: Path, timeout: float = 2.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._file: Any = None
        self._lock = threading.Lock()
        self._closed = False
        self._listeners: list[Any] = []
        self._connect()

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(self.timeout)
        try:
            with _address(self.path) as addr:
                sock.connect(addr)
        except OSError as e:
            sock.close()
            raise DoorError(f"no door keeper at {self.path} ({e.strerror or e}); start it with "
                            f"`maskgate door-keeper` or systemctl start maskgate-keeper") from None
        self._sock, self._file = sock, sock.makefile("rb")

    def _drop(self) -> None:
        for c in (self._file, self._sock):
            with contextlib.suppress(OSError):
                c and c.close()
        self._sock = self._file = None

    def call(self, req: dict[str, Any], blocking: bool = True) -> dict[str, Any]:
        """One request and its reply; reconnects once (the keeper may have restarted)."""
        if not self._lock.acquire(blocking=blocking):
            raise DoorError("the door keeper connection is busy")
        try:
            for attempt in (1, 2):
                try:
                    if self._sock is None:
                        self._connect()
                    assert self._sock is not None
                    _send(self._sock, req)
                    reply = _recv_line(self._file)
                    if reply is None:
                        raise ConnectionResetError("the keeper closed the connection")
                    break
                except (OSError, ValueError) as e:
                    self._drop()
                    if attempt == 2 or isinstance(e, socket.timeout):
                        raise DoorError(f"door keeper at {self.path}: {e}") from None
        finally:
            self._lock.release()
        if not reply.get("ok"):
            raise DoorError(f"door keeper refused {req.get('op')}: {reply.get('error')}")
        return reply

    def grant(self, by: str = "grant", card: str | None = None) -> None:
        """Ask for one pulse (and, in ``door.mode`` wiegand / both, the frame of ``card``, or of the
        configured default when None); returns once the keeper has driven the relay on or sent the
        frame (or raises)."""
        req: dict[str, Any] = {"op": "grant"}
        if card is not None:
            req["card"] = card
        reply = self.call(req)
        if reply.get("relay") == "on" or reply.get("wiegand") == "sent":
            return
        if "wiegand" in reply:
            raise DoorError(f"the door keeper sent no Wiegand frame ({reply['wiegand']})")
        raise DoorError("the door keeper did not turn the relay on")

    def lock(self, reason: str = "lock") -> None:
        """Relay off now; never raises (the keeper ends every pulse on its own anyway). Safe in a
        signal handler: it does not wait for a request in flight on this connection."""
        try:
            self.call({"op": "lock", "reason": reason}, blocking=False)
        except DoorError as e:
            log.debug("lock via keeper: %s", e)

    def indicate(self, pattern: str) -> None:
        try:
            self.call({"op": "indicate", "pattern": pattern})
        except DoorError as e:
            log.warning("indicate %s: %s", pattern, e)

    def status(self) -> dict[str, Any]:
        try:
            return self.call({"op": "status"})
        except DoorError as e:
            return {"relay": "unknown (keeper unreachable)", "error": str(e)}

    def on_event(self, callback: Any, every_s: float = 0.5) -> None:
        """Door changes (lock, contact, alarms) as events, for the local event stream. The keeper
        records them in the audit log itself; here one watcher on a connection of its own asks the
        keeper's status every ``every_s`` and reports what changed to every listener, so the gate's
        requests never wait on it and nothing in the keeper has to know about readers."""
        with self._lock:
            self._listeners.append(callback)
            if len(self._listeners) > 1:
                return   # the watcher already running reports to this listener too

        def watch() -> None:
            last: dict[str, Any] = {}
            try:
                mirror = KeeperDoor(self.path, self.timeout)
            except DoorError as e:
                log.warning("door events: %s", e)
                return
            while not self._closed:
                st = mirror.status()
                if "locked" in st:
                    for ev in _changes(last, st):
                        for listener in list(self._listeners):
                            listener(ev)
                    last = st
                time.sleep(every_s)
            mirror._drop()

        threading.Thread(target=watch, name="keeper-door-events", daemon=True).start()

    @property
    def relay_on(self) -> bool:
        return self.status().get("relay") == "on"

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """The gate lets go; the keeper keeps the door (locked unless a pulse is ending)."""
        self.lock("gate stopped")
        with self._lock:
            self._drop()
            self._closed = True


def _changes(last: dict[str, Any], now: dict[str, Any]) -> list[dict[str, Any]]:
    """Door events for what differs between two keeper status replies (nothing on the first)."""
    if not last:
        return []
    out: list[dict[str, Any]] = []
    if now["locked"] != last.get("locked"):
        out.append({"event": "door", "action": "lock"} if now["locked"] else
                   {"event": "door", "action": "unlock", "by": now.get("unlocked_by") or "keeper"})
    if now.get("contact") != last.get("contact"):
        out.append({"event": "door", "action": "contact", "open": now.get("contact") == "open"})
    before, after = set(last.get("alarms", ())), set(now.get("alarms", ()))
    out += [{"event": "alarm", "alarm": a, "active": True} for a in sorted(after - before)]
    out += [{"event": "alarm", "alarm": a, "active": False} for a in sorted(before - after)]
    if now.get("done", 0) > last.get("done", 0):   # a USB stick was dealt with (edge.usb): for the screen
        out.append({"event": "stick", "action": "done"})
    return out


def connect(cfg: Config, state: Path, config_path: str | None, wait_s: float = 15.0) -> KeeperDoor:
    """The gate's door: the configured keeper (waited for), or the one serving ``<state>/keeper.sock``;
    when there is none, start one as a process of its own that outlives this one."""
    path = socket_path(cfg, state)
    try:
        return KeeperDoor(path)
    except DoorError:
        if cfg.door.keeper_socket:  # its own unit owns it: wait for it, never start a second one
            return _wait_for(path, wait_s, None)
    proc = spawn(state, config_path)
    return _wait_for(path, wait_s, proc)


def spawn(state: Path, config_path: str | None) -> subprocess.Popen:
    """``maskgate door-keeper`` in its own session (a signal to the gate's group does not reach it),
    its output in ``<state>/keeper.log``, nothing inherited from the gate."""
    argv = [sys.executable, "-m", "edge.cli", "door-keeper", "--state", str(Path(state).resolve())]
    if config_path:
        argv += ["--config", str(Path(config_path).resolve())]
    Path(state).mkdir(parents=True, exist_ok=True)
    with open(Path(state) / LOG_NAME, "ab") as logf:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, close_fds=True,
                                start_new_session=True, cwd="/",
                                env={**os.environ, "PYTHONPATH": _package_root()})
    log.info("started a door keeper (pid %d) on %s", proc.pid, Path(state) / SOCKET_NAME)
    return proc


def _package_root() -> str:
    root = str(Path(__file__).resolve().parent.parent)
    extra = os.environ.get("PYTHONPATH")
    return root + (os.pathsep + extra if extra else "")


def _wait_for(path: Path, wait_s: float, proc: subprocess.Popen | None) -> KeeperDoor:
    end = time.monotonic() + wait_s
    while True:
        try:
            return KeeperDoor(path)
        except DoorError as e:
            if proc is not None and proc.poll() is not None:
                raise DoorError(f"the door keeper exited at start (status {proc.returncode}); see "
                                f"{path.parent / LOG_NAME}") from None
            if time.monotonic() > end:
                raise DoorError(f"{e} (waited {wait_s:.0f} s)") from None
        time.sleep(0.05)
