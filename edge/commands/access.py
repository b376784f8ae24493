"""``maskgate templates access PERSON [--group G]... [--valid-from T] [--valid-until T]``: its line."""

from __future__ import annotations

from typing import Any

from edge.access import change_access, describe


def templates_access(vault: Any, cfg: Any, args: Any, out: Any, audit: Any) -> int:
    """``--group`` replaces the person's groups (``--group default`` puts them back in the default
    group); ``--valid-from none`` / ``--valid-until none`` remove that end of the pass."""
    p = change_access(vault, cfg, args.person, args.group, args.valid_from, args.valid_until)
    shown = describe(p, cfg)
    audit("vault.access", person=p.id, groups=shown["groups"], valid=shown["valid"])
    out.event({"person": p.id, "name": p.name, **shown},
              f"{p.id} ({p.name or 'no name'}): groups={','.join(shown['groups'])} valid={shown['valid']}")
    return 0
