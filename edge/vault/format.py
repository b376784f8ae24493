"""The vault's file format and crypto: what ``vault.bin`` and ``device.key`` hold, and how a template
is kept useless to whoever copies it.

DESIGN: this module owns bytes, not files on a gate. It knows the layout, the keys derived from the
device key and the board's identity, the keyed transform of templates and the checks every field of
a record passes; it takes no lock and writes nothing (``edge.vault.store`` does, under its lock), so
it can be read and tested on its own. Bundles between gates reuse the record encoding
(``edge.vault.bundles``).

Why it looks like this:
- A face cannot be changed once leaked, so templates are (1) sealed with PyNaCl's SecretBox under a
  key derived from a random device key *and* the board's identity, so a copied file or a whole SD
  card in another board opens nothing, and (2) stored only after a secret, key-derived orthogonal
  transform, so even a leaked plaintext template matches nothing once the key is renewed
  (``rekey``), and two gates' templates of the same person cannot be linked. An orthogonal
  transform keeps every cosine similarity, so recognition loses nothing.
- Any fault in the file (truncated, altered, foreign) is a ``VaultError`` naming the file and the
  fault; reading never changes the file.

File layout (``vault.bin`` in the state directory)::

    MAGIC (8) | format version (u16 BE) | key id (8) | SecretBox(nonce 24 | MAC 16 | body)
    body = header (18, repeated so it is authenticated) | u32 BE json length | json | float32 rows

The json lists the people in row order (``"n"`` templates each); the rows are their protected
templates, ``dim`` float32 each, little-endian. ``"embedder"`` names the embedding function that made
them (``edge.embed.space_of``; absent in files from before it was recorded): templates of another
model are not comparable, so a gate or an enrolment with another model refuses them (re-enrol).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey
from nacl.secret import SecretBox

from edge.errors import VaultError

log = logging.getLogger(__name__)

MAGIC = b"MGVAULT\x00"
VERSION = 1
HEADER = struct.Struct(">8sH8s")          # magic, version, key id
TRANSFORM = "shake256-gauss-qr-v1"
FACE_DIM = 128   # the whole-face embeddings stored beside the eye templates (edge.embed.FaceEmbedder)
KEY_BYTES = 32
MAX_TEXT = 4096   # consent text, names, operator: bounded so a bad file cannot ask for gigabytes
MAX_DIM = 4096
ID_RE = re.compile(r"p-[0-9a-f]{16}")

# Test-only: lets tests stand in for two different boards on one machine. Never set it on a gate.
DEVICE_ID_ENV = "MASKGATE_DEVICE_ID"
_ID_SOURCES = ("/sys/firmware/devicetree/base/serial-number", "/proc/device-tree/serial-number",
               "/proc/cpuinfo", "/etc/machine-id", "/var/lib/dbus/machine-id")


# ---------------------------------------------------------------- identity and keys


def device_identity(override: str | None = None, sources: tuple[str, ...] = _ID_SOURCES) -> bytes:
    """The board's identity: the Raspberry Pi / Jetson serial (in the SoC), else ``/etc/machine-id``.

    ``override`` (or the test-only ``MASKGATE_DEVICE_ID``) replaces it so tests can play two boards.
    """
    if override is None:
        override = os.environ.get(DEVICE_ID_ENV) or None
    if override is not None:
        return b"override:" + override.encode()
    for src in sources:
        try:
            raw = Path(src).read_bytes()
        except OSError:
            continue
        if src.endswith("cpuinfo"):
            m = re.search(rb"^Serial\s*:\s*([0-9a-fA-F]+)\s*$", raw, re.M)
            raw = m.group(1) if m and m.group(1).strip(b"0") else b""
        value = raw.strip(b"\x00 \n\t")
        if value:
            return src.encode() + b":" + value
    raise VaultError("no device identity found (no board serial, no /etc/machine-id); "
                     "run systemd-machine-id-setup")


def _derive(root: bytes, device: bytes, purpose: bytes, size: int = 32) -> bytes:
    """A sub-key for one purpose, bound to both the key file and the board (keyed BLAKE2b)."""
    return hashlib.blake2b(device, key=root, person=b"maskgate-v1", salt=purpose.ljust(16, b"\0")[:16],
                           digest_size=size).digest()


@dataclass(frozen=True)
class Keys:
    """Everything derived from one device key on one board."""

    key_id: bytes       # 8 bytes, in the file header: tells "another device/key" from "altered"
    seal: bytes         # SecretBox key
    transform: bytes    # seed of the orthogonal template transform
    box: bytes          # X25519 private key: bundles from other gates are sealed to its public key

    @classmethod
    def derive(cls, root: bytes, device: bytes) -> "Keys":
        return cls(_derive(root, device, b"key-id", 8), _derive(root, device, b"seal"),
                   _derive(root, device, b"transform"), _derive(root, device, b"x25519"))

    @property
    def public_key(self) -> bytes:
        return bytes(PrivateKey(self.box).public_key)


_TRANSFORMS: dict[tuple[bytes, int], np.ndarray] = {}


def transform_matrix(seed: bytes, dim: int) -> np.ndarray:
    """The secret orthogonal ``dim`` x ``dim`` matrix of a key: QR of a Gaussian matrix.

    The Gaussian comes from SHAKE-256 of the seed (Box-Muller), not from numpy's generators, so
    the same key gives the same matrix after any numpy upgrade; the sign fix makes QR unique.
    """
    cached = _TRANSFORMS.get((seed, dim))
    if cached is not None:
        return cached
    n = dim * dim + (dim * dim) % 2
    raw = np.frombuffer(hashlib.shake_256(seed + struct.pack(">I", dim)).digest(8 * n), dtype="<u8")
    u = ((raw >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0 ** -53   # uniform in (0, 1)
    r = np.sqrt(-2.0 * np.log(u[0::2]))
    g = np.concatenate([r * np.cos(2 * np.pi * u[1::2]), r * np.sin(2 * np.pi * u[1::2])])[:dim * dim]
    q, rr = np.linalg.qr(g.reshape(dim, dim))
    q = q * np.sign(np.diag(rr))[np.newaxis, :]
    if len(_TRANSFORMS) > 8:
        _TRANSFORMS.clear()
    _TRANSFORMS[(seed, dim)] = q
    return q


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class Consent:
    """What the person agreed to (the text, or a reference to the signed form), when, and who took it."""

    text: str
    time: float
    operator: str = ""


@dataclass(frozen=True)
class Person:
    """One enrolled person as ``templates list`` shows them: never the embeddings."""

    id: str
    name: str
    templates: int
    consent: Consent
    created: float
    last_seen: float | None = None
    expires: float | None = None
    card: str | None = None     # claim mode (edge.claim): the card or fob number, canonical form
    pin: bool = False           # whether a PIN is set (its hash stays in the record, never shown)
    # Access rules (edge.access): groups (none: [access] default_group) and a visitor pass, local
    # date-and-time text kept exactly as the operator gave it.
    groups: tuple[str, ...] = ()
    valid_from: str | None = None
    valid_until: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class _Record:
    person: Person
    rows: np.ndarray  # n x dim float32, protected (keyed space)
    pin: str | None = None  # "salt:hash" in hex (edge.claim.credentials.pin_record)
    # the whole-face embedding of each template photo (n x FACE_DIM, protected by its own transform;
    # a zero row: none for that photo) and the face embedder that made them; None: eye only
    face: np.ndarray | None = None
    face_space: str = ""


def _field(obj: dict, key: str, kind: type | tuple, what: str) -> Any:
    if key not in obj:
        raise VaultError(f"body malformed: {what} lacks {key!r}")
    v = obj[key]
    if isinstance(v, bool) and kind is not bool or not isinstance(v, kind):
        raise VaultError(f"body malformed: {what} has a bad {key!r}")
    if isinstance(v, str) and len(v) > MAX_TEXT:
        raise VaultError(f"body malformed: {what} has an over-long {key!r}")
    if isinstance(v, float) and not np.isfinite(v):
        raise VaultError(f"body malformed: {what} has a non-finite {key!r}")
    return v


def _time(obj: dict, key: str, what: str) -> float:
    v = _field(obj, key, (int, float), what)
    if not 0 <= v < 1e11:  # seconds since 1970, before the year 5000
        raise VaultError(f"body malformed: {what} has an impossible {key!r}")
    return float(v)


def _opt_time(obj: dict, key: str, what: str) -> float | None:
    return None if obj.get(key) is None else _time(obj, key, what)


def _person_to_json(p: Person) -> dict:
    return {"id": p.id, "name": p.name, "n": p.templates, "created": p.created, "last_seen": p.last_seen,
            "expires": p.expires, "consent": dataclasses.asdict(p.consent), "card": p.card,
            **_access_to_json(p)}


def _access_to_json(p: Person) -> dict:
    """Groups and pass, only when set (a record without them reads as before: the default group)."""
    extra: dict[str, Any] = {"groups": list(p.groups)} if p.groups else {}
    extra.update({k: getattr(p, k) for k in ("valid_from", "valid_until") if getattr(p, k)})
    return extra


def _access_from_json(obj: dict, what: str) -> dict:
    groups = obj.get("groups", [])
    if not isinstance(groups, list) or len(groups) > 64 or not all(isinstance(g, str) and len(g) <= 64
                                                                    for g in groups):
        raise VaultError(f"body malformed: {what} has bad 'groups'")
    out: dict[str, Any] = {"groups": tuple(groups)}
    for key in ("valid_from", "valid_until"):
        if obj.get(key) is not None:
            out[key] = _field(obj, key, str, what)
    return out


_PIN_RE = re.compile(r"[0-9a-f]{32}:[0-9a-f]{64}")


def _credentials_from_json(obj: dict, p: Person, i: int) -> tuple[Person, str | None]:
    """A record's card and PIN hash (absent in files from before claim mode)."""
    card, pin = obj.get("card"), obj.get("pin")
    if card is not None and not (isinstance(card, str) and card.isdigit() and len(card) <= 20):
        raise VaultError(f"body malformed: record {i} has a bad 'card'")
    if pin is not None and not (isinstance(pin, str) and _PIN_RE.fullmatch(pin)):
        raise VaultError(f"body malformed: record {i} has a bad 'pin'")
    return dataclasses.replace(p, card=card, pin=pin is not None), pin


