"""The sealed template file: the only biometric data on the gate, useless to whoever copies it.

Why it looks like this:
- A face cannot be changed once leaked, so templates are (1) sealed with PyNaCl's SecretBox under a
  key derived from a random device key *and* the board's identity, so a copied file or a whole SD
  card in another board opens nothing, and (2) stored only after a secret, key-derived orthogonal
  transform, so even a leaked plaintext template matches nothing once the key is renewed
  (``rekey``), and two gates' templates of the same person cannot be linked. An orthogonal
  transform keeps every cosine similarity, so recognition loses nothing.
- Every write is temp file + fsync + rename + directory fsync under an ``fcntl`` lock, so the CLI
  and the daemon never interleave, and a power cut leaves the old file or the new one, whole.
- Any fault in the file (truncated, altered, foreign) is a ``VaultError`` naming the file and the
  fault; the file is never touched by a failed open.

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
import secrets
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge.config import VaultConfig
from edge.errors import VaultError
from edge.files import exclusive

log = logging.getLogger(__name__)

MAGIC = b"MGVAULT\x00"
BUNDLE_MAGIC = b"MGBUNDL\x00"
VERSION = 1
HEADER = struct.Struct(">8sH8s")          # magic, version, key id
BUNDLE_HEAD = struct.Struct(">8sH32s32s")  # magic, version, signer Ed25519 key, target X25519 key
SIGNATURE_BYTES = 64
TRANSFORM = "shake256-gauss-qr-v1"
FACE_DIM = 128   # the whole-face embeddings stored beside the eye templates (edge.embed.FaceEmbedder)

VAULT_FILE = "vault.bin"
KEY_FILE = "device.key"
NEXT_KEY_FILE = "device.key.next"  # a rekey in progress: becomes KEY_FILE once the vault is rewritten
LOCK_FILE = "vault.lock"
KEY_BYTES = 32
# A grant updates last-seen in memory at once but on flash at most this often (wear, see README).
TOUCH_PERSIST_S = 12 * 3600.0
DAY_S = 86400.0
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
        from nacl.public import PrivateKey

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


# ---------------------------------------------------------------- files

def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600,
                 check: Callable[[bytes], Any] | None = None) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, directory fsync (old or new, whole).
    ``check`` gets the temp file's bytes as read back from disk and raises to keep the old file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if check is not None:
            back = tmp.read_bytes()
            if back != data:
                raise VaultError(f"{tmp}: the bytes read back differ from those written (storage failing?); "
                                 f"{path.name} left as it was")
            check(back)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise VaultError(f"{path}: cannot read: {e.strerror}") from None


def _read_key(path: Path) -> bytes | None:
    raw = _read(path)
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
    from nacl.secret import SecretBox

    header = HEADER.pack(MAGIC, VERSION, keys.key_id)
    return header + bytes(SecretBox(keys.seal).encrypt(header + encode_records(records, dim, space)))


def parse(data: bytes, keys: Keys, where: str = "vault") -> tuple[list[_Record], int, str]:
    """Open a sealed vault's bytes; every fault is a ``VaultError`` starting with ``where``."""
    from nacl.exceptions import CryptoError
    from nacl.secret import SecretBox

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


# ---------------------------------------------------------------- the vault

