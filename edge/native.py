"""Keep native libraries' start-up chatter (absl, glog, ffmpeg) off the technician's terminal.

MediaPipe and OpenCV's FFmpeg write to file descriptor 2 directly, where Python's logging cannot
filter them. We silence fd 2 only around the calls known to chatter (model start, opening a file),
and only when not debugging, so real errors later on still reach the journal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Iterator


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Send fd 2 to /dev/null for the duration, unless debug logging is on."""
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