def _person_from_json(obj: Any, i: int) -> Person:
    what = f"record {i}"
    if not isinstance(obj, dict):
        raise VaultError(f"body malformed: {what} is not an object")
    pid = _field(obj, "id", str, what)
    if not ID_RE.fullmatch(pid):
        raise VaultError(f"body malformed: {what} has a bad id")
    n = _field(obj, "n", int, what)
    if not 1 <= n <= 1000:
        raise VaultError(f"body malformed: {what} has {n} templates")
    c = _field(obj, "consent", dict, what)
    consent = Consent(_field(c, "text", str, what + " consent"),
                      _time(c, "time", what + " consent"),
                      _field(c, "operator", str, what + " consent"))
    return Person(pid, _field(obj, "name", str, what), n, consent,
                  _time(obj, "created", what),
                  _opt_time(obj, "last_seen", what), _opt_time(obj, "expires", what),
                  **_access_from_json(obj, what))


def encode_records(records: list[_Record], dim: int, space: str = "") -> bytes:
    """People and their rows as bytes: u32 json length, json, float32 rows (the eye rows of everyone,
    then the face rows of those who have them: ``"face"`` in their json names the face embedder)."""
    people = [{**_person_to_json(r.person), "pin": r.pin, **({"face": r.face_space} if r.face is not None else {})}
              for r in records]
    meta = json.dumps({"dim": dim, "transform": TRANSFORM, "embedder": space, "people": people},
                      separators=(",", ":"), ensure_ascii=True).encode()
    rows = [r.rows.astype("<f4", copy=False) for r in records]
    rows += [r.face.astype("<f4", copy=False) for r in records if r.face is not None]
    blob = np.concatenate(rows).tobytes() if rows else b""
    return struct.pack(">I", len(meta)) + meta + blob


