"""Card numbers and PINs as the vault keeps them.

A card number is a decimal string without leading zeros, so that "0012345678" typed by a keyboard
reader, "12345678" written on an enrolment form and the same number read over Wiegand are one card.
A Wiegand-26 card printed as facility and card ("12,3456" or "12:3456") is the 24-bit frame value
facility x 65536 + card, which is what edge.wiegand decodes.

A PIN is never stored: only its Argon2id hash (PyNaCl / libsodium, the interactive cost: about 0.1 s
and 64 MiB on a PC, under a second on a Pi 4), salted per device and kept inside the sealed vault.
The salt is one per device, not one per person, so that a PIN typed at the keypad is hashed once and
then looked up among everyone's hashes; the record keeps the salt it was made with, so records moved
from another gate (templates export / import) still verify.
"""

from __future__ import annotations

import hashlib
import re

from edge.errors import MaskgateError

PIN_DIGITS = (4, 12)
MAX_CARD_DIGITS = 20
_CARD_RE = re.compile(r"\d{1,%d}" % MAX_CARD_DIGITS)
_FACILITY_RE = re.compile(r"(\d{1,5})[,:](\d{1,5})")


class ClaimError(MaskgateError):
    """A card number or PIN that cannot be used (bad format, already someone else's)."""


def normalise_card(text: str) -> str:
    """The canonical form of a card number; ``ClaimError`` for anything that is not one."""
    s = str(text).strip().replace(" ", "")
    m = _FACILITY_RE.fullmatch(s)
    if m:
        facility, card = int(m.group(1)), int(m.group(2))
        if facility > 0xFFFF or card > 0xFFFF:
            raise ClaimError(f"card {text!r}: facility and card number must each be 0-65535")
        return str(facility * 65536 + card)
    if not _CARD_RE.fullmatch(s):
        raise ClaimError(f"card {text!r} is not a card number (up to {MAX_CARD_DIGITS} digits, "
                         "or facility,card as printed on a Wiegand-26 card)")
    return str(int(s))


def check_pin(pin: str) -> str:
    """The PIN itself when it is one (4-12 digits); ``ClaimError`` otherwise (the PIN is not quoted)."""
    lo, hi = PIN_DIGITS
    if not (pin.isascii() and pin.isdigit() and lo <= len(pin) <= hi):
        raise ClaimError(f"a PIN is {lo} to {hi} digits")
    return pin


def device_salt(device: bytes) -> bytes:
    """The PIN salt of one board (from its identity, so it survives a rekey of the vault)."""
    from nacl.pwhash import argon2id

    return hashlib.blake2b(device, digest_size=argon2id.SALTBYTES, person=b"maskgate-pin").digest()


def hash_pin(pin: str, salt: bytes) -> bytes:
    """Argon2id of a PIN under ``salt`` (32 bytes)."""
    from nacl.pwhash import argon2id

    return argon2id.kdf(32, check_pin(pin).encode(), salt, opslimit=argon2id.OPSLIMIT_INTERACTIVE,
                        memlimit=argon2id.MEMLIMIT_INTERACTIVE)


def pin_record(pin: str, salt: bytes) -> str:
    """What the vault keeps of a PIN: ``salt:hash`` in hex."""
    return f"{salt.hex()}:{hash_pin(pin, salt).hex()}"


def pin_digests(pin: str, salts: set[str]) -> dict[str, str]:
    """The PIN hashed under each salt in use (hex salt -> hex hash): one Argon2id per salt."""
    return {s: hash_pin(pin, bytes.fromhex(s)).hex() for s in salts}
