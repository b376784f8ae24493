"""``maskgate enroll NAME --from SOURCE... --consent TEXT`` and ``templates add``: their lines and exit status.

The work (quality gates, liveness, consent, the vault, the audit entry) is ``edge.enroll.enroll`` and
``add_templates``; ``maskgate demo`` enrols its person through ``enroll`` too and shows the same lines
(``enrolled_line``, ``warn``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edge import enroll
from edge.calibration import CLAIM_HINT
from edge.config import Config

log = logging.getLogger(__name__)


def enroll_cli(name: str, sources: list[str], consent: str, cfg: Config, state: Path, out: Any,
               operator: str = "", expires: str | None = None, embedder: Any = None,
               card: str | None = None, pin: bool = False, allow_look_alike: bool = False,
               groups: list[str] | None = None, valid_from: str | None = None,
               valid_until: str | None = None) -> int:
    """``maskgate enroll NAME --from SOURCE... --consent TEXT [--card N] [--pin] [--group G]...``: 0 enrolled,
    1 liveness failed, 2 bad input."""
    r = enroll.enroll(name, sources, consent, cfg, state, out.text, operator=operator, expires=expires,
                      embedder=embedder, card=card, pin=pin, allow_look_alike=allow_look_alike, groups=groups,
                      valid_from=valid_from, valid_until=valid_until)
    if r.person is None:
        out.event({"enrolled": False, "name": r.name, "reason": f"liveness failed: {r.reason}"}, enrolled_line(r))
        return 1
    out.event({"enrolled": True, "person": r.person, "name": r.name, "templates": r.templates,
               "good_frames": r.good_frames, "frames": r.frames, "look_alike": r.look_alike}, enrolled_line(r))
    warn(r, cfg, out)
    return 0


def enrolled_line(r: enroll.Enrolled) -> str:
    """The enrolment's outcome for a person reading the terminal."""
    if r.person is None:
        return f"not enrolled: liveness failed ({r.reason})"
    return f"enrolled {r.name} as {r.person}: {r.templates} templates from {r.good_frames} good frames"


def warn(r: enroll.Enrolled, cfg: Config, out: Any) -> None:
    """What the administrator must know after an enrolment: the face alone no longer separates the
    site's people (claim mode needed), or the new person resembles someone enrolled."""
    if r.site is not None:
        out.text(f"warning: with {r.name} enrolled, {r.site}: the face alone cannot keep strangers "
                 f"out at match.stranger_rate = {cfg.match.stranger_rate:g} here; {CLAIM_HINT}")
        if out.json:   # no human text under --json: say it on stderr
            log.warning("site calibration after enrolling %s: %s; %s", r.name, r.site, CLAIM_HINT)
    alike = r.look_alike
    if alike:
        out.text(f"warning: {r.name} resembles {alike['name']} to this model ({alike['score']:.2f}, the gate's "
                 f"threshold is {alike['threshold']:.2f}): either may be let in as the other. If they are one "
                 "person under two names, remove one (maskgate templates remove)")


def add_templates_cli(person: str, sources: list[str], cfg: Config, state: Path, out: Any, embedder: Any = None,
                      allow_look_alike: bool = False) -> int:
    """``maskgate templates add PERSON --from SOURCE...``: 0 added, 1 liveness failed, 2 bad input or the
    frames match someone else better."""
    r = enroll.add_templates(person, sources, cfg, state, out.text, embedder=embedder,
                             allow_look_alike=allow_look_alike)
    if not r.added:   # nothing added without an EnrollError: the liveness challenge failed
        out.event({"added": 0, "person": r.person, "reason": f"liveness failed: {r.reason}"},
                  f"nothing added: liveness failed ({r.reason})")
        return 1
    out.event({"person": r.person, "name": r.name, "added": r.added, "templates": r.templates,
               "good_frames": r.good_frames, "own_score": round(r.own_score, 3)},
              f"added {r.added} templates to {r.name or r.person} ({r.templates} now) from {r.good_frames} good "
              f"frames; closest to their earlier templates: {r.own_score:.2f}")
    return 0
