"""The daemon behind ``maskgate run``: one loop from camera to door, under systemd.

systemd integration (``edge.lifecycle``) is the plain sd_notify datagram protocol: ``READY=1``
once the door and the models are up, ``STATUS=`` on every change of state, ``WATCHDOG=1`` every
``WATCHDOG_USEC / 2`` and ``STOPPING=1`` on the way out. The watchdog pings come from the loop
itself, never from a helper thread, so a loop stuck in a camera read or an inference gets the
service killed and restarted by systemd (``WatchdogSec=``) instead of a gate that looks alive.

The door stays locked unless the gate grants: it is locked while the camera is lost (retries back
off exponentially, ``[service] retry_initial_s`` doubling to ``retry_max_s``, pinging the watchdog
while they wait), when the decision engine cannot be built (a missing model, a damaged vault: the
loop still runs so the exit button and the alternative-entry input keep working), on SIGTERM and
SIGINT (the handler drives the relay off before anything else), on any exception and at exit.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

from edge import __version__, claim, events, gate, keeper, privacy
from edge.audit import AuditLog
from edge.camera import open_source
from edge.config import Config
from edge.display.follow import attach
from edge.door import Door
from edge.errors import CameraError, MaskgateError
from edge.lifecycle import Notifier, install_signal_handlers, restore_signal_handlers
from edge.liveness import make_prompter
from edge.vision import landmarks

log = logging.getLogger(__name__)


def _make_gate(cfg: Config, state: Path, door: Door, audit: AuditLog,
               emit: Callable[[dict[str, Any]], None]) -> Any:
    """The decision engine, or None (door kept locked) when it cannot be built; says why.

    A missing model or a damaged vault still gives a gate: it runs and grants nobody, saying why
    on every approach (edge.gate.build). None only when the gate itself cannot be made.
    """
    try:
        g = gate.build(cfg, state, door, audit, emit, prompter=make_prompter(cfg, door=door))
        attach(g, cfg, door)
        return g
    except MaskgateError as e:
        reason = str(e)
    log.error("no decisions: %s; the door stays locked (exit button and alternative entry still work)",
              reason)
    audit.append("service", action="degraded", reason=reason[:200])
    door.indicate("fault")
    return None


def _event_stream(cfg: Config, door: Door) -> Any:
    """The local event stream (edge.events), fed by the door; None when off or it cannot be served."""
    stream = events.serve(cfg.events, snapshot=events.door_snapshot(door))
    if stream is not None:
        door.on_event(stream.publish)
    return stream


def _log_and_publish(ev: dict[str, Any], stream: Any) -> None:
    """A gate event: to the journal, and to the event stream's readers."""
    log.info("%s", json.dumps(ev, separators=(",", ":")))
    if stream is not None and ev.get("event") != "door":  # door changes come from the door itself
        stream.publish(ev)
def _open_claim_reader(cfg: Config, gate: Any, audit: AuditLog) -> Any:
    """The card reader or keypad of ``[claim]`` feeding the gate, or None. One that will not open
    is logged and audited, not fatal: the gate still runs (in claim mode it then lets nobody in)."""
    if gate is None or cfg.claim.reader == "none":
        return None
    try:
        reader = claim.open_reader(cfg, gate.present, gate.vault)
        log.info("claim reader: %s", reader.name)
        return reader
    except MaskgateError as e:
        log.error("claim reader: %s", e)
        audit.append("service", action="degraded", reason=f"claim reader: {e}"[:200])
        return None


def _wait(stop: threading.Event, seconds: float, notifier: Notifier) -> None:
    """Sleep ``seconds`` (or until stopped), pinging the watchdog from this loop meanwhile."""
    end = time.monotonic() + seconds
    while not stop.is_set() and (left := end - time.monotonic()) > 0:
        stop.wait(min(left, notifier.due_in()))
        notifier.watchdog()