class Vault:
    """The people a gate lets in, sealed to this board. Open with :meth:`open`."""

    def __init__(self, state_dir: Path, cfg: VaultConfig, device: bytes, keys: Keys) -> None:
        self.state_dir = state_dir
        self.cfg = cfg
        self.path = state_dir / VAULT_FILE
        self._device = device
        self._keys = keys
        self._records: dict[str, _Record] = {}
        self._dim = 0
        self._space = ""                    # the embedder that made the templates ("" = not recorded)
        self._stamp: tuple | None = None
        self._gallery: tuple[list[str], np.ndarray] | None = None
        self._gallery_until = float("inf")
        self._seen: dict[str, float] = {}   # last-seen times not yet written (see TOUCH_PERSIST_S)
        self.fault: str | None = None       # why the last reload failed (the gate then grants nobody)

    # ---- opening, locking, writing

    @classmethod
    def open(cls, state_dir: Path | str, cfg: VaultConfig | None = None,
             device_id: str | None = None) -> "Vault":
        """Open (or start) the vault of ``state_dir``; makes the device key on first use.

        Raises ``VaultError`` for a damaged, altered or foreign file, leaving it as it is.
        ``device_id`` stands in for the board's identity (tests only).
        """
        state_dir = Path(state_dir)
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise VaultError(f"{state_dir}: cannot create the state directory: {e.strerror}") from None
        device = device_identity(device_id)
        v = cls(state_dir, cfg or VaultConfig(), device, Keys(b"", b"", b"", b""))
        with v._lock():
            v._keys = Keys.derive(v._load_or_make_key(), device)
            v._load()
        return v

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        """The writers' lock (CLI and daemon): one writer at a time; readers rely on atomic rename."""
        return exclusive(self.state_dir / LOCK_FILE, 0o600, VaultError)

    def _load_or_make_key(self) -> bytes:
        """The device key; finishes or rolls back a rekey a crash interrupted. Called under the lock."""
        key_path, next_path = self.state_dir / KEY_FILE, self.state_dir / NEXT_KEY_FILE
        root, nxt = _read_key(key_path), _read_key(next_path)
        data = _read(self.path)
        if nxt is not None:
            header_id = HEADER.unpack_from(data)[2] if data and len(data) >= HEADER.size else None
            if header_id == Keys.derive(nxt, self._device).key_id or root is None:
                log.warning("finishing a rekey that was interrupted")
                os.replace(next_path, key_path)
                _fsync_dir(self.state_dir)
                root = nxt
            else:
                log.warning("rolling back a rekey that was interrupted before the vault was rewritten")
                next_path.unlink()
        if root is None:
            if data is not None:
                raise VaultError(f"{key_path}: the device key is missing, so {self.path} cannot be opened "
                                 "(it opens nowhere else either); move the vault away to start empty")
            root = secrets.token_bytes(KEY_BYTES)
            atomic_write(key_path, root, 0o600)
            log.info("made a new device key %s", key_path)
        for name in (VAULT_FILE, KEY_FILE, NEXT_KEY_FILE):  # temp files of a writer killed mid-write
            for stale in self.state_dir.glob(f".{name}.*.tmp"):
                with contextlib.suppress(OSError):
                    stale.unlink()
        return root

    def _file_stamp(self) -> tuple | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _adopt_new_key(self, data: bytes | None) -> None:
        """Follow a rekey another process (the CLI) made while this one (the daemon) was running."""
        if data is None or len(data) < HEADER.size or HEADER.unpack_from(data)[2] == self._keys.key_id:
            return
        for name in (KEY_FILE, NEXT_KEY_FILE):  # NEXT: the CLI is between writing the vault and the key
            with contextlib.suppress(VaultError):
                root = _read_key(self.state_dir / name)
                if root is not None:
                    keys = Keys.derive(root, self._device)
                    if keys.key_id == HEADER.unpack_from(data)[2]:
                        log.info("the vault was rekeyed by another process; following it")
                        self._keys = keys
                        return

    def _load(self) -> None:
        stamp = self._file_stamp()
        data = _read(self.path)
        self._adopt_new_key(data)
        records, dim, space = parse(data, self._keys, str(self.path)) if data is not None else ([], 0, "")
        self._records = {r.person.id: r for r in records}
        self._dim, self._space = dim, space
        self._stamp = stamp
        self._gallery = None
        self.fault = None

    def _save(self) -> None:
        records = list(self._records.values())
        if not records:
            self._dim, self._space = 0, ""
        # The bytes are read back through the reader before they replace the file: a vault the
        # reader would refuse is never written (every enrolment would be lost with it).
        atomic_write(self.path, _seal(self._keys, records, self._dim, self._space),
                     check=lambda data: parse(data, self._keys, "the vault about to be written"))
        self._stamp = self._file_stamp()
        self._gallery = None

    def _mutate(self, change: Callable[[], Any]) -> Any:
        """Re-read the file under the lock (another process may have written), change, write."""
        with self._lock():
            self._load()
            result = change()
            self._save()
        return result

    def refresh(self) -> bool:
        """Re-read the file if another process (the CLI) changed it; True when it did."""
        if self._file_stamp() == self._stamp:
            return False
        self._load()
        return True

    # ---- reading

    @property
    def key_id(self) -> str:
        return self._keys.key_id.hex()

    @property
    def dim(self) -> int:
        return self._dim

    def stale_for(self, space: str) -> str | None:
        """Why this vault's templates cannot be compared with embedder ``space``'s, or None.

        Templates are embeddings of one model; another model's embeddings of the same face are
        unrelated vectors, so after a model update everyone must be enrolled again."""
        if not self._records or self._space == space:
            return None
        made = f"embedder {self._space}" if self._space else "an earlier maskgate release's embedder"
        return (f"the enrolled templates were made by {made}, the installed model is embedder {space}: "
                "templates of different models cannot be compared; enrol everyone again "
                "(`maskgate templates list`, `maskgate templates remove ID`, `maskgate enroll ...`)")

    def public_key(self) -> str:
        """This gate's X25519 public key (hex): installers seal bundles for this gate to it."""
        return self._keys.public_key.hex()

    def people(self) -> list[Person]:
        """Everyone enrolled, oldest first: records only, no embeddings."""
        return sorted((dataclasses.replace(r.person, last_seen=self._seen.get(r.person.id, r.person.last_seen))
                       for r in self._records.values()), key=lambda p: (p.created, p.id))

    def find(self, person: str) -> Person:
        """A person by id or by name; ``VaultError`` when nobody (or more than one) matches."""
        if person in self._records:
            return self._records[person].person
        hits = [r.person for r in self._records.values() if r.person.name == person]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise VaultError(f"{len(hits)} people are named {person!r}; give the person id instead")
        raise VaultError(f"nobody called {person!r} is enrolled (see: maskgate templates list)")

    def name_of(self, person_id: str) -> str:
        r = self._records.get(person_id)
        return (r.person.name or person_id) if r else person_id

    def _active(self, p: Person, now: float) -> bool:
        if p.expires is not None and p.expires <= now:
            return False
        days = self.cfg.retention_days
        seen = self._seen.get(p.id, p.last_seen) or p.created
        return not (days and now - seen > days * DAY_S)

    def _deadline(self, p: Person) -> float:
        """When this person stops being let in (expiry or retention), or infinity."""
        until = p.expires if p.expires is not None else float("inf")
        if self.cfg.retention_days:
            seen = self._seen.get(p.id, p.last_seen) or p.created
            until = min(until, seen + self.cfg.retention_days * DAY_S)
        return until

    def gallery(self) -> tuple[list[str], np.ndarray]:
        """(person id per row, N x dim float32 protected templates) of everyone allowed in now.

        Re-reads the file when the CLI changed it. A file that has gone bad gives an empty gallery
        (nobody is let in) with the reason in ``self.fault``, and is left as it is.
        """
        try:
            self.refresh()
        except VaultError as e:
            if self.fault != str(e):
                log.error("%s", e)
            self._records, self._gallery, self.fault = {}, None, str(e)
            self._stamp = self._file_stamp()
        now = time.time()
        if self._gallery is None or now >= self._gallery_until:
            ids: list[str] = []
            rows = []
            self._gallery_until = float("inf")   # the next expiry or retention deadline: rebuild then
            for r in self._records.values():
                if self._active(r.person, now):
                    ids += [r.person.id] * len(r.rows)
                    rows.append(r.rows)
                    self._gallery_until = min(self._gallery_until, self._deadline(r.person))
            matrix = np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, self._dim), np.float32)
            self._gallery = (ids, matrix)
        return self._gallery

    def face_gallery(self, face_space: str) -> np.ndarray | None:
        """The face embedding beside each row of :meth:`gallery` (protected; zero rows where a
        template has none or was made by another face embedder), or None when no row has one."""
        ids, _ = self.gallery()
        if getattr(self, "_face_cache", (None,))[0] is not self._gallery or self._face_cache[1] != face_space:
            now, rows = time.time(), []
            for r in self._records.values():
                if self._active(r.person, now):
                    ok = r.face is not None and r.face_space == face_space
                    rows.append(r.face if ok else np.zeros((len(r.rows), FACE_DIM), np.float32))
            m = np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, FACE_DIM), np.float32)
            self._face_cache = (self._gallery, face_space, m if m.any() else None)
        return self._face_cache[2]

    def protect_face(self, embedding: np.ndarray) -> np.ndarray:
        """A face embedding (or rows) in this vault's keyed face space: its own orthogonal transform,
        so eye and face templates of one person cannot be linked through a shared matrix."""
        x = np.asarray(embedding, dtype=np.float64)
        return (x @ transform_matrix(self._keys.transform + b"face", FACE_DIM).T).astype(np.float32)

    def _unprotect_face(self, rows: np.ndarray) -> np.ndarray:
        return (rows.astype(np.float64) @ transform_matrix(self._keys.transform + b"face", FACE_DIM)).astype(np.float32)

    def protect(self, embedding: np.ndarray) -> np.ndarray:
        """Move a probe embedding (or rows of them) into this vault's keyed space, as templates are."""
        x = np.asarray(embedding, dtype=np.float64)
        dim = x.shape[-1]
        if self._dim and dim != self._dim:
            raise VaultError(f"embedding has {dim} values but the vault holds {self._dim}-value templates "
                             "(enrolled with another model? re-enrol or rekey after a model change)")
        if not 1 <= dim <= MAX_DIM:
            raise VaultError(f"embedding of {dim} values is not supported")
        return (x @ transform_matrix(self._keys.transform, dim).T).astype(np.float32)

    def _unprotect(self, rows: np.ndarray) -> np.ndarray:
        return (rows.astype(np.float64) @ transform_matrix(self._keys.transform, rows.shape[-1])).astype(np.float32)

    # ---- changing

    def add(self, name: str, templates: list[np.ndarray], consent: str, operator: str = "",
            expires: float | None = None, space: str = "", card: str | None = None,
            pin: str | None = None, faces: list[np.ndarray | None] | None = None,
            face_space: str = "", groups: tuple[str, ...] = (), valid_from: str | None = None,
            valid_until: str | None = None) -> str:
        """Enrol one person from plain (unit) embeddings of embedder ``space``; returns the new id.

        ``card``: a canonical card number (refused when someone else holds it); ``pin``: a PIN record
        (:meth:`pin_record`), never the PIN. ``faces``: the whole-face embedding of each template photo
        (None where it had none, e.g. a covered lower face) by face embedder ``face_space``; omitted:
        eye only. ``groups``, ``valid_from``, ``valid_until``: access rules (edge.access, already checked)."""
        if not consent or not consent.strip():
            raise VaultError("no consent recorded: give the person's consent text (or form reference)")
        if not templates:
            raise VaultError("no templates to enrol")
        for label, s in (("name", name), ("consent", consent), ("operator", operator)):
            if len(s) > MAX_TEXT:
                raise VaultError(f"{label} is longer than {MAX_TEXT} characters")
        if ID_RE.fullmatch(name.strip()):  # `templates remove <name>` would find another person by id
            raise VaultError(f"the name {name!r} looks like a person id (p- and 16 hex digits); choose another")
        if expires is not None and not 0 <= expires < 1e11:
            raise VaultError("the expiry is not a date the vault can hold")
        plain = np.stack([np.asarray(t, dtype=np.float64).ravel() for t in templates])
        if not np.all(np.isfinite(plain)):
            raise VaultError("a template holds a non-finite number")
        plain /= np.maximum(np.linalg.norm(plain, axis=1, keepdims=True), 1e-12)
        face_rows = _face_rows(faces, len(plain))
        now = time.time()

        def change() -> str:
            if name and any(r.person.name == name for r in self._records.values()):
                raise VaultError(f"{name!r} is already enrolled; remove them first or choose another name")
            stale = self.stale_for(space)
            if stale:
                raise VaultError(stale)
            self._check_card_free(card, None)
            rows = self.protect(plain)
            self._space = space
            pid = "p-" + secrets.token_hex(8)
            self._dim = rows.shape[1]
            self._records[pid] = _Record(Person(pid, name, len(rows), Consent(consent.strip(), now, operator),
                                                now, None, expires, card, pin is not None, tuple(groups),
                                                valid_from, valid_until), rows, pin,
                                         face=None if face_rows is None else self.protect_face(face_rows),
                                         face_space=face_space if face_rows is not None else "")
            return pid

        pid = self._mutate(change)
        log.info("enrolled %s (%d templates)", pid, len(plain))
        return pid

    def remove(self, person: str) -> Person:
        """Delete a person from the file for good (the old file is replaced, not kept as a backup)."""
        def change() -> Person:
            p = self.find(person)
            del self._records[p.id]
            self._seen.pop(p.id, None)
            return p

        return self._mutate(change)

    def set_access(self, person: str, **changes: Any) -> Person:
        """Change a person's ``groups``, ``valid_from`` or ``valid_until`` (already checked by edge.access)."""
        def change() -> Person:
            rec = self._records[self.find(person).id]
            rec.person = dataclasses.replace(rec.person, **changes)
            return rec.person

        return self._mutate(change)

    def touch(self, person_id: str, now: float | None = None) -> None:
        """Note that a person was let in: the retention clock restarts (written at most twice a day)."""
        now = time.time() if now is None else now
        r = self._records.get(person_id)
        if r is None:
            return
        self._seen[person_id] = now
        if r.person.last_seen is not None and now - r.person.last_seen < TOUCH_PERSIST_S:
            return

        def change() -> None:
            for pid, t in self._seen.items():
                if pid in self._records:
                    rec = self._records[pid]
                    rec.person = dataclasses.replace(rec.person, last_seen=max(t, rec.person.last_seen or 0))
            self._seen.clear()

        self._mutate(change)

    def purge(self, now: float | None = None) -> list[Person]:
        """Remove everyone past their expiry or unseen for ``retention_days``; returns them."""
        now = time.time() if now is None else now

        def change() -> list[Person]:
            gone = [r.person for r in self._records.values() if not self._active(r.person, now)]
            for p in gone:
                del self._records[p.id]
                self._seen.pop(p.id, None)
            return gone

        with self._lock():
            self._load()
            gone = change()
            if gone:
                self._save()
        return gone

    def rekey(self) -> str:
        """New device key and transform; every template is moved across. Returns the new key id.

        Crash-safe: the new key is written beside the old one first, then the vault, then the new
        key replaces the old; :meth:`open` finishes or rolls back a rekey a crash interrupted.
        """
        with self._lock():
            self._load()
            plain = {pid: self._unprotect(r.rows) for pid, r in self._records.items()}
            plain_face = {pid: self._unprotect_face(r.face) for pid, r in self._records.items() if r.face is not None}
            root = secrets.token_bytes(KEY_BYTES)
            atomic_write(self.state_dir / NEXT_KEY_FILE, root, 0o600)
            self._keys = Keys.derive(root, self._device)
            for pid, r in self._records.items():
                r.rows = self.protect(plain[pid])
                if pid in plain_face:
                    r.face = self.protect_face(plain_face[pid])
            self._save()
            os.replace(self.state_dir / NEXT_KEY_FILE, self.state_dir / KEY_FILE)
            _fsync_dir(self.state_dir)
        log.info("rekeyed the vault: key %s", self.key_id)
        return self.key_id

    # ---- credentials for claim mode (edge.claim)

    def _check_card_free(self, card: str | None, owner: str | None, where: str = "") -> None:
        holder = self.card_holder(card) if card is not None else None
        if holder is not None and holder.id != owner:
            raise VaultError(f"{where + ': ' if where else ''}card {card} is already {holder.name or holder.id}'s "
                             "(maskgate templates clear-card first)")

    def card_holder(self, card: str) -> Person | None:
        """Whoever holds this (canonical) card number, or None."""
        return next((r.person for r in self._records.values() if r.person.card == card), None)

    def pin_record(self, pin: str) -> str:
        """What the vault keeps of a PIN on this device: its Argon2id hash under the device's salt."""
        from edge.claim.credentials import device_salt, pin_record

        return pin_record(pin, device_salt(self._device))

    def pin_salts(self) -> set[str]:
        """The salts (hex) of the PINs held: this device's, and other gates' for imported records."""
        return {r.pin.split(":")[0] for r in self._records.values() if r.pin}

    def pin_holders(self, digests: dict[str, str]) -> list[Person]:
        """Everyone whose PIN hash is among ``digests`` (salt -> hash, edge.claim.credentials.pin_digests)."""
        import hmac

        hits = []
        for r in self._records.values():
            if r.pin:
                salt, h = r.pin.split(":")
                if salt in digests and hmac.compare_digest(digests[salt], h):
                    hits.append(r.person)
        return hits

    def set_credentials(self, person: str, card: str | None | bool = False,
                        pin: str | None | bool = False) -> Person:
        """Set (a value) or clear (None) a person's card and PIN record; False leaves it as it is."""
        def change() -> Person:
            r = self._records[self.find(person).id]
            if card is not False:
                self._check_card_free(card, r.person.id)  # type: ignore[arg-type]
                r.person = dataclasses.replace(r.person, card=card)
            if pin is not False:
                r.pin = pin  # type: ignore[assignment]
                r.person = dataclasses.replace(r.person, pin=pin is not None)
            return r.person

        return self._mutate(change)

    # ---- bundles between gates

    def export_bundle(self, target_public_hex: str, signing_key: bytes) -> bytes:
        """Everyone, sealed to another gate's public key and signed by an installer's Ed25519 key.

        The templates travel in plain (untransformed) form inside the sealed box, because the
        target gate applies its own transform; only the target's private key opens it.
        """
        self.refresh()
        records = [self._plain(r) for r in self._records.values()]
        return seal_signed(encode_records(records, self._dim, self._space), target_public_hex, signing_key)

    def plain_records(self, ids: list[str] | None = None) -> tuple[list[_Record], int, str]:
        """(records with plain, untransformed rows, dim, embedder) of ``ids`` (everyone when None),
        for sealing to another gate (``edge.roster``); never written anywhere in this form."""
        self.refresh()
        keep = self._records.values() if ids is None else [self._records[i] for i in ids if i in self._records]
        return [self._plain(r) for r in keep], self._dim, self._space

    def _plain(self, r: _Record) -> _Record:
        """A record with its eye and face rows out of this gate's keyed transforms (for sealing)."""
        return dataclasses.replace(r, rows=self._unprotect(r.rows),
                                   face=None if r.face is None else self._unprotect_face(r.face))

    def apply(self, add: list[_Record], dim: int, space: str, where: str, model_space: str | None = None,
              plan: Callable[[dict[str, Person]], list[str]] | None = None,
              done: Callable[[], None] | None = None) -> None:
        """Put ``add`` (plain rows of embedder ``space``; an id already here is replaced, its last-seen
        kept) and delete the ids ``plan`` returns, in one write under the writers' lock.

        ``plan`` gets {id: record} of everyone enrolled now and may refuse (raise) before anything
        changes; ``done`` runs after the write, still under the lock (``edge.roster`` keeps its
        bookkeeping there)."""
        if add and model_space is not None and space != model_space:
            raise VaultError(f"{where}: its templates were made by embedder {space or '(not recorded)'}, this "
                             f"gate's model is embedder {model_space} (another maskgate release): they cannot "
                             "match here; enrol these people on this gate instead")
        with self._lock():
            self._load()
            remove = plan({pid: r.person for pid, r in self._records.items()}) if plan else []
            replaced = set(remove) | {r.person.id for r in add}
            kept = [pid for pid in self._records if pid not in replaced]
            if add and kept and (dim != self._dim or space != self._space):
                raise VaultError(f"{where}: templates of embedder {space or '(not recorded)'} with {dim} "
                                 f"values, this vault's of embedder {self._space or '(not recorded)'} with "
                                 f"{self._dim} (different embedder models cannot be mixed)")
            for pid in remove:
                self._records.pop(pid, None)
                self._seen.pop(pid, None)
            if add:
                self._dim, self._space = dim, space
            for r in add:
                if r.person.card is not None:
                    self._check_card_free(r.person.card, r.person.id, where)
            for r in add:
                old = self._records.get(r.person.id)
                person = r.person if old is None else dataclasses.replace(r.person, last_seen=old.person.last_seen)
                self._records[r.person.id] = _Record(
                    person, self.protect(r.rows), r.pin,
                    face=None if r.face is None else self.protect_face(r.face), face_space=r.face_space)
            self._save()
            if done is not None:
                done()

    def open_sealed(self, data: bytes, where: str, magic: bytes, what: str) -> bytes:
        """The payload of a file :func:`seal_signed` made for this gate (signer trusted, signature right)."""
        return open_signed(data, self._keys, self.cfg.trusted_keys, where, magic, what)

    def add_templates(self, person: str, templates: list[np.ndarray], space: str = "") -> Person:
        """More templates for an enrolled person, from plain (unit) embeddings of embedder ``space``."""
        plain = np.stack([np.asarray(t, dtype=np.float64).ravel() for t in templates])
        if not np.all(np.isfinite(plain)):
            raise VaultError("a template holds a non-finite number")
        plain /= np.maximum(np.linalg.norm(plain, axis=1, keepdims=True), 1e-12)

        def change() -> Person:
            p = self.find(person)
            stale = self.stale_for(space)
            if stale:
                raise VaultError(stale)
            r = self._records[p.id]
            if len(r.rows) + len(plain) > 1000:
                raise VaultError(f"{p.name or p.id} would hold {len(r.rows) + len(plain)} templates (at most 1000)")
            r.rows = np.concatenate([r.rows, self.protect(plain)])
            if r.face is not None:  # no face embedding for the added photos: zero rows (eye only)
                r.face = np.concatenate([r.face, np.zeros((len(plain), r.face.shape[1]), r.face.dtype)])
            r.person = dataclasses.replace(p, templates=len(r.rows))
            return r.person

        return self._mutate(change)

    def import_bundle(self, data: bytes, where: str = "bundle", model_space: str | None = None) -> list[Person]:
        """Add the people of a bundle signed by a key in ``vault.trusted_keys`` and sealed to this gate.

        ``model_space``: the installed model's (``edge.embed.space_of``); a bundle made with another
        model is refused even into an empty vault, as none of its templates could match here."""
        records, dim, space = open_bundle(data, self._keys, self.cfg.trusted_keys, where)
        if records and model_space is not None and space != model_space:
            raise VaultError(f"{where}: its templates were made by embedder {space or '(not recorded)'}, this "
                             f"gate's model is embedder {model_space} (another maskgate release): they cannot "
                             "match here; enrol these people on this gate instead")

        def change() -> list[Person]:
            if self._records and ((dim and dim != self._dim) or space != self._space):
                raise VaultError(f"{where}: templates of embedder {space or '(not recorded)'} with {dim} "
                                 f"values, this vault's of embedder {self._space or '(not recorded)'} with "
                                 f"{self._dim} (different embedder models cannot be mixed)")
            if records:
                self._space = space
            for r in records:
                if r.person.card is not None:
                    self._check_card_free(r.person.card, r.person.id, where)
            for r in records:
                if r.person.id in self._records:
                    log.info("%s: replacing %s with the bundle's record", where, r.person.id)
                self._records[r.person.id] = _Record(r.person, self.protect(r.rows), r.pin,
                                                     face=None if r.face is None else self.protect_face(r.face),
                                                     face_space=r.face_space)
                self._dim = dim
            return [r.person for r in records]

        return self._mutate(change)


