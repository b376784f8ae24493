"""The tamper-evident event log: append-only JSON lines, each chained to the one before by hash.

Every line of ``<state>/audit.log`` is one JSON object with ``seq`` (0, 1, 2, ...), ``ts`` (UTC,
ISO 8601), ``event``, the caller's fields and ``prev``: the sha256 (hex) of the previous line's
bytes (without its newline; 64 zeros before the first). Editing, removing or reordering any line
breaks the chain at that line; ``audit.head`` (the last line's ``seq`` and hash, replaced atomically
after every append) catches lines cut off the end. This is evidence, not a lock: someone with root
can rewrite the whole file and the head; write down the head hash ``audit verify`` prints to
detect that.

Retention drops lines older than ``retention_days`` from the front and writes in their place one
``audit.checkpoint`` entry naming the last dropped ``seq`` and its hash, so the kept lines still
verify. The file is rewritten to a temporary file and renamed over the old one.

Durability: each append is one ``write`` of a whole line, then ``fsync`` (``[audit] fsync``, on by
default); a power cut can lose at most the entry being written. A torn last line found at start is
cut off and recorded (length and hash) in a ``audit.torn_tail`` entry, so nothing vanishes silently.

Only scalars go in: numbers, booleans, null, strings up to 200 characters, and short lists of short
strings. Images, embeddings and score vectors (bytes, arrays, lists of numbers) are refused, so a
caller's mistake cannot turn the log into biometric data.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from edge.config import AuditConfig
from edge.errors import MaskgateError
from edge.files import exclusive

log = logging.getLogger(__name__)

LOG_NAME = "audit.log"
HEAD_NAME = "audit.head"
LOCK_NAME = "audit.lock"
GENESIS = "0" * 64
MAX_STR = 200
MAX_LIST = 8
PENDING_MAX = 1000  # entries kept in memory while the log cannot be written
RESERVED = ("seq", "ts", "event", "prev")
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_EVENT = re.compile(r"^[a-z][a-z0-9_.-]{0,47}$")


class AuditError(MaskgateError):
    """An entry was refused, or the log cannot be read or written."""


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _clean(key: str, value: Any) -> Any:
    """The value as it may be logged, or ``AuditError`` (never images, embeddings or score vectors)."""
    if not _KEY.match(key) or key in RESERVED:
        raise AuditError(f"audit field name {key!r} is not allowed (lower-case identifier, not {RESERVED})")
    if value is None or isinstance(value, (bool, int, str)):
        if isinstance(value, str) and len(value) > MAX_STR:
            raise AuditError(f"audit field {key!r}: string of {len(value)} characters (at most {MAX_STR}); "
                             f"the log holds events, not data")
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:  # np.float32 score
        return _clean(key, value.item())
    if isinstance(value, (list, tuple)) and len(value) <= MAX_LIST and all(isinstance(v, str) for v in value):
        return [_clean(key, v) for v in value]
    raise AuditError(f"audit field {key!r}: {type(value).__name__} refused (only numbers, booleans, short "
                     f"strings and short lists of strings; never images, embeddings or score vectors)")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int
    head: str
    detail: str
    line: int = 0  # 1-based line of the first problem; 0 when none


def _parse(raw: bytes, lineno: int) -> dict[str, Any]:
    try:
        entry = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"line {lineno}: not a JSON entry (edited or corrupted)") from None
    if not isinstance(entry, dict) or not {"seq", "ts", "event", "prev"} <= entry.keys():
        raise ValueError(f"line {lineno}: not an audit entry (seq, ts, event, prev missing)")
    return entry


def verify_file(path: Path, head_path: Path | None = None) -> Verdict:
    """Walk the chain of ``path``; the first broken link is reported with its line number."""
    if not path.exists():
        if head_path is not None and head_path.exists():
            return Verdict(False, 0, "", f"{path} is missing but {head_path.name} says entries were written", 1)
        return Verdict(True, 0, GENESIS, "no entries yet")
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        n = data.count(b"\n") + 1
        return Verdict(False, n - 1, "", f"line {n}: incomplete last line (a write was cut off)", n)
    lines = data.split(b"\n")[:-1] if data else []
    prev, seq, last = GENESIS, None, GENESIS
    for i, raw in enumerate(lines, 1):
        try:
            entry = _parse(raw, i)
        except ValueError as e:
            return Verdict(False, i - 1, "", str(e), i)
        if i == 1 and entry["event"] == "audit.checkpoint":
            # The kept lines start after a retention cut: the checkpoint says where the chain resumes.
            prev, seq = entry.get("last_hash", ""), entry.get("last_seq")
            if not isinstance(seq, int) or not isinstance(prev, str) or len(prev) != 64:
                return Verdict(False, 0, "", "line 1: checkpoint entry without last_seq / last_hash", 1)
            last = line_hash(raw)
            continue
        want = 0 if seq is None else seq + 1
        if entry["seq"] != want:
            return Verdict(False, i - 1, "", f"line {i}: seq {entry['seq']} where {want} belongs "
                                             f"(lines removed or reordered here)", i)
        if entry["prev"] != prev:
            # The numbering is intact, so nothing was removed or moved: the line before was edited.
            return Verdict(False, i - 2, "", f"line {i - 1}: edited (its hash is not the one line {i} "
                                             f"recorded)", i - 1)
        prev = last = line_hash(raw)
        seq = entry["seq"]
    if head_path is not None and head_path.exists():
        try:
            head = json.loads(head_path.read_text())
            hseq, hhash = int(head["seq"]), str(head["hash"])
        except (ValueError, KeyError, TypeError, OSError):
            return Verdict(False, len(lines), last, f"{head_path.name} is unreadable (edited?)", len(lines))
        if hhash != last:
            n = len(lines)
            if hseq == seq:
                return Verdict(False, n - 1, "", f"line {n}: edited (its hash is not the one "
                                                 f"{head_path.name} recorded)", n)
            # The benign mismatch: lines appended after the head's last update (a crash between a
            # line and its head, or head writes that failed: disk full, read-only). The chain is
            # intact up to the line the head names, and on from there.
            behind = seq - hseq if isinstance(seq, int) and hseq < seq else 0
            if behind and n - behind >= 1 and hhash == line_hash(lines[n - behind - 1]):
                if behind == 1:
                    return Verdict(True, n, last, f"{n} entries, chain intact")
                return Verdict(True, n, last, f"{n} entries, chain intact; the last {behind} were appended "
                                              f"after {head_path.name} was last updated (seq {hseq}): head "
                                              f"writes failed (disk full or read-only?); not a truncation")
            return Verdict(False, n, "", f"line {n + 1}: missing: the log ends at seq {seq} but "
                                         f"{head_path.name} says seq {hseq} (lines cut off the end, "
                                         f"or the head edited)", n + 1)
    return Verdict(True, len(lines), last, f"{len(lines)} entries, chain intact")


class AuditLog:
    """Append-only, hash-chained event log in ``state_dir``.

    Thread-safe, and safe across processes: the daemon and the administration commands (enrol,
    remove, rekey, ...) append to the same chain under an ``flock`` on ``audit.lock``, and a writer
    that finds the file changed since its own last write continues from the line another one wrote.
    """

    def __init__(self, state_dir: Path | str, cfg: AuditConfig | None = None) -> None:
        self.cfg = cfg or AuditConfig()
        self.dir = Path(state_dir)
        self.path = self.dir / LOG_NAME
        self.head_path = self.dir / HEAD_NAME
        self._lock = threading.Lock()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AuditError(f"cannot create the state directory {self.dir}: {e}") from None
        self._seq, self._prev = -1, GENESIS
        self._seen: tuple[int, int] | None = None  # (inode, size) of the log after our last look
        self._purged = _now()
        # Entries a failed write left behind (disk full, read-only, permissions), written first by
        # the next append that succeeds; the gate keeps deciding meanwhile (``failing`` says so).
        self._pending: deque[tuple[str, dict[str, Any], str]] = deque(maxlen=PENDING_MAX)
        self.dropped = 0
        self.last_error: str | None = None
        try:
            with self._lock, self._file_lock():
                torn = self._recover()
        except (AuditError, OSError) as e:
            self._failed(f"cannot read the log to continue its chain: {_why(e)}")
            torn = b""
        if torn:
            log.warning("%s: cut off a torn last line of %d bytes (a write interrupted by a crash)",
                        self.path, len(torn))
            self.append("audit.torn_tail", bytes=len(torn), sha256=line_hash(torn))
        self._purge_quietly()

    def _purge_quietly(self) -> None:
        try:
            self.purge(self._purged)
        except (AuditError, OSError) as e:  # retention is housekeeping: never a reason to stop
            log.error("audit retention on %s failed: %s", self.path, _why(e))

    def _file_lock(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive across processes for one append, recovery or purge."""
        return exclusive(self.dir / LOCK_NAME, 0o640, AuditError)

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size

    def _follow(self) -> None:
        """Continue the chain from the last line another process wrote (or rewrote, by retention)."""
        if self._stat() != self._seen:
            data = self.path.read_bytes() if self.path.exists() else b""
            self._continue_from(data[:data.rfind(b"\n") + 1])

    def _continue_from(self, data: bytes) -> None:
        """Take the chain's end (seq and hash) from the whole lines in ``data``, the log's content."""
        lines = data.split(b"\n")[:-1]
        self._seq, self._prev = -1, GENESIS
        if lines:
            last = lines[-1]
            try:
                self._seq = int(_parse(last, len(lines))["seq"])  # purge keeps an entry after a checkpoint
            except (ValueError, TypeError):
                log.error("%s: the last line is not an entry; the chain continues from its hash "
                          "(audit verify will report it)", self.path)
                self._seq = len(lines) - 1
            self._prev = line_hash(last)
        self._seen = self._stat()

    # ---- writing ----

    @property
    def failing(self) -> bool:
        """True while entries wait to be written (or the head could not be updated)."""
        return self.last_error is not None

    def _failed(self, why: str) -> None:
        if self.last_error is None:
            log.error("audit log %s: %s; the gate carries on and retries with the next entry", self.path, why)
        self.last_error = why

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Add one entry; returns it. ``AuditError`` for a field that is not a plain scalar.

        A write that fails (disk full, read-only, permissions) raises nothing: the entry waits in
        memory (``failing``, the oldest dropped past ``PENDING_MAX``) and goes in, with the time it
        was made, before the next entry whose write succeeds."""
        if not _EVENT.match(event):
            raise AuditError(f"audit event name {event!r} is not allowed (lower-case, digits, . _ -)")
        clean = {k: _clean(k, v) for k, v in fields.items()}
        with self._lock:
            late = len(self._pending)
            if late == self._pending.maxlen:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append((event, clean, _now().isoformat(timespec="milliseconds")))
            entry: dict[str, Any] = {"event": event, **clean, "written": False}
            try:
                with self._file_lock():
                    self._follow()
                    while self._pending:
                        ev, fl, made = self._pending[0]
                        e = {"seq": self._seq + 1, "ts": _now().isoformat(timespec="milliseconds"), "event": ev,
                             **fl, **({"made": made} if len(self._pending) > 1 else {}), "prev": self._prev}
                        line = json.dumps(e, separators=(",", ":"), ensure_ascii=True).encode()
                        self._write_line(line)
                        self._pending.popleft()
                        self._seq, self._prev = e["seq"], line_hash(line)
                        self._seen = self._stat()
                        entry = e
                    self._write_head()
            except (AuditError, OSError) as err:
                self._failed(_why(err))
                return entry
            if self.last_error is not None:
                log.warning("audit log %s: written again (%d late entries added, %d lost)", self.path,
                            late, self.dropped)
                self.last_error = None
        if _now() - self._purged > timedelta(days=1):  # a daemon runs for months: purge daily
            self._purged = _now()
            self._purge_quietly()
        return entry

    def _write_line(self, line: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            size = os.fstat(fd).st_size
            data = line + b"\n"
            if os.write(fd, data) != len(data):  # one write: a line is whole or torn, never interleaved
                os.ftruncate(fd, size)  # a short write (disk full): no torn line for the next one to follow
                raise OSError(errno.ENOSPC, "short write (disk full?)", str(self.path))
            if self.cfg.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _write_head(self) -> None:
        tmp = self.dir / (HEAD_NAME + ".tmp")
        tmp.write_text(json.dumps({"seq": self._seq, "hash": self._prev}) + "\n")
        if self.cfg.fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, self.head_path)

    def _recover(self) -> bytes:
        """Find where the chain ends; cut off a torn last line and return it (the caller records it)."""
        if not self.path.exists():
            return b""
        data = self.path.read_bytes()
        torn = b""
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            torn, data = data[cut:], data[:cut]
            with open(self.path, "r+b") as f:
                f.truncate(cut)
                os.fsync(f.fileno())
        self._continue_from(data)
        return torn

    def purge(self, now: datetime | None = None) -> int:
        """Drop entries older than ``retention_days`` behind a checkpoint; returns how many went."""
        days = self.cfg.retention_days
        if days == 0 or not self.path.exists():
            return 0
        cutoff = (now or _now()) - timedelta(days=days)
        with self._lock, self._file_lock():
            self._follow()
            lines = self.path.read_bytes().split(b"\n")[:-1]
            keep_from = 0
            for i, raw in enumerate(lines):
                try:
                    entry = json.loads(raw)
                    ts = datetime.fromisoformat(entry["ts"])
                except (ValueError, KeyError, TypeError):
                    break  # never drop past a line we cannot read: verify must still see it
                if ts >= cutoff:
                    break
                if i == 0 and entry.get("event") == "audit.checkpoint":
                    continue  # an old checkpoint goes too; the new one carries its place
                keep_from = i + 1
            # A chain that ends in the dropped part still needs its last line to continue from.
            keep_from = min(keep_from, len(lines) - 1)
            if keep_from <= 0:
                return 0
            last = json.loads(lines[keep_from - 1])
            checkpoint = {"seq": None, "ts": _now().isoformat(timespec="milliseconds"),
                          "event": "audit.checkpoint", "dropped": keep_from, "before": cutoff.isoformat(),
                          "last_seq": last["seq"], "last_hash": line_hash(lines[keep_from - 1]),
                          "prev": line_hash(lines[keep_from - 1])}
            body = b"\n".join([json.dumps(checkpoint, separators=(",", ":")).encode(), *lines[keep_from:]]) + b"\n"
            tmp = self.dir / (LOG_NAME + ".tmp")
            with open(tmp, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o640)
            os.replace(tmp, self.path)
            self._seen = self._stat()
            dfd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        log.info("audit retention: dropped %d entries older than %d days", keep_from, days)
        return keep_from

    # ---- reading ----

    def verify(self) -> tuple[bool, str]:
        v = verify_file(self.path, self.head_path)
        return v.ok, v.detail

    def tail(self, n: int) -> list[dict[str, Any]]:
        return tail(self.path, n)


def _why(e: BaseException) -> str:
    if isinstance(e, OSError):
        return f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}"
    return str(e)


def record(state: Path, cfg: AuditConfig, event: str, **fields: Any) -> None:
    """One entry from an administration command (enrol, remove, rekey, import, purge).

    The change it records has already happened, so a log that cannot be written is reported on
    stderr (and the journal), not turned into a failure of the command.
    """
    import getpass

    try:
        user = os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    try:
        entry = AuditLog(state, cfg).append(event, user=user[:MAX_STR], **fields)
    except (AuditError, OSError) as e:
        log.error("audit log: %s was done but could not be recorded: %s", event, e)
        return
    if entry.get("written") is False:
        log.error("audit log: %s was done but could not be recorded (see above)", event)


def tail(path: Path, n: int) -> list[dict[str, Any]]:
    """The newest ``n`` readable entries (a damaged line is shown as an ``unreadable`` entry)."""
    if not path.exists() or n <= 0:
        return []
    lines = path.read_bytes().split(b"\n")
    lines = [line for line in lines if line][-n:]
    out = []
    for raw in lines:
        try:
            out.append(json.loads(raw))
        except ValueError:
            out.append({"event": "unreadable", "bytes": len(raw)})
    return out
