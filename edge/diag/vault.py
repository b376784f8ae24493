"""``diag vault``: the vault opens with this board's key, who is in it, the key file's mode, the
expiry backlog, and the site calibration: whether the model tells these people apart at the
configured stranger rate (edge.calibration), as the gate decides.

The gate decides with two thresholds (edge.fusion.thresholds): the eye region's for a covered lower
face, and the fused (eye + whole face) score's when the lower face shows and the whole-face model is
installed. Both estimates are reported, in the detail and as the ``calibration`` key of the JSON
line; the status follows the eye region's, which every face can fall back on, as the gate's own
warning at start does.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edge import fusion
from edge import vault as vault_mod
from edge.calibration import CLAIM_HINT, FusedCalibration, SiteCalibration
from edge.diag.base import Context, Finding, _face_model, _fail, _ok, _warn
from edge.embed import load_spec
from edge.fusion import FaceModel
from edge.errors import MaskgateError, ModelError


def _mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return None


def _figures(cal: SiteCalibration | FusedCalibration) -> dict[str, Any]:
    """One calibration for the JSON line: the threshold a score must reach and the estimated shares."""
    site = cal.cal if isinstance(cal, FusedCalibration) else cal
    return {"threshold": round(cal.threshold, 4), "people": site.people, "templates": site.templates,
            "estimated": site.estimated, "strangers": site.strangers, "first_try": site.first_try}


def check_vault(ctx: Context) -> Finding:
    """Opens with this device's key; people count; key file mode 0600; expiry backlog; the site
    calibration of the eye score and, with the whole-face model, of the fused score."""
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
    reached, cal, fused, data = True, None, "", None
    ids, rows = v.gallery()
    if spec is not None and ids:
        face = _face_model(ctx.cfg)   # as the gate loads it; ``diag models`` says why when it cannot
        face = face if isinstance(face, FaceModel) else None
        limits = fusion.thresholds((ids, rows), v.face_gallery(face.space) if face is not None else None,
                                   face, spec, ctx.cfg.match)   # the gate's own rule
        cal = limits.eye
        reached = cal.model_reached or (cal.estimated and (cal.strangers or 0.0) <= cal.rate)
        detail += f"; {cal.summary()}"
        if limits.fused is not None:
            fused = f"; lower face visible (face+eye): {limits.fused.summary()}"
        data = {"calibration": {"eye": _figures(cal),
                                "fused": _figures(limits.fused) if limits.fused is not None else None}}

    def said(f: Finding) -> Finding:
        """The finding with the fused estimate after whatever it says of the eye region's."""
        return f._replace(detail=f.detail + fused, data=data)

    if stale:
        return said(_fail(f"{detail}; {stale}", "the gate grants nobody until then: remove everyone "
                          "(`maskgate templates remove ID`) and enrol them again with this model"))
    if mode is not None and mode != 0o600:
        return said(_fail(f"{detail}; {key.name} had mode {mode:04o}, readable by others",
                          f"the key may have been copied: `sudo chmod 600 {key}` (opening has now set it), "
                          "then `maskgate templates rekey` so a copy opens nothing"))
    if cal is not None and not cal.separates:
        return said(_fail(f"{detail}: this model cannot tell these {len(set(ids))} people apart at "
                          f"match.stranger_rate = {ctx.cfg.match.stranger_rate:g}", CLAIM_HINT))
    if backlog:
        return said(_warn(f"{detail}, {len(backlog)} past expiry or retention",
                          "`maskgate templates purge` removes them (the gate already refuses them)"))
    if not reached:
        return said(_warn(f"{detail}: with {who} the model lets strangers in more often than "
                          f"match.stranger_rate = {ctx.cfg.match.stranger_rate:g}",
                          "the model card gives the rate for this many people; keep one gate's list to the "
                          "people who use that gate, or accept a higher match.stranger_rate knowingly"))
    if not people:
        return said(_warn(detail, "enrol someone: `maskgate enroll NAME --from camera --consent TEXT`"))
    return said(_ok(detail))
