"""Shared test helpers: fixture paths and running the real ``maskgate`` command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SHARED_DATA = ROOT.parent / "shared" / "data"


def need(tool: str, package: str) -> str:
    """The path of an OS tool a test runs for real. Missing, it skips the test only where .ci/run could
    not have installed it (not root, or no apt-get); where it could, a missing tool fails the test, so
    CI never passes by skipping silently."""
    path = shutil.which(tool)
    if path:
        return path
    msg = f"{tool} is missing (apt-get install {package}; .ci/run installs it)"
    if os.geteuid() == 0 and shutil.which("apt-get"):
        pytest.fail(msg)
    pytest.skip(msg)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


class Events(list):
    """A gate's ``emit``: keeps every event, ``of(kind)`` picks one kind."""

    def __call__(self, ev: dict) -> None:
        self.append(ev)

    def of(self, kind: str) -> list[dict]:
        return [e for e in self if e["event"] == kind]


class Quiet:
    """An ``Output`` for a command run in process whose lines the test does not read."""

    json = True

    def event(self, *a, **k) -> None:
        pass

    def text(self, line: str) -> None:
        pass


def maskgate(*args: str, timeout: float = 300, env: dict | None = None) -> Result:
    """Run the installed command as a user would, in a fresh process."""
    p = subprocess.run([sys.executable, "-m", "edge.cli", *map(str, args)], capture_output=True,
                       text=True, timeout=timeout, env={**os.environ, **(env or {})}, cwd=ROOT)
    return Result(p.returncode, p.stdout, p.stderr)


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def state(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    return d
