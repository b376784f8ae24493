"""``maskgate audit verify|show|export``: the tamper-evident log read, shown and exported; never written.

Reads only: a reader never recovers, purges or writes the log (the daemon owns it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edge import audit_query
from edge.audit import HEAD_NAME, LOG_NAME, AuditError, tail, verify_file
from edge.commands.output import printable
from edge.config import Config
from edge.errors import ConfigError
from edge.files import atomic_write


def _format(entry: dict[str, Any]) -> str:
    """One entry, one line: a newline (or any control character) in a value is shown escaped."""
    skip = {"seq", "ts", "event", "prev"}
    rest = " ".join(f"{k}={printable(str(v), keep_newlines=False)}" for k, v in entry.items() if k not in skip)
    return f"{entry.get('seq', '-')!s:>6} {entry.get('ts', '-')} {entry.get('event', '?')} {rest}".rstrip()


def audit_cli(args: argparse.Namespace, cfg: Config, state: Path, out: Any) -> int:
    """``maskgate audit verify`` (exit 1 naming the first bad line), ``audit show -n N`` and ``audit export``."""
    path, head = state / LOG_NAME, state / HEAD_NAME
    if args.action == "verify":
        v = verify_file(path, head)
        out.event({"ok": v.ok, "entries": v.entries, "line": v.line, "head": v.head, "detail": v.detail},
                  f"audit: {'ok' if v.ok else 'FAILED'}: {v.detail}" + (f" (head {v.head})" if v.ok else ""))
        return 0 if v.ok else 1
    if args.action == "show":
        if args.n <= 0:
            raise ConfigError(f"audit show -n must be a positive count, not {args.n}")
        q = audit_query.query_from(args)
        entries = tail(path, args.n) if q == audit_query.Query() else [e for _, e in audit_query.select(path, q)][-args.n:]
        if not entries:
            out.text(f"no audit entries in {path}")
        for e in entries:
            out.event(e, _format(e))
        return 0
    if args.action == "export":  # the selected entries as JSON lines (byte for byte) or CSV; never images
        rows = audit_query.select(path, audit_query.query_from(args))
        data = audit_query.to_csv(rows) if args.csv else audit_query.to_jsonl(rows)
        target = args.csv or args.json_file
        if target == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
            return 0
        try:
            atomic_write(Path(target), data, 0o640)
        except OSError as e:
            raise AuditError(f"{target}: cannot write the export: {e.strerror}") from None
        out.event({"export": target, "entries": len(rows), "format": "csv" if args.csv else "jsonl"},
                  f"wrote {len(rows)} entries to {target}")
        return 0
    raise ConfigError(f"unknown audit action {args.action!r} (verify, show or export)")
