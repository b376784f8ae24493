"""Setting a person's card and PIN: ``maskgate enroll ... --card N --pin`` and ``maskgate templates
set-card | clear-card | set-pin | clear-pin``.

A PIN is asked twice on the terminal (``getpass``: not echoed, never in argv, so never in a shell
history or ``ps``) and only its Argon2id hash reaches the vault.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any, Callable

from edge.claim.credentials import ClaimError, check_pin, normalise_card


def ask_pin(who: str, prompt: Callable[[str], str] = getpass.getpass) -> str:
    """A new PIN typed twice on the terminal; ``ClaimError`` when it is not one or the two differ."""
    try:
        first = prompt(f"PIN for {who} (4-12 digits, not shown): ")
        second = prompt("the same PIN again: ")
    except EOFError:
        raise ClaimError("no PIN typed (--pin asks on the terminal)") from None
    check_pin(first)
    if first != second:
        raise ClaimError("the two PINs differ; nothing was changed")
    return first


def credentials_cli(args: Any, cfg: Any, state: Path, out: Any) -> int:
    """``templates set-card PERSON NUMBER``, ``clear-card PERSON``, ``set-pin PERSON``, ``clear-pin PERSON``."""
    from edge.audit import record
    from edge.vault import Vault

    vault = Vault.open(state, cfg.vault)
    p = vault.find(args.person)  # before the PIN is asked: a typo in the name fails at once
    action = args.action
    if action == "set-card":
        p = vault.set_credentials(p.id, card=normalise_card(args.number))
        what = f"card {p.card}"
    elif action == "clear-card":
        p = vault.set_credentials(p.id, card=None)
        what = "no card"
    elif action == "set-pin":
        p = vault.set_credentials(p.id, pin=vault.pin_record(ask_pin(p.name or p.id)))
        what = "a new PIN"
    else:
        p = vault.set_credentials(p.id, pin=None)
        what = "no PIN"
    record(state, cfg.audit, f"vault.{action}", person=p.id, name=p.name,
           **({"card": p.card} if action == "set-card" else {}))
    out.event({"person": p.id, "name": p.name, "card": p.card, "pin": p.pin},
              f"{p.name or p.id} ({p.id}) now has {what}")
    return 0
