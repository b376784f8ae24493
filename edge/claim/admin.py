"""Asking a person's PIN, for ``maskgate enroll ... --pin`` (edge.enroll) and ``maskgate templates
set-pin`` (edge/commands/credentials.py).

A PIN is asked twice on the terminal (``getpass``: not echoed, never in argv, so never in a shell
history or ``ps``) and only its Argon2id hash reaches the vault.
"""

from __future__ import annotations

import getpass
from typing import Callable

from edge.claim.credentials import ClaimError, check_pin


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
