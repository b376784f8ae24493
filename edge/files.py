"""Small file helpers shared by the writers of the state directory (vault, audit log)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

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
