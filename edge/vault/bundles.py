"""Sealed, signed files between gates: template bundles (``templates export`` / ``import``) and, with
their own magic, rosters (``edge.roster``).

DESIGN: one layout for everything that leaves a gate for another: the payload sealed to the target
gate's X25519 public key (only its private key, derived from its device key, opens it), the clear
header and the box signed by an installer's Ed25519 key that the target must list in
``vault.trusted_keys``. This module owns that layout and the signing-key file; it writes nothing and
takes no lock. The vault's side (its records out of and back into its keyed transform, under its
lock) is ``Vault.export_bundle`` / ``import_bundle`` / ``plain_records`` / ``apply`` in
``edge.vault.store``.
"""

from __future__ import annotations

import struct
from pathlib import Path

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.signing import SigningKey, VerifyKey

from edge.errors import VaultError
from edge.vault.format import VERSION, Keys, read_or_none, _Record, decode_records

BUNDLE_MAGIC = b"MGBUNDL\x00"
BUNDLE_HEAD = struct.Struct(">8sH32s32s")  # magic, version, signer Ed25519 key, target X25519 key
SIGNATURE_BYTES = 64


def _hex_key(text: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise VaultError(f"{what} must be 64 hex characters, not {text[:80]!r}")
    return raw


def open_bundle(data: bytes, keys: Keys, trusted: list[str], where: str = "bundle") -> tuple[list[_Record], int, str]:
    """Check a bundle's signature against the trusted keys, then open it; all faults are ``VaultError``."""
    plain = open_signed(data, keys, trusted, where)
    try:
        return decode_records(plain)
    except VaultError as e:
        raise VaultError(f"{where}: {e}") from None


def seal_signed(payload: bytes, target_public_hex: str, signing_key: bytes, magic: bytes = BUNDLE_MAGIC,
                what: str = "bundle") -> bytes:
    """``payload`` sealed to a gate's X25519 public key, header and box signed by an Ed25519 key.

    The layout of a template bundle; a roster (``edge.roster``) is the same with its own ``magic``."""
    target = _hex_key(target_public_hex, "target public key (from `maskgate templates pubkey` there)")
    try:
        signer = SigningKey(signing_key)
        box = SealedBox(PublicKey(target))
    except (CryptoError, ValueError, TypeError) as e:
        raise VaultError(f"cannot use the keys for the {what}: {e}") from None
    sealed = bytes(box.encrypt(payload))
    head = BUNDLE_HEAD.pack(magic, VERSION, bytes(signer.verify_key), target)
    return head + bytes(signer.sign(head + sealed).signature) + sealed


def sealed_target(data: bytes) -> bytes | None:
    """The gate public key a sealed file (bundle or roster) names in its clear header, or None."""
    return BUNDLE_HEAD.unpack_from(data)[3] if len(data) >= BUNDLE_HEAD.size else None


def open_signed(data: bytes, keys: Keys, trusted: list[str], where: str = "bundle",
                magic: bytes = BUNDLE_MAGIC, what: str = "template bundle") -> bytes:
    """The payload of :func:`seal_signed`'s output, once its signer is trusted, its signature right
    and it is sealed to this gate; every fault is a ``VaultError`` starting with ``where``."""
    n_head = BUNDLE_HEAD.size
    if len(data) < n_head + SIGNATURE_BYTES:
        raise VaultError(f"{where}: too short to be a {what} ({len(data)} bytes)")
    found, version, signer, target = BUNDLE_HEAD.unpack_from(data)
    if found != magic:
        raise VaultError(f"{where}: not a maskgate {what}")
    if version != VERSION:
        raise VaultError(f"{where}: {what} format version {version} is not supported")
    if signer.hex() not in {k.lower() for k in trusted}:
        raise VaultError(f"{where}: signed by {signer.hex()}, which is not in vault.trusted_keys; "
                         "add the installer's public key to the config if you trust them")
    signature, sealed = data[n_head:n_head + SIGNATURE_BYTES], data[n_head + SIGNATURE_BYTES:]
    try:
        VerifyKey(signer).verify(data[:n_head] + sealed, signature)
    except (BadSignatureError, CryptoError, ValueError):
        raise VaultError(f"{where}: bad signature (altered or not signed by {signer.hex()[:16]}...)") from None
    if target != keys.public_key:
        raise VaultError(f"{where}: sealed to gate {target.hex()[:16]}..., not to this one "
                         f"({keys.public_key.hex()[:16]}...); export it again with this gate's pubkey")
    try:
        return SealedBox(PrivateKey(keys.box)).decrypt(sealed)
    except (CryptoError, ValueError, TypeError):
        raise VaultError(f"{where}: cannot be opened with this gate's key (altered)") from None


def read_signing_key(path: Path) -> bytes:
    """An installer's Ed25519 signing key file: 64 hex characters (``templates keygen``) or 32 raw bytes."""
    raw = read_or_none(path)
    if raw is None:
        raise VaultError(f"{path}: no such signing key file (make one with: maskgate templates keygen --out FILE)")
    if len(raw) == 32:
        return raw
    return _hex_key(raw.decode("ascii", "replace"), f"{path}: signing key")
