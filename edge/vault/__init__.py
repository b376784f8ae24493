"""The sealed template vault: ``format`` (the bytes and the crypto), ``store`` (the file on a gate:
``Vault``), ``bundles`` (sealed, signed files between gates). The public names are re-exported here,
so ``from edge.vault import Vault`` is the way in for the rest of ``edge``."""

from edge.vault.bundles import (BUNDLE_HEAD, BUNDLE_MAGIC, SIGNATURE_BYTES, open_bundle, open_signed,
                                read_signing_key, seal_signed, sealed_target)
from edge.vault.format import (DEVICE_ID_ENV, FACE_DIM, HEADER, ID_RE, KEY_BYTES, MAGIC, MAX_DIM, MAX_TEXT,
                               TRANSFORM, VERSION, Consent, Keys, Person, decode_records, read_or_none,
                               device_identity, encode_records, parse, transform_matrix)
from edge.vault.store import DAY_S, KEY_FILE, LOCK_FILE, NEXT_KEY_FILE, TOUCH_PERSIST_S, VAULT_FILE, Vault

__all__ = ["BUNDLE_HEAD", "BUNDLE_MAGIC", "DAY_S", "DEVICE_ID_ENV", "FACE_DIM", "HEADER", "ID_RE", "KEY_BYTES",
           "KEY_FILE", "LOCK_FILE", "MAGIC", "MAX_DIM", "MAX_TEXT", "NEXT_KEY_FILE", "SIGNATURE_BYTES",
           "TOUCH_PERSIST_S", "TRANSFORM", "VAULT_FILE", "VERSION", "Consent", "Keys", "Person", "Vault",
           "decode_records", "device_identity", "encode_records", "open_bundle", "open_signed",
           "parse", "read_signing_key", "seal_signed", "sealed_target", "transform_matrix", "read_or_none"]
