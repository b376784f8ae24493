"""Claims: a card, fob or PIN that names who stands at the gate, so that the face is compared with
that person only (``[match] mode = "claim"`` or ``"either"``).

Why: on the population a gate serves, the eye embedder cannot keep every stranger out of a 1:N
search (issue 25); compared with one named person it faces one chance of a false accept instead of
N. The card or PIN alone opens nothing either: the face must still match its holder, live.

Readers (``edge.claim.keyboard`` for USB readers and keypads that type, ``edge.wiegand`` for
Wiegand readers on GPIO) call ``Gate.present(claim)`` from their own threads; the gate keeps the
latest claim for ``[claim] timeout_s`` and uses it for the next decision.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from edge.claim.credentials import ClaimError, normalise_card
from edge.match import Gallery, Match, gate_threshold

log = logging.getLogger(__name__)

__all__ = ["Claim", "ClaimError", "Judgement", "card", "claim_threshold", "judge", "pin"]


@dataclass(frozen=True)
class Claim:
    """A card number, or a PIN already hashed under the vault's salts (the digits are not kept)."""

    kind: str                                   # "card" | "pin"
    card: str | None = None                     # canonical (edge.claim.credentials.normalise_card)
    digests: dict[str, str] = field(default_factory=dict, repr=False)   # PIN: salt -> Argon2id hash
    source: str = ""                            # the reader it came from

    def describe(self) -> str:
        """For event lines and the audit log: the card number, never anything of a PIN."""
        return f"card {self.card}" if self.kind == "card" else "PIN"


def card(number: str, source: str = "") -> Claim:
    """A card claim (``ClaimError`` when ``number`` is not a card number)."""
    return Claim("card", card=normalise_card(number), source=source)


def pin(digits: str, vault: Any, source: str = "") -> Claim:
    """A PIN claim: the digits hashed under every salt the vault's PINs use, then forgotten.

    Slow on purpose (Argon2id, about 0.1-1 s): readers call it on their own thread, not the gate's."""
    from edge.claim.credentials import check_pin, pin_digests

    salts = vault.pin_salts() if vault is not None else set()
    try:
        check_pin(digits)
    except ClaimError:  # a malformed PIN is a wrong PIN: it names nobody
        return Claim("pin", digests={}, source=source)
    return Claim("pin", digests=pin_digests(digits, salts), source=source)


def claim_threshold(model: Any, match_cfg: Any, people: int = 1) -> float:
    """The score a face must reach against the person a claim names. The one place that sets it:
    the one-person threshold of the calibration (``people`` > 1 only for a PIN shared by several)."""
    return gate_threshold(people, model, match_cfg)[0]


@dataclass(frozen=True)
class Judgement:
    """What a claim and a face came to: ``reason`` is None for a grant."""

    match: Match | None         # the best of the claimed people (None: the claim named nobody)
    threshold: float | None
    reason: str | None
    claimed: list[str]          # names of the people the claim named (for the decision line)


def judge(claim: Claim | None, vault: Any, probes: np.ndarray, model: Any, match_cfg: Any,
          name_of: Callable[[str], str]) -> Judgement:
    """Compare the face (``probes``, protected like the templates) with the claim's holder only."""
    if claim is None:
        return Judgement(None, None, "no card or PIN presented (match.mode = claim)", [])
    if claim.kind == "card":
        holder = vault.card_holder(claim.card) if vault is not None else None
        holders = [holder] if holder is not None else []
        if not holders:
            return Judgement(None, None, "unknown card", [])
    else:
        holders = vault.pin_holders(claim.digests) if vault is not None and claim.digests else []
        if not holders:
            return Judgement(None, None, "wrong PIN", [])
    names = [name_of(p.id) for p in holders]
    ids, rows = vault.gallery()   # only those allowed in now (expiry, retention)
    keep = [i for i, pid in enumerate(ids) if pid in {p.id for p in holders}]
    if not keep:
        return Judgement(None, None, f"{claim.kind if claim.kind == 'card' else 'PIN'} of someone not "
                         "allowed in now (expired or past retention)", names)
    match = Gallery([ids[i] for i in keep], rows[keep]).search(probes)
    threshold = claim_threshold(model, match_cfg, len({ids[i] for i in keep}))
    if match.score < threshold:
        whose = "the card's holder" if claim.kind == "card" else "the PIN's holder"
        return Judgement(match, threshold, f"face does not match {whose}", names)
    return Judgement(match, threshold, None, names)
