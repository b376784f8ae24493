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

from edge.calibration import one_person_threshold
from edge.claim.credentials import ClaimError, check_pin, normalise_card, pin_digests
from edge.claim.keyboard import KeyboardReader, KeyEntry
from edge.errors import ConfigError
from edge.match import Gallery, Match, gate_threshold
from edge.wiegand import WiegandReceiver

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
    salts = vault.pin_salts() if vault is not None else set()
    try:
        check_pin(digits)
    except ClaimError:  # a malformed PIN is a wrong PIN: it names nobody
        return Claim("pin", digests={}, source=source)
    return Claim("pin", digests=pin_digests(digits, salts), source=source)


def claim_threshold(model: Any, match_cfg: Any, people: int = 1,
                    site: tuple[list[str], np.ndarray] | None = None) -> float:
    """The score a face must reach against the person a claim names. The one place that sets it:
    the one-person threshold of the calibration (``people`` > 1 only for a PIN shared by several).
    With ``site`` (the vault's whole gallery: ids, rows) it is the site calibration's one-person
    rule (edge.calibration), never below the model's own for ``people``."""
    t = gate_threshold(people, model, match_cfg)[0]
    if site is not None and len(site[0]):
        t = max(t, one_person_threshold(site[0], site[1], model, match_cfg))
    return t


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
    threshold = claim_threshold(model, match_cfg, len({ids[i] for i in keep}), site=(ids, rows))
    if match.score < threshold:
        whose = "the card's holder" if claim.kind == "card" else "the PIN's holder"
        return Judgement(match, threshold, f"face does not match {whose}", names)
    return Judgement(match, threshold, None, names)


def _door_pins(cfg: Any) -> set[int]:
    d = cfg.door
    return {p for p in (d.relay_pin, d.contact_pin, d.rex_pin, d.alt_entry_pin, d.led_pin, d.buzzer_pin)
            if p is not None}


def open_reader(cfg: Any, present: Callable[[Claim], None], vault: Any, pin_factory: Any = None) -> Any:
    """The ``[claim]`` reader, feeding ``present`` (``Gate.present``) from its own thread; None when
    ``claim.reader = "none"``. Has ``close()`` and ``name``."""
    import time


    rc = cfg.claim
    if rc.reader == "none":
        return None

    def entry(kind: str, digits: str, source: str) -> None:
        try:
            c = card(digits, source) if kind == "card" else pin(digits, vault, source)
        except ClaimError as e:
            log.warning("%s: %s", source, e)
            return
        present(c)

    if rc.reader == "keyboard":
        if not rc.device:
            raise ConfigError("claim.reader = \"keyboard\" needs claim.device (a /dev/input/by-id/... path)")

        return KeyboardReader(rc.device, lambda kind, digits: entry(kind, digits, "keyboard"))
    d0, d1 = rc.wiegand_d0_pin, rc.wiegand_d1_pin
    if d0 is None or d1 is None:
        raise ConfigError("claim.reader = \"wiegand\" needs claim.wiegand_d0_pin and claim.wiegand_d1_pin")
    clash = {d0, d1} & _door_pins(cfg)
    if clash:
        raise ConfigError(f"claim.wiegand pins {sorted(clash)} are also [door] pins; give each its own GPIO")

    keys = KeyEntry(plain="pin")   # a Wiegand keypad: digits then # (or * digits #) is a PIN

    def frame(f: Any) -> None:
        if f.key is None:
            entry("card", str(f.value), f"wiegand-{f.bits}")
        else:
            done = keys.key(f.key, time.monotonic())
            if done is not None:
                entry(*done, "wiegand-keypad")

    reader = WiegandReceiver(d0, d1, frame, backend=cfg.door.backend, gpiochip=cfg.door.gpiochip,
                             gap_s=rc.wiegand_gap_ms / 1000, pin_factory=pin_factory)
    reader.name = f"Wiegand D0=GPIO{d0} D1=GPIO{d1} ({cfg.door.backend})"
    return reader
