"""``maskgate roster export|import|status``: an enrolment station's list of people for one gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.audit import record
from edge.roster import (SUFFIX, RosterError, change_dict, describe, export, import_file, station_info,
                         status)
from edge.files import atomic_write
from edge.vault import Vault, read_signing_key


def roster_cli(args: Any, cfg: Any, state: Path, out: Any) -> int:
    """``maskgate roster export|import|status``."""
    def audit(event: str, **fields: Any) -> None:
        record(state, cfg.audit, event, **fields)

    vault = Vault.open(state, cfg.vault)
    if args.action == "export":
        data, roster = export(vault, state, args.to, read_signing_key(Path(args.sign_key)))
        out_path = Path(args.out)
        if out_path.is_dir():
            out_path = out_path / f"{args.to.strip().lower()[:16]}-{roster.station}-v{roster.version}{SUFFIX}"
        try:
            atomic_write(out_path, data, 0o600)
        except OSError as e:
            raise RosterError(f"{out_path}: cannot write the roster: {e.strerror} (version "
                              f"{roster.version} is spent; the next export takes the next one)") from None
        audit("roster.export", station=roster.station, version=roster.version, to=args.to.strip()[:16],
              people=len(roster.records))
        out.event({"roster": str(out_path), "station": roster.station, "version": roster.version,
                   "people": [{"id": r.person.id, "name": r.person.name} for r in roster.records]},
                  f"wrote {out_path}: roster v{roster.version} of station {roster.station}, "
                  f"{len(roster.records)} people, sealed to {args.to.strip()[:16]}...")
        return 0
    if args.action == "import":
        from edge.embed import installed_space  # lazy: edge.embed brings OpenCV, which status and export need not load

        change = import_file(Path(args.roster), vault, state, cfg, audit, installed_space(cfg.embed.model))
        out.event(change_dict(change), describe(change))
        return 0
    if args.action == "status":
        info = station_info(state)
        out.event({"station": info["id"], "issued": info["version"]},
                  f"this station: {info['id'] or '(no roster exported yet)'}, last roster issued: v{info['version']}")
        rows = status(vault, state)
        for row in rows:
            out.event(row, f"from station {row['station']}: v{row['version']}, {row['people']} people here")
        if not rows:
            out.text("no rosters imported here")
        return 0
    raise RosterError(f"unknown roster action {args.action!r}")
