"""``diag vault``: the vault opens with this board's key, who is in it, the key file's mode, the
expiry backlog, and the site calibration: whether the model tells these people apart at the
configured stranger rate (edge.calibration), as the gate decides.
"""

from __future__ import annotations

import time
from pathlib import Path

from edge import vault as vault_mod
from edge.calibration import CLAIM_HINT, calibrate
from edge.diag.base import Context, Finding, _fail, _ok, _warn
from edge.embed import load_spec
from edge.errors import MaskgateError, ModelError


def _mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return None


def check_vault(ctx: Context) -> Finding:
    """Opens with this device's key; people count; key file mode 0600; expiry backlog."""
    key = ctx.state / vault_mod.KEY_FILE
    sealed = ctx.state / vault_mod.VAULT_FILE
    if not sealed.exists() and not key.exists():
        return _warn(f"no vault in {ctx.state} yet (nobody enrolled)",
                     "enrol someone: `maskgate enroll NAME --from camera --consent TEXT`")
    mode = _mode(key)  # before opening: opening repairs a loose mode, hiding that it was loose
    try:
        v = vault_mod.Vault.open(ctx.state, ctx.cfg.vault)
    except MaskgateError as e:
        return _fail(str(e), "a vault opens only on the board that sealed it, with its own device.key: "
                             "restore this gate's vault.bin and device.key from its backup, or move vault.bin "
                             "away and enrol again")
    people = v.people()
    now = time.time()
    days = ctx.cfg.vault.retention_days
    backlog = [p for p in people if (p.expires is not None and p.expires <= now)
               or (days and now - (p.last_seen or p.created) > days * 86400)]
    templates = sum(p.templates for p in people)
    who = f"{len(people)} {'person' if len(people) == 1 else 'people'}"
    detail = f"{sealed.name} opens with key {v.key_id}: {who}, {templates} templates"
    try:
        spec = load_spec(ctx.cfg.embed.model)
    except ModelError:
        spec = None   # no comparison against the model then; ``diag models`` says why
    stale = v.stale_for(spec.space) if spec is not None else None
    reached, cal = True, None
    ids, rows = v.gallery()
    if spec is not None and ids:
        cal = calibrate(ids, rows, spec, ctx.cfg.match)   # the gate's own rule
        reached = cal.model_reached or (cal.estimated and (cal.strangers or 0.0) <= cal.rate)
        detail += f"; {cal.summary()}"
    if stale:
        return _fail(f"{detail}; {stale}", "the gate grants nobody until then: remove everyone "
                     "(`maskgate templates remove ID`) and enrol them again with this model")
    if mode is not None and mode != 0o600:
        return _fail(f"{detail}; {key.name} had mode {mode:04o}, readable by others",
                     f"the key may have been copied: `sudo chmod 600 {key}` (opening has now set it), then "
                     "`maskgate templates rekey` so a copy opens nothing")
    if cal is not None and not cal.separates:
        return _fail(f"{detail}: this model cannot tell these {len(set(ids))} people apart at "
                     f"match.stranger_rate = {ctx.cfg.match.stranger_rate:g}", CLAIM_HINT)
    if backlog:
        return _warn(f"{detail}, {len(backlog)} past expiry or retention",
                     "`maskgate templates purge` removes them (the gate already refuses them)")
    if not reached:
        return _warn(f"{detail}: with {who} the model lets strangers in more often than "
                     f"match.stranger_rate = {ctx.cfg.match.stranger_rate:g}",
                     "the model card gives the rate for this many people; keep one gate's list to the "
                     "people who use that gate, or accept a higher match.stranger_rate knowingly")
    if not people:
        return _warn(detail, "enrol someone: `maskgate enroll NAME --from camera --consent TEXT`")
    return _ok(detail)
