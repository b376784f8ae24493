"""``maskgate templates ...``: vault administration from the command line.

DESIGN: the glue between the parsed arguments and the vault: which ``Vault`` call an action makes,
what goes into the audit log, and the line or JSON object printed. The vault itself
(``edge.vault``) parses no arguments and prints nothing. The credential, ``add`` and ``access``
actions are handed to their own command modules (credentials, enroll, access).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from edge.access import describe
from edge.audit import record
from edge.commands.access import templates_access
from edge.commands.credentials import credentials_cli
from edge.errors import VaultError
from edge.files import atomic_write
from edge.vault import Vault, read_or_none, read_signing_key


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def _last_day(t: float | None) -> str | None:
    """The day access ends, as given to ``--expires``: it is stored as the midnight after it."""
    return time.strftime("%Y-%m-%d", time.localtime(t - 1)) if t else None


def templates_cli(args: Any, cfg: Any, state: Path, out: Any) -> int:
    """``maskgate templates list|remove|rekey|export|import|pubkey|purge|keygen``."""
    action = args.action
    if action in ("set-card", "clear-card", "set-pin", "clear-pin"):
        return credentials_cli(args, cfg, state, out)
    if action == "keygen":  # an installer's signing key: needs no vault
        path = Path(args.out)
        if path.exists():
            raise VaultError(f"{path} exists; refusing to overwrite a signing key")
        key = SigningKey.generate()
        atomic_write(path, bytes(key).hex().encode() + b"\n", 0o600)
        pub = bytes(key.verify_key).hex()
        out.event({"signing_key": str(path), "public_key": pub},
                  f"signing key written to {path} (keep it secret)\n"
                  f"public key (put it in vault.trusted_keys of the gates you install): {pub}")
        return 0
    if action == "add":  # enrolment's frame gates and model: edge/enroll.py, its lines edge/commands/enroll.py
        # lazy: enrolment brings the camera and vision stack (about 0.5 s); no other action needs it
        from edge.commands.enroll import add_templates_cli

        return add_templates_cli(args.person, args.source, cfg, state, out,
                                 allow_look_alike=args.allow_look_alike)
    vault = Vault.open(state, cfg.vault)

    def audit(event: str, **fields: Any) -> None:  # every change goes into the gate's event log
        record(state, cfg.audit, event, **fields)

    if action == "list":
        people = vault.people()
        for p in people:
            rules = describe(p, cfg.access)
            out.event({**p.to_dict(), "expires_on": _last_day(p.expires), **rules},
                      f"{p.id}  {p.name or '-':20s} templates={p.templates} "
                      f"enrolled={_when(p.created)} last_seen={_when(p.last_seen)} "
                      f"expires={_last_day(p.expires) or '-'} card={p.card or '-'} pin={'set' if p.pin else '-'} "
                      f"groups={','.join(rules['groups'])} valid={rules['valid']} "
                      f"consent={p.consent.text[:40]!r}")
        out.text(f"{len(people)} people, key {vault.key_id}")
        return 0
    if action == "remove":
        p = vault.remove(args.person)
        audit("vault.remove", person=p.id, name=p.name)
        out.event({"removed": p.id, "name": p.name}, f"removed {p.id} ({p.name or 'no name'})")
        return 0
    if action == "rekey":
        old = vault.key_id
        new = vault.rekey()
        audit("vault.rekey", old_key=old, key=new, people=len(vault.people()))
        out.event({"old_key": old, "key": new, "people": len(vault.people())},
                  f"rekeyed: key {old} -> {new}; {len(vault.people())} people moved; copies made "
                  f"before now match nobody; this gate's public key is now {vault.public_key()}")
        return 0
    if action == "pubkey":
        out.event({"public_key": vault.public_key(), "key": vault.key_id}, vault.public_key())
        return 0
    if action == "export":
        bundle = vault.export_bundle(args.to, read_signing_key(Path(args.sign_key)))
        atomic_write(Path(args.out), bundle, 0o600)
        audit("vault.export", to=args.to[:16], people=len(vault.people()))
        out.event({"bundle": args.out, "people": len(vault.people()), "bytes": len(bundle)},
                  f"wrote {args.out}: {len(vault.people())} people sealed to {args.to[:16]}...")
        return 0
    if action == "import":
        data = read_or_none(Path(args.bundle))
        if data is None:
            raise VaultError(f"{args.bundle}: no such bundle file")
        # lazy: the embedder module brings the vision stack; only import needs it
        from edge.embed import installed_space

        added = vault.import_bundle(data, args.bundle, installed_space(cfg.embed.model))
        audit("vault.import", bundle=Path(args.bundle).name, people=len(added))
        out.event({"imported": [p.id for p in added]}, f"imported {len(added)} people from {args.bundle}")
        return 0
    if action == "purge":
        gone = vault.purge()
        if gone:
            audit("vault.purge", people=len(gone))
        out.event({"purged": [p.id for p in gone]},
                  f"purged {len(gone)} people" + "".join(f"\n  {p.id} {p.name}" for p in gone))
        return 0
    if action == "access":
        return templates_access(vault, cfg.access, args, out, audit)
    raise VaultError(f"unknown templates action {action!r}")
