"""The vault store: the people a gate lets in, in one sealed file in the state directory.

DESIGN: ``Vault`` owns the file's life on a gate: the writers' lock, atomic writes, the device key's
life (made on first use, rekey, and a rekey a crash interrupted finished or rolled back), following a
rekey another process made, the records in memory (CRUD, credentials for claim mode, last-seen
batched to spare the flash) and the gallery the matcher reads, rebuilt only when the file or a
deadline changes. The bytes themselves (layout, keys, transform, record checks) are
``edge.vault.format``'s; files that travel between gates are ``edge.vault.bundles``'.

Why it looks like this:
- Every write is temp file + fsync + rename + directory fsync under an ``fcntl`` lock, so the CLI
  and the daemon never interleave, and a power cut leaves the old file or the new one, whole.
- Every change re-reads the file under the lock, changes, reads the new bytes back through the
  reader and only then replaces the file (``_mutate``): a change another process made is never lost,
  and a file the reader would refuse is never written.
- A file that has gone bad is left as it is; the gate then lets nobody in and says why (``fault``).

Why one module of about 600 lines: it is one class, and every method that changes the file shares
one invariant (lock, re-read, change, check, write) and one in-memory state (``_records``,
``_seen``, the gallery cache). Split into mixins or helper modules, each part would reach into the
same private state and the invariant would no longer be readable in one place. What has no need of
that state lives beside it: the bytes in ``format``, the files between gates in ``bundles``, the
command line in ``edge.commands.templates``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge.claim import credentials
from edge.config import VaultConfig
from edge.errors import VaultError
from edge.files import atomic_write, exclusive, fsync_dir
from edge.vault.bundles import open_bundle, open_signed, seal_signed
from edge.vault.format import (FACE_DIM, HEADER, ID_RE, KEY_BYTES, MAX_DIM, MAX_TEXT, Consent, Keys, Person, read_or_none,
                               _read_key, _Record, _seal, device_identity, encode_records, parse,
                               transform_matrix, unit_face_rows, unit_rows)

log = logging.getLogger(__name__)

VAULT_FILE = "vault.bin"
KEY_FILE = "device.key"
NEXT_KEY_FILE = "device.key.next"  # a rekey in progress: becomes KEY_FILE once the vault is rewritten
LOCK_FILE = "vault.lock"
# A grant updates last-seen in memory at once but on flash at most this often (wear, see docs/administrator.md, "Retention").
TOUCH_PERSIST_S = 12 * 3600.0
DAY_S = 86400.0


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
        data = read_or_none(self.path)
        if nxt is not None:
            header_id = HEADER.unpack_from(data)[2] if data and len(data) >= HEADER.size else None
            if header_id == Keys.derive(nxt, self._device).key_id or root is None:
                log.warning("finishing a rekey that was interrupted")
                os.replace(next_path, key_path)
                fsync_dir(self.state_dir)
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
        data = read_or_none(self.path)
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
                     check=lambda data: parse(data, self._keys, "the vault about to be written"), error=VaultError)
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
        plain = unit_rows(templates)
        face_rows = unit_face_rows(faces, len(plain))
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
            fsync_dir(self.state_dir)
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
        return credentials.pin_record(pin, credentials.device_salt(self._device))

    def pin_salts(self) -> set[str]:
        """The salts (hex) of the PINs held: this device's, and other gates' for imported records."""
        return {r.pin.split(":")[0] for r in self._records.values() if r.pin}

    def pin_holders(self, digests: dict[str, str]) -> list[Person]:
        """Everyone whose PIN hash is among ``digests`` (salt -> hash, edge.claim.credentials.pin_digests)."""
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

    def _mixed(self, where: str, dim: int, space: str) -> VaultError:
        """Templates of another embedder cannot join this vault's."""
        return VaultError(f"{where}: templates of embedder {space or '(not recorded)'} with {dim} "
                          f"values, this vault's of embedder {self._space or '(not recorded)'} with "
                          f"{self._dim} (different embedder models cannot be mixed)")

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
            raise _other_model(where, space, model_space)
        with self._lock():
            self._load()
            remove = plan({pid: r.person for pid, r in self._records.items()}) if plan else []
            replaced = set(remove) | {r.person.id for r in add}
            kept = [pid for pid in self._records if pid not in replaced]
            if add and kept and (dim != self._dim or space != self._space):
                raise self._mixed(where, dim, space)
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
        plain = unit_rows(templates)

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
            raise _other_model(where, space, model_space)

        def change() -> list[Person]:
            if self._records and ((dim and dim != self._dim) or space != self._space):
                raise self._mixed(where, dim, space)
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


def _other_model(where: str, space: str, model_space: str) -> VaultError:
    """Templates made by another model than the installed one can match nobody here."""
    return VaultError(f"{where}: its templates were made by embedder {space or '(not recorded)'}, this "
                      f"gate's model is embedder {model_space} (another maskgate release): they cannot "
                      "match here; enrol these people on this gate instead")