def _face_rows(faces: list[np.ndarray | None] | None, n: int) -> np.ndarray | None:
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
    from nacl.exceptions import CryptoError
    from nacl.public import PublicKey, SealedBox
    from nacl.signing import SigningKey

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
    from nacl.exceptions import BadSignatureError, CryptoError
    from nacl.public import PrivateKey, SealedBox
    from nacl.signing import VerifyKey

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
    raw = _read(path)
    if raw is None:
        raise VaultError(f"{path}: no such signing key file (make one with: maskgate templates keygen --out FILE)")
    if len(raw) == 32:
        return raw
    return _hex_key(raw.decode("ascii", "replace"), f"{path}: signing key")


# ---------------------------------------------------------------- the CLI

def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def _last_day(t: float | None) -> str | None:
    """The day access ends, as given to ``--expires``: it is stored as the midnight after it."""
    return time.strftime("%Y-%m-%d", time.localtime(t - 1)) if t else None


def templates_cli(args: Any, cfg: Any, state: Path, out: Any) -> int:
    """``maskgate templates list|remove|rekey|export|import|pubkey|purge|keygen``."""
    action = args.action
    if action in ("set-card", "clear-card", "set-pin", "clear-pin"):
        from edge.commands.credentials import credentials_cli

        return credentials_cli(args, cfg, state, out)
    if action == "keygen":  # an installer's signing key: needs no vault
        from nacl.signing import SigningKey

        path = Path(args.out)
        if path.exists():
            raise VaultError(f"{path} exists; refusing to overwrite a signing key")
        key = SigningKey.generate()
        atomic_write(path, bytes(key).hex().encode() + b"\n", 0o600)
        pub = bytes(key.verify_key).hex()
        out.event({"signing_key": str(path), "public_key": pub},
                  f"signing key written to {path} (keep it secret)\n"
                  f"public key (put it in vault.trusted_keys of the gates you install): {pub}")
        return 0
    if action == "add":  # enrolment's frame gates and model: edge/enroll.py
        from edge.commands.enroll import add_templates_cli

        return add_templates_cli(args.person, args.source, cfg, state, out,
                                 allow_look_alike=args.allow_look_alike)
    vault = Vault.open(state, cfg.vault)

    def audit(event: str, **fields: Any) -> None:  # every change goes into the gate's event log
        from edge.audit import record

        record(state, cfg.audit, event, **fields)

    if action == "list":
        from edge.access import describe

        people = vault.people()
        for p in people:
            rules = describe(p, cfg.access)
            out.event({**p.to_dict(), "expires_on": _last_day(p.expires), **rules},
                      f"{p.id}  {p.name or '-':20s} templates={p.templates} "
                      f"enrolled={_when(p.created)} last_seen={_when(p.last_seen)} "
                      f"expires={_last_day(p.expires) or '-'} card={p.card or '-'} pin={'set' if p.pin else '-'} "
                      f"groups={','.join(rules['groups'])} valid={rules['valid']} "
                      f"consent={p.consent.text[:40]!r}")
        out.text(f"{len(people)} people, key {vault.key_id}")
        return 0
    if action == "remove":
        p = vault.remove(args.person)
        audit("vault.remove", person=p.id, name=p.name)
        out.event({"removed": p.id, "name": p.name}, f"removed {p.id} ({p.name or 'no name'})")
        return 0
    if action == "rekey":
        old = vault.key_id
        new = vault.rekey()
        audit("vault.rekey", old_key=old, key=new, people=len(vault.people()))
        out.event({"old_key": old, "key": new, "people": len(vault.people())},
                  f"rekeyed: key {old} -> {new}; {len(vault.people())} people moved; copies made "
                  f"before now match nobody; this gate's public key is now {vault.public_key()}")
        return 0
    if action == "pubkey":
        out.event({"public_key": vault.public_key(), "key": vault.key_id}, vault.public_key())
        return 0
    if action == "export":
        bundle = vault.export_bundle(args.to, read_signing_key(Path(args.sign_key)))
        atomic_write(Path(args.out), bundle, 0o600)
        audit("vault.export", to=args.to[:16], people=len(vault.people()))
        out.event({"bundle": args.out, "people": len(vault.people()), "bytes": len(bundle)},
                  f"wrote {args.out}: {len(vault.people())} people sealed to {args.to[:16]}...")
        return 0
    if action == "import":
        data = _read(Path(args.bundle))
        if data is None:
            raise VaultError(f"{args.bundle}: no such bundle file")
        from edge.embed import installed_space

        added = vault.import_bundle(data, args.bundle, installed_space(cfg.embed.model))
        audit("vault.import", bundle=Path(args.bundle).name, people=len(added))
        out.event({"imported": [p.id for p in added]}, f"imported {len(added)} people from {args.bundle}")
        return 0
    if action == "purge":
        gone = vault.purge()
        if gone:
            audit("vault.purge", people=len(gone))
        out.event({"purged": [p.id for p in gone]},
                  f"purged {len(gone)} people" + "".join(f"\n  {p.id} {p.name}" for p in gone))
        return 0
    if action == "access":
        from edge.commands.access import templates_access

        return templates_access(vault, cfg.access, args, out, audit)
    raise VaultError(f"unknown templates action {action!r}")
