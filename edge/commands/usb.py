"""``maskgate usb DIR``: administration by USB stick (rosters in; with a signed request, the report out)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.usb import FOLDER, REQUEST, UsbError, _write, has_valid_request, make_request, process


def usb_cli(args: Any, cfg: Any, state: Path, out: Any) -> int:
    """``maskgate usb DIR`` (gate), ``--check-request`` (the unit's script), ``--request`` (station)."""
    stick = Path(args.dir)
    if args.request:
        from edge.vault import read_signing_key

        if not args.sign_key:
            raise UsbError("--request needs --sign-key FILE (the installer key the gates trust)")
        if not stick.is_dir():
            raise UsbError(f"{stick}: no such folder (is the stick mounted there?)")
        folder = stick / FOLDER
        try:
            folder.mkdir(exist_ok=True)
        except OSError as e:
            raise UsbError(f"{folder}: cannot write to the stick: {e.strerror}") from None
        data = make_request(read_signing_key(Path(args.sign_key)), args.gate or "*", args.days)
        _write(folder / REQUEST, data)
        out.event({"request": str(folder / REQUEST), "gate": args.gate or "*", "days": args.days},
                  f"wrote {folder / REQUEST}: any gate that trusts this key writes its report onto the stick "
                  f"(valid {args.days:g} days)")
        return 0
    if args.check_request:
        return 0 if has_valid_request(stick, cfg, state) else 1
    return process(stick, cfg, state, out)
