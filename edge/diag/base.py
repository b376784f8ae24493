"""What every check shares: the ``Finding`` a check returns, the ``Context`` it may look at, and
small helpers for reading the host (files under ``SYS``, a command's output).

The checks read ``SYS`` as ``base.SYS`` at call time, so one assignment (a test's fake tree) moves
them all.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from edge.config import Config
from edge.errors import ModelError
from edge.fusion import FaceModel

# Root of the files the board/clock checks read (/proc, /sys, /dev); tests point it at a fake tree.
SYS = Path("/")


class Finding(NamedTuple):
    """What one check saw: status, one line of detail, what to do (may be empty), and figures a
    harness may read (``data``: extra keys of the check's ``--json`` line, never replacing one)."""

    status: str
    detail: str
    hint: str = ""
    data: dict[str, Any] | None = None


@dataclass(frozen=True)
class Context:
    """What every check may look at."""

    cfg: Config
    state: Path
    yes: bool = False
    pin_factory: Any = None  # gpiozero pins for the door check: None = what door.backend says


def _face_model(cfg: Config) -> FaceModel | str:
    """The installed whole-face model, as the gate loads it (edge.fusion), or why it cannot be loaded."""
    try:
        return FaceModel(cfg.embed)
    except ModelError as e:
        return str(e)


def _ok(detail: str, hint: str = "") -> Finding:
    return Finding("ok", detail, hint)


def _warn(detail: str, hint: str = "") -> Finding:
    return Finding("warn", detail, hint)


def _fail(detail: str, hint: str = "") -> Finding:
    return Finding("fail", detail, hint)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip("\x00\n ")
    except OSError:
        return None


def _run(cmd: list[str], timeout: float = 5.0) -> str | None:
    """A command's stdout, or None when it is not installed, fails or hangs."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout if p.returncode == 0 else None
