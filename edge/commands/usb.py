"""``maskgate usb DIR``: administration by USB stick (rosters in; with a signed request, the report out)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.usb import (FOLDER, REQUEST, Outcome, UsbError, has_valid_request, make_request, process,
                      write_to_stick)
from edge.vault import read_signing_key


def usb_cli(args: Any, cfg: Any, state: Path, out: Any) -> int:
    """``maskgate usb DIR`` (gate), ``--check-request`` (the unit's script), ``--request`` (station)."""
    stick = Path(args.dir)
    if args.request:
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
        write_to_stick(folder / REQUEST, data)
        out.event({"request": str(folder / REQUEST), "gate": args.gate or "*", "days": args.days},
                  f"wrote {folder / REQUEST}: any gate that trusts this key writes its report onto the stick "
                  f"(valid {args.days:g} days)")
        return 0
    if args.check_request:
        return 0 if has_valid_request(stick, cfg, state) else 1
    return report(process(stick, cfg, state), out)


def report(outcome: Outcome, out: Any) -> int:
    """One line per roster imported, file refused or skipped, then the summary; 1 when anything on the
    stick was refused."""
    for item in outcome.imported:
        out.event({"usb": "roster", **item},
                  f"roster {item['file']}: v{item['version']} of station {item['station']}: "
                  f"{len(item['added'])} added, {len(item['changed'])} changed, {len(item['removed'])} removed")
    for item in outcome.refused:
        out.event({"usb": "refused", **item}, f"refused {item['file']}: {item['reason']}")
    for item in outcome.skipped:
        out.event({"usb": "skipped", **item}, f"skipped {item['file']}: {item['reason']}")
    status = "done" if not outcome.refused else "done, with refusals"
    out.event({"usb": "done", "request": outcome.request, "report": outcome.report, "refused": len(outcome.refused),
               "led": outcome.led},
              f"{status}: {len(outcome.imported)} roster(s) imported; report request: {outcome.request}"
              + (f"; report written to {outcome.report}" if outcome.report else "")
              + (f"; the door LED shows {outcome.led}" if outcome.led else "; no door keeper, so nothing on the LED"))
    return 1 if outcome.refused else 0