def _loop(cfg: Config, landmarker: Any, gate: Any, door: Door, audit: AuditLog, notifier: Notifier,
          stop: threading.Event) -> None:
    delay, failures = cfg.service.retry_initial_s, 0
    audit_fault = False
    while not stop.is_set():
        source = None
        frames = 0
        try:
            source = open_source(cfg.camera)
            log.info("camera %s open", source.name)
            while not stop.is_set():
                frame = source.read()
                if frame is None:
                    raise CameraError(f"{source.name} stopped delivering frames")
                if frames == 0:
                    if failures:
                        audit.append("camera", action="restored", after=failures)
                    failures, delay = 0, cfg.service.retry_initial_s
                    door.indicate("idle")
                    notifier.status(f"running: camera {source.name}; relay {door.status()['relay']}")
                frames += 1
                faces = landmarker.detect(frame.image)
                if gate is not None:
                    gate.process(frame, faces)
                if audit.failing != audit_fault:  # the fault pattern while the log cannot be written
                    audit_fault = audit.failing
                    door.indicate("fault" if audit_fault else "idle")
                notifier.watchdog()
        except CameraError as e:
            door.lock("camera lost")
            door.indicate("fault")
            failures += 1
            if failures == 1:  # the first of a run is an event; the retries are log lines
                audit.append("camera", action="lost", reason=str(e)[:200])
            log.warning("camera: %s; retry %d in %.1f s (door locked)", e, failures, delay)
            notifier.status(f"camera unavailable: {e}; retry {failures} in {delay:.1f} s; "
                            f"relay {door.status()['relay']}")
            _wait(stop, delay, notifier)
            delay = min(delay * 2, cfg.service.retry_max_s)
        finally:
            if source is not None:
                source.close()


def run(cfg: Config, state: Path, config_path: str | None = None) -> int:
    """The daemon: returns 0 after a clean stop (SIGTERM / SIGINT); the relay is off whatever happens
    (the door keeper ends every pulse itself; ``config_path`` is passed on to a keeper it starts)."""
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        logging.getLogger("edge").setLevel(logging.INFO)  # a daemon's events belong in the journal
    notifier = Notifier()
    stop = threading.Event()
    previous = install_signal_handlers(stop)  # before anything slow: a stop during start-up counts
    door: Any = None
    audit: AuditLog | None = None
    stream: Any = None
    try:
        notifier.status("starting")
        privacy.install()
        audit = AuditLog(state, cfg.audit)
        audit.append("service", action="start", version=__version__, door=cfg.door.backend,
                     camera=cfg.camera.source)
        # The door keeper owns the pins and times every pulse (edge/keeper.py): nothing that
        # happens to this process can hold the relay on. It records the door's events itself.
        door = keeper.connect(cfg, state, config_path)
        install_signal_handlers(stop, door)  # now the handler can drive the relay off first
        stream = _event_stream(cfg, door)  # door changes: the keeper's, watched through its status
        with landmarks.for_video(cfg.vision) as landmarker:
            gate = _make_gate(cfg, state, door, audit, lambda ev: _log_and_publish(ev, stream))
            reader = _open_claim_reader(cfg, gate, audit)
            notifier.ready("door locked; opening the camera" if gate is not None
                           else "door locked; no decisions (see the log)")
            try:
                if not stop.is_set():
                    _loop(cfg, landmarker, gate, door, audit, notifier, stop)
            finally:
                if reader is not None:
                    reader.close()
                if gate is not None:
                    gate.close()
        return 0
    except Exception as e:
        if audit is not None and not isinstance(e, MaskgateError):  # a bug: leave a trace beside the log's
            audit.append("service", action="crash", error=f"{type(e).__name__}: {e}"[:200])
        raise
    finally:
        notifier.stopping()
        try:
            if door is not None:
                door.close()
            if stream is not None:
                stream.close()
        finally:
            if audit is not None:  # "off": close() returned, so the relay pin was driven off
                audit.append("service", action="stop", relay="off" if door is None or door.closed else "unknown")
            notifier.close()
            restore_signal_handlers(previous)
        log.info("stopped; relay off")
