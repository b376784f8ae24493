"""Who may write the state directory: never root into a directory the service user owns.

Why: the daemon runs as ``maskgate`` and opens ``vault.bin``, ``audit.head``, the locks, ... in
``/var/lib/maskgate``. An administrator's ``sudo maskgate enroll ...`` run straight from the venv
would replace them with root-owned files the daemon can no longer open (the gate then lets nobody
in). So a command that writes there checks, before it writes anything, that it is not root writing
into another user's directory, and points to the ``maskgate`` wrapper installed on PATH
(``scripts/maskgate-admin``), which runs the command as the service user.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from edge.errors import MaskgateError

WRAPPER = "/usr/local/bin/maskgate"


class OwnershipError(MaskgateError):
    """Root was about to write files the gate's own user could not read."""


def owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def check_writer(state: Path, euid: int | None = None) -> None:
    """Refuse when running as root and ``state`` (or a file in it) belongs to another user."""
    euid = os.geteuid() if euid is None else euid
    if euid != 0:
        return  # any other user simply cannot write someone else's files
    state = Path(state)
    try:
        st = state.stat()
    except OSError:
        return  # not there yet: root makes its own (a development or root-run gate)
    owner = st.st_uid
    if owner == euid:
        return
    name = owner_name(owner)
    raise OwnershipError(
        f"{state} belongs to {name}: run as root, this command would leave root-owned files there that "
        f"the gate (user {name}) cannot open; use the wrapper instead, which runs it as {name}: "
        f"`maskgate ...` ({WRAPPER}), or setpriv --reuid={name} --regid={name} --init-groups ...")
