"""``diag audit``: the audit log's hash chain verifies (read-only), its size and oldest entry,
whether the gate can write it now, and whether retention is keeping up.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from edge import audit as audit_mod
from edge.diag.base import Context, Finding, _fail, _ok, _warn


def check_audit(ctx: Context) -> Finding:
    """The hash chain verifies; log size; the oldest entry."""
    path = ctx.state / audit_mod.LOG_NAME
    verdict = audit_mod.verify_file(path, ctx.state / audit_mod.HEAD_NAME)  # read-only, unlike AuditLog()
    if not verdict.ok:
        return _fail(f"{path}: {verdict.detail}",
                     "the log was edited, cut or damaged: copy audit.log and audit.head off the gate as "
                     "evidence before anything else; `maskgate audit show` lists the newest entries")
    if not path.exists():
        return _warn(f"no audit log in {ctx.state} yet", "the gate writes it from its first start "
                                                          "(`sudo systemctl start maskgate`)")
    size = path.stat().st_size
    oldest = ""
    with path.open("rb") as f:
        first = f.readline()
    try:
        entry = json.loads(first)
        oldest = f", oldest {entry.get('ts', '?')} ({entry.get('event', '?')})"
        age_days = (datetime.now(timezone.utc) - datetime.fromisoformat(str(entry["ts"]))).days
    except (ValueError, KeyError, TypeError):
        age_days = 0
    detail = f"chain intact, {verdict.entries} entries, {size / 1024:.0f} KB{oldest}, head {verdict.head[:12]}"
    writable = _audit_writable(ctx.state, path)
    if writable:
        return _warn(f"{detail}; {writable}", "the gate keeps deciding and holds new entries in memory until "
                                              "the log can be written: free space, or fix the mount/owner")
    if "appended after" in verdict.detail:
        return _warn(f"{detail}; {verdict.detail.split('; ', 1)[1]}",
                     "free disk space or check the state directory's mount; the head catches up on the next entry")
    keep = ctx.cfg.audit.retention_days
    if keep and age_days > keep + 1:
        return _warn(f"{detail}; older than audit.retention_days = {keep}",
                     "retention runs when the gate starts: restart it (`sudo systemctl restart maskgate`)")
    return _ok(detail)


def _audit_writable(state: Path, log_path: Path) -> str:
    """Why the gate could not write its audit log now ("" when it can): permissions or a full disk."""
    for p in (state, log_path):
        if p.exists() and not os.access(p, os.W_OK):
            return f"{p} is not writable (read-only file system or wrong owner)"
    try:
        st = os.statvfs(state)
    except OSError as e:
        return f"{state}: {e.strerror}"
    if st.f_bavail * st.f_frsize < 1 << 20:
        return f"the disk holding {state} is full (under 1 MB free)"
    return ""
