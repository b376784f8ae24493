"""Where a command's results go: JSON lines (``--json``) or human text on stdout, made safe to show."""

from __future__ import annotations

import json
from typing import Any


class Output:
    """Where a command's results go: JSON lines or human text on stdout."""

    def __init__(self, as_json: bool) -> None:
        self.json = as_json

    def event(self, obj: dict[str, Any], text: str | None = None) -> None:
        """One result: the object as a JSON line, or ``text`` (default: key=value pairs)."""
        if self.json:
            print(json.dumps(obj, separators=(", ", ": ")), flush=True)
        else:
            line = text if text is not None else " ".join(f"{k}={v}" for k, v in obj.items())
            print(printable(line), flush=True)

    def text(self, line: str) -> None:
        """Human-only output (skipped under --json)."""
        if not self.json:
            print(printable(line), flush=True)


def printable(text: str, keep_newlines: bool = True) -> str:
    """``text`` with control characters escaped (``\\x1b``), so a name or an operator read from the
    vault or the audit log cannot move the cursor, clear or retitle the terminal it is shown on."""
    return "".join(c if c.isprintable() or (keep_newlines and c == "\n") else
                   repr(c)[1:-1] if ord(c) < 0x10000 else f"\\U{ord(c):08x}" for c in str(text))
