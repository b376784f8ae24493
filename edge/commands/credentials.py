"""``maskgate templates set-card | clear-card | set-pin | clear-pin PERSON``: a person's card and PIN."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.audit import record
from edge.claim.admin import ask_pin
from edge.claim.credentials import normalise_card
from edge.vault import Vault


def credentials_cli(args: Any, cfg: Any, state: Path, out: Any) -> int:
    """``templates set-card PERSON NUMBER``, ``clear-card PERSON``, ``set-pin PERSON``, ``clear-pin PERSON``."""
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
