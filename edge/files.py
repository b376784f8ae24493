"""Small file helpers shared by the writers of the state directory (vault, audit log, rosters) and
of the files commands write (bundles, exports, the USB stick): the one owner of the lock and of the
atomic replace, so every writer gets the same guarantees."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from edge.errors import MaskgateError


@contextlib.contextmanager
def exclusive(lock_path: Path, mode: int, error: type[MaskgateError]) -> Iterator[None]:
    """Hold an ``flock`` on ``lock_path`` (created with ``mode``): one writer process at a time.

    The lock goes with the descriptor, so a writer that dies frees it; ``error`` says whose lock
    could not be opened.
    """
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, mode)
    except OSError as e:
        raise error(f"{lock_path}: cannot open the lock: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename (or a new file) in directory ``path`` survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600, check: Callable[[bytes], Any] | None = None,
                 error: type[MaskgateError] = MaskgateError) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, directory fsync (old or new, whole).
    ``check`` gets the temp file's bytes as read back from disk and raises to keep the old file;
    bytes that read back differently are an ``error``."""
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
                raise error(f"{tmp}: the bytes read back differ from those written (storage failing?); "
                            f"{path.name} left as it was")
            check(back)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def sha256_file(path: Path) -> str:
    """A file's sha256 in hex, read in 1 MiB blocks (a model file is checked against its manifest)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
