"""The sealed template vault (see ``edge/vault/store.py``); re-exports its public names."""

from edge.vault.store import (BUNDLE_HEAD, BUNDLE_MAGIC, DAY_S, DEVICE_ID_ENV, FACE_DIM, HEADER, ID_RE, KEY_BYTES,
                              KEY_FILE, LOCK_FILE, MAGIC, MAX_DIM, MAX_TEXT, NEXT_KEY_FILE, SIGNATURE_BYTES,
                              TOUCH_PERSIST_S, TRANSFORM, VAULT_FILE, VERSION, Consent, Keys, Person, Vault,
                              _read, _Record, atomic_write, decode_records, device_identity, encode_records,
                              open_bundle, open_signed, parse, read_signing_key, seal_signed, sealed_target,
                              templates_cli, transform_matrix)

__all__ = ["BUNDLE_HEAD", "BUNDLE_MAGIC", "DAY_S", "DEVICE_ID_ENV", "FACE_DIM", "HEADER", "ID_RE", "KEY_BYTES",
           "KEY_FILE", "LOCK_FILE", "MAGIC", "MAX_DIM", "MAX_TEXT", "NEXT_KEY_FILE", "SIGNATURE_BYTES",
           "TOUCH_PERSIST_S", "TRANSFORM", "VAULT_FILE", "VERSION", "Consent", "Keys", "Person", "Vault",
           "atomic_write", "decode_records", "device_identity", "encode_records", "open_bundle", "open_signed",
           "parse", "read_signing_key", "seal_signed", "sealed_target", "templates_cli", "transform_matrix"]
