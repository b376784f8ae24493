"""``diag door``: the door's inputs (contact, exit button, alternative entry) as read now and,
with ``--yes``, one relay click and whether the door contact saw the door open.

The check opens the door the way the keeper does (edge.door.open_door), so it fails while the keeper
holds the pins; the relay is off again when it returns, and a technician's click is audited like any
other unlock.
"""

from __future__ import annotations

import time
from typing import Any

from edge import door as door_mod
from edge.audit import record
from edge.diag.base import Context, Finding, _fail
from edge.errors import MaskgateError


def _door_inputs(st: dict[str, Any]) -> str:
    inputs = {k: v for k, v in (st.get("inputs") or {}).items() if k != "contact"}
    parts = [f"contact {st['contact']}"] if st.get("contact", "none") != "none" else []
    parts += [f"{name} {'pressed' if on else 'released'}" for name, on in inputs.items()]
    return ", ".join(parts) or "no inputs wired"


def _click(door: Any, open_s: float) -> None:
    """Pulse the relay once and wait for the pulse to end (or the door to relock on closing)."""
    door.grant(by="technician")
    deadline = time.monotonic() + open_s + 0.5
    while time.monotonic() < deadline and door.relay_on:
        time.sleep(0.02)
    door.lock("diag")


def _audit_door(ctx: Context, events: list[dict[str, Any]]) -> None:
    for e in events:
        record(ctx.state, ctx.cfg.audit, e["event"], source="diag",
               **{k: v for k, v in e.items() if k not in ("event", "t")})


def check_door(ctx: Context) -> Finding:
    """Input states; with --yes a relay click, and whether the door contact saw the door open."""
    cfg = ctx.cfg.door
    try:
        door = door_mod.open_door(cfg, pin_factory=ctx.pin_factory)
    except MaskgateError as e:
        return _fail(str(e), "check the door.* pins in the config; stop the door keeper first if it runs "
                             "(`sudo systemctl stop maskgate maskgate-keeper`): it holds the pins")
    events: list[dict[str, Any]] = []
    try:
        door.on_event(events.append)
        before = door.status()
        if "inputs" not in before:  # Door.status() reports only the contact: read the buttons' pins too
            pins = getattr(door, "_pins", None)
            before["inputs"] = {n: pins.active(n) for n in getattr(pins, "inputs", ()) if n != "contact"}
        if ctx.yes:
            _click(door, cfg.open_s)
    finally:
        door.close()  # relay off, pins released, queued events delivered
        if ctx.yes:  # a technician's unlock is evidence like any other: door unlock by=technician, ...
            _audit_door(ctx, events)
    where = f"{before.get('backend', cfg.backend)}, relay GPIO {cfg.relay_pin}"
    status, hints = "ok", []
    if before.get("contact") == "open":
        status = "warn"
        hints.append(f"the door contact (GPIO {cfg.contact_pin}) read open: door ajar, or its wiring is cut")
    if before.get("alarms"):
        status = "warn"
        hints.append(f"alarms active: {', '.join(before['alarms'])}")
    if not ctx.yes:
        detail = f"{where} off, {_door_inputs(before)}"
        hints.append(f"add --yes to click the relay (the door unlocks for {cfg.open_s:g} s)")
    else:
        detail = f"{where}: relay clicked for {cfg.open_s:g} s, {_door_inputs(before)}"
        if cfg.contact_pin is None:
            detail += "; no door contact to see the door open"
            status = "warn"
            hints.append("listen for the relay and the strike; wire a door contact (door.contact_pin) "
                         "for held-open and forced-door alarms")
        elif any(e.get("action") == "contact" and e.get("open") for e in events):
            detail += "; the door contact saw the door open"
        else:
            detail += "; the door contact did not see the door open"
            status = "warn"
            hints.append(f"push the door while the relay is on; if it opened, check the contact on "
                         f"GPIO {cfg.contact_pin} (and door.pull_up)")
    if cfg.backend == "mock":
        status = "warn" if status == "ok" else status
        hints.append("door.backend is mock: simulated pins, no real door; set door.backend = gpiozero "
                     "(Raspberry Pi) or gpiod (Jetson)")
    return Finding(status, detail, "; ".join(hints))