def decode_records(data: bytes) -> tuple[list[_Record], int, str]:
    """The inverse of :func:`encode_records`; anything inconsistent is a ``VaultError``."""
    if len(data) < 4:
        raise VaultError("body malformed: too short")
    (n_meta,) = struct.unpack_from(">I", data)
    if n_meta > len(data) - 4:
        raise VaultError("body malformed: index runs past the end")
    try:
        meta = json.loads(data[4:4 + n_meta].decode("ascii"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise VaultError("body malformed: index is not valid JSON") from None
    if not isinstance(meta, dict):
        raise VaultError("body malformed: index is not an object")
    dim = _field(meta, "dim", int, "index")
    if not 0 <= dim <= MAX_DIM:
        raise VaultError(f"body malformed: dimension {dim}")
    if _field(meta, "transform", str, "index") != TRANSFORM:
        raise VaultError(f"body malformed: unknown template transform {meta['transform']!r}")
    space = _field(meta, "embedder", str, "index") if "embedder" in meta else ""
    people_json = _field(meta, "people", list, "index")
    people, pins = [], []
    for i, p in enumerate(people_json):
        person, pin = _credentials_from_json(p, _person_from_json(p, i), i)
        people.append(person)
        pins.append(pin)
    if len({p.id for p in people}) != len(people):
        raise VaultError("body malformed: a person id appears twice")
    cards = [p.card for p in people if p.card is not None]
    if len(set(cards)) != len(cards):
        raise VaultError("body malformed: a card number is held by two people")
    face_spaces = [_field(p, "face", str, f"record {i}") if isinstance(p, dict) and "face" in p else None
                   for i, p in enumerate(people_json)]
    total = sum(p.templates for p in people)
    n_face = sum(p.templates for p, f in zip(people, face_spaces) if f is not None)
    blob = data[4 + n_meta:]
    expect = total * dim * 4 + n_face * FACE_DIM * 4
    if (people and dim == 0) or len(blob) != expect:
        raise VaultError(f"body malformed: {len(blob)} bytes of templates, expected {expect}")
    matrix = np.frombuffer(blob[:total * dim * 4], dtype="<f4").reshape(total, dim).astype(np.float32)
    faces = np.frombuffer(blob[total * dim * 4:], dtype="<f4").reshape(n_face, FACE_DIM).astype(np.float32)
    if not (np.all(np.isfinite(matrix)) and np.all(np.isfinite(faces))):
        raise VaultError("body malformed: a template holds a non-finite number")
    records, start, fstart = [], 0, 0
    for p, pin, fs in zip(people, pins, face_spaces):
        face = None
        if fs is not None:
            face, fstart = faces[fstart:fstart + p.templates], fstart + p.templates
        records.append(_Record(p, matrix[start:start + p.templates], pin, face=face, face_space=fs or ""))
        start += p.templates
    return records, dim, space


def unit_rows(templates: list[np.ndarray]) -> np.ndarray:
    """Plain embeddings as unit float64 rows; a non-finite value is refused."""
    plain = np.stack([np.asarray(t, dtype=np.float64).ravel() for t in templates])
    if not np.all(np.isfinite(plain)):
        raise VaultError("a template holds a non-finite number")
    plain /= np.maximum(np.linalg.norm(plain, axis=1, keepdims=True), 1e-12)
    return plain


def unit_face_rows(faces: list[np.ndarray | None] | None, n: int) -> np.ndarray | None:
    """Unit face rows for ``n`` templates (zero where a photo had none), or None when none has one."""
    if faces is None or all(f is None for f in faces):
        return None
    if len(faces) != n:
        raise VaultError(f"{len(faces)} face embeddings for {n} templates")
    rows = np.zeros((n, FACE_DIM), np.float64)
    for i, f in enumerate(faces):
        if f is not None:
            v = np.asarray(f, np.float64).ravel()
            if v.shape != (FACE_DIM,) or not np.all(np.isfinite(v)):
                raise VaultError(f"a face embedding must be {FACE_DIM} finite values")
            rows[i] = v / max(float(np.linalg.norm(v)), 1e-12)
    return rows


def read_or_none(path: Path) -> bytes | None:
    """A vault or bundle file's bytes; None when there is none yet (a new gate), VaultError otherwise."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise VaultError(f"{path}: cannot read: {e.strerror}") from None


def _read_key(path: Path) -> bytes | None:
    raw = read_or_none(path)
    if raw is None:
        return None
    if len(raw) != KEY_BYTES:
        raise VaultError(f"{path}: device key has {len(raw)} bytes, not {KEY_BYTES} (damaged); "
                         "the vault cannot be opened without it")
    st = path.stat()
    if st.st_mode & 0o077:
        log.warning("%s was readable by others (mode %o); setting 0600", path, st.st_mode & 0o777)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
    return raw


def _seal(keys: Keys, records: list[_Record], dim: int, space: str) -> bytes:
    header = HEADER.pack(MAGIC, VERSION, keys.key_id)
    return header + bytes(SecretBox(keys.seal).encrypt(header + encode_records(records, dim, space)))


def parse(data: bytes, keys: Keys, where: str = "vault") -> tuple[list[_Record], int, str]:
    """Open a sealed vault's bytes; every fault is a ``VaultError`` starting with ``where``."""
    untouched = "the file was left untouched; restore it from the gate it came from or move it away"
    if not data.startswith(MAGIC[:min(len(data), len(MAGIC))]) or not data:
        raise VaultError(f"{where}: not a maskgate vault (foreign or empty file); {untouched}")
    if len(data) < HEADER.size:
        raise VaultError(f"{where}: too short to be a vault ({len(data)} bytes; truncated?); {untouched}")
    magic, version, key_id = HEADER.unpack_from(data)
    if version != VERSION:
        raise VaultError(f"{where}: vault format version {version} is not supported (this maskgate "
                         f"reads {VERSION}); {untouched}")
    if key_id != keys.key_id:
        raise VaultError(f"{where}: sealed by key {key_id.hex()}, but this device's key is "
                         f"{keys.key_id.hex()} (copied from another board, from before a rekey, or "
                         f"altered); {untouched}")
    try:
        body = SecretBox(keys.seal).decrypt(data[HEADER.size:])
    except (CryptoError, ValueError, TypeError):
        raise VaultError(f"{where}: authentication failed: the file was altered or truncated; "
                         f"{untouched}") from None
    if body[:HEADER.size] != data[:HEADER.size]:
        raise VaultError(f"{where}: header does not match the sealed copy (altered); {untouched}")
    try:
        return decode_records(body[HEADER.size:])
    except VaultError as e:
        raise VaultError(f"{where}: {e}; {untouched}") from None
