"""``diag claim``: the configured card / PIN reader opens (and is grabbed) and suits match.mode;
with ``--yes`` a card presented within ten seconds is read and shown.
"""

from __future__ import annotations

import time
from typing import Any

from edge import claim as claim_mod
from edge.diag.base import Context, Finding, _fail, _ok, _warn
from edge.errors import MaskgateError

CLAIM_WAIT_S = 10.0  # diag claim --yes: how long to wait for a card to be presented


def check_claim(ctx: Context) -> Finding:
    """The [claim] reader opens (and is grabbed); with --yes, a card presented within 10 s is shown."""
    mode, reader_kind = ctx.cfg.match.mode, ctx.cfg.claim.reader
    if reader_kind == "none":
        if mode == "identify":
            return _ok("no claim reader (match.mode = identify: the face alone decides)")
        finding = _fail if mode == "claim" else _warn
        return finding(f"match.mode = {mode} but claim.reader = none: nobody can present a card or PIN",
                       "set [claim] reader = \"keyboard\" (and device) or \"wiegand\" (and the D0/D1 pins)")
    seen: list[Any] = []
    try:
        reader = claim_mod.open_reader(ctx.cfg, seen.append, None, pin_factory=ctx.pin_factory)
    except MaskgateError as e:
        return _fail(str(e), "check [claim] in the config; stop the gate first if it runs "
                             "(`sudo systemctl stop maskgate`): it holds the reader")
    try:
        detail = f"{reader.name} open"
        if ctx.yes:
            end = time.monotonic() + CLAIM_WAIT_S
            while not seen and time.monotonic() < end:
                time.sleep(0.05)
            if not seen:
                return _warn(f"{detail}; nothing presented in {CLAIM_WAIT_S:.0f} s",
                             "present a card (or type * PIN Enter on a keypad) while the check waits; "
                             "check the reader's wiring or USB cable")
            detail += f"; read {seen[0].describe()}"
    finally:
        reader.close()
    if mode == "identify":
        return _warn(f"{detail}, but match.mode = identify ignores claims", "set [match] mode = \"claim\" or \"either\"")
    return _ok(detail, "" if ctx.yes else "run `maskgate diag claim --yes` and present a card to see it read")
