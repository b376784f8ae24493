"""The gate: one approach at a time, from a face in view to a decision and the door.

    idle -> tracking -> challenge -> verify -> unlock -> cooldown -> idle
                 \\____________\\_________\\___> denied -> cooldown (-> lockout after repeated failures)

- tracking: one face, near and frontal enough ("one at a time" when a second face is as near);
  its embedding is taken over a few good frames *before* the challenge.
- challenge: the randomised liveness challenge (edge.liveness) on the same, continuous face.
- verify: embeddings over a few good frames *after* the challenge; they must agree with the ones
  from before (the face that answered is the face that matched), then 1:N search, score-fused.
- unlock: the relay pulses; cooldown keeps the same person from triggering twice.

Every decision is an event with a reason a technician can read; any exception inside a loop turn
becomes a denial with the door locked. Time is the frame's own clock, so a replay behaves as live.

Why one module of over 500 lines: the state machine is one class whose states share the approach
being judged; ``build`` and ``replay`` beside it are the two ways a gate is put together.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge import claim as claims
from edge import fusion, liveness
from edge.access import Rules
from edge.audit import AuditLog
from edge.calibration import calibrate
from edge.camera import Frame, frames
from edge.camera.replay import ReplaySource
from edge.clock import Clock, FixedClock
from edge.config import Config, VisionConfig, replace
from edge.display.follow import attach
from edge.door import open_door
from edge.embed import Embedder
from edge.errors import MaskgateError
from edge.fusion import FaceProbe
from edge.lifecycle import audit_door_events
from edge.match import Gallery, Match, cosine, decide, gate_threshold
from edge.vault import Vault
from edge.vision import geometry, landmarks
from edge.vision.landmarks import Face

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]

# Frontal enough to start an approach and to take an embedding.
MAX_YAW_DEG, MAX_PITCH_DEG = 15.0, 20.0
# The embeddings before and after the challenge must agree this well (cosine of their means). Lower
# than the match threshold on purpose: one person's eye region changes with expression (squint, raised
# brows) within seconds, and a face swapped in mid-approach is also caught by the fused search, whose
# mean over both halves an intruder's own frames drag down. Set from evaluation/eval_gate.py figures.
AGREEMENT_MIN = 0.3
# Frames of patience while collecting embeddings before giving up on an approach.
COLLECT_PATIENCE = 45


def near_and_frontal(face: Face, vision: VisionConfig) -> bool:
    """Near and frontal enough to start an approach and to take an embedding."""
    if geometry.pupil_distance(face.landmarks) < vision.min_pupil_distance_px:
        return False
    pose = geometry.head_pose(face.landmarks)
    return abs(pose.yaw) <= MAX_YAW_DEG and abs(pose.pitch) <= MAX_PITCH_DEG


def worth_embedding(face: Face, vision: VisionConfig) -> bool:
    """A frame the gate takes an embedding of while it collects (edge.bench counts the same frames)."""
    return near_and_frontal(face, vision) and geometry.eyes_open(face.landmarks)


def face_event(frame: Frame, face: Face, n_faces: int) -> dict[str, Any]:
    """The ``face`` event line of DESIGN.md for one frame's largest face."""
    pose = geometry.head_pose(face.landmarks)
    ear_r, ear_l = geometry.ears(face.landmarks)
    return {"t": round(frame.t, 3), "event": "face", "frame": frame.index,
            "box": [round(v, 1) for v in face.box], "faces": n_faces,
            "yaw": round(pose.yaw, 1), "pitch": round(pose.pitch, 1), "roll": round(pose.roll, 1),
            "ear_left": round(ear_l, 3), "ear_right": round(ear_r, 3),
            "pupil_distance": round(geometry.pupil_distance(face.landmarks), 1)}


@dataclass
class _Approach:
    """What the gate knows about the person in front of it during one approach."""

    started: float
    before: list[np.ndarray] = field(default_factory=list)
    after: list[np.ndarray] = field(default_factory=list)
    waited: int = 0
    steps: list[str] = field(default_factory=list)
    session: Any = None
    faces: list[Any] = field(default_factory=list)   # edge.fusion.FaceProbe of each embedded frame
    waiting: float | None = None   # claim mode: since when the face waits for a card or PIN


class Gate:
    """The decision state machine; feed it every frame with the faces found in it."""

    follower: Any = None   # edge.display.follow.Follower: the screen and sounds, told every event and frame

    def __init__(self, cfg: Config, vault: Any, embedder: Any, door: Any, audit: Any, emit: Emit,
                 challenges: list[str] | None = None, fault: str | None = None,
                 rng: random.Random | None = None, prompter: Any = None, face_model: Any = None,
                 clock: Any = None) -> None:
        self.cfg = cfg
        self.face_model = face_model   # edge.fusion.FaceModel; None: eye region only
        self.vault = vault          # None when it could not be opened (``fault`` says why)
        self.embedder = embedder    # None when the model could not be loaded
        self.door = door
        self.audit = audit
        self._emit = emit
        self.fixed_challenges = challenges
        self.fault = fault
        self.rng = rng or random.SystemRandom()
        self.prompter = prompter
        self.threshold = gate_threshold(1, embedder, cfg.match)[0]   # set again for the gallery's size when read
        self.state = "idle"
        self.now = 0.0  # the current frame's time, for events raised from inside a stage
        self._approach: _Approach | None = None
        self._until = 0.0  # end of cooldown / lockout
        self._failures = 0
        self._last_steps: list[str] | None = None
        self._gallery_src: Any = None
        self._limits: Any = None   # edge.fusion.Thresholds of the gallery, with a face model
        self._gallery = Gallery([], np.zeros((0, 1), np.float32))
        # Who may enter when (edge.access), judged by a clock the gate can trust (edge.clock).
        self.rules = Rules(cfg.access)
        self.clock = clock or Clock()
        self._clock_alarm: str | None = None
        # The latest decisions (replay's exit status, tests); bounded for a daemon that runs for months.
        self.decisions: deque[dict[str, Any]] = deque(maxlen=64)
        self._incoming: Any = None   # a claim from a reader thread (edge.claim), taken by the next frame
        self._claim: Any = None      # the claim waiting for (or used by) the current approach
        self._claim_t = 0.0

    # ---- claims (match.mode = claim / either) ----
    def present(self, claim: Any) -> None:
        """A card or PIN from a reader; safe to call from any thread (the next frame takes it)."""
        self._incoming = claim

    def _take_claim(self, t: float) -> None:
        claim, self._incoming = self._incoming, None
        if claim is not None:
            ignored = ("match.mode = identify" if self.cfg.match.mode == "identify"
                       else "locked out" if self.state == "lockout" and t < self._until else None)
            self.emit(t, "claim", claim=claim.describe(), source=claim.source,
                      **({"ignored": ignored} if ignored else {}))
            if not ignored:
                self._claim, self._claim_t = claim, t
        elif self._claim is not None and self.state in ("idle", "cooldown") \
                and t - self._claim_t > self.cfg.claim.timeout_s:
            self.emit(t, "claim", claim=self._claim.describe(), expired=True)
            self._claim = None

    def _claim_mode(self) -> bool:
        mode = self.cfg.match.mode
        return mode == "claim" or (mode == "either" and self._claim is not None)

    def _verify_claim(self, t: float, a: _Approach, same: float) -> None:
        """The face against the claimed person only (edge.claim.judge), at the one-person threshold."""
        j = claims.judge(self._claim, self.vault, np.stack(a.before + a.after), self.embedder,
                         self.cfg.match, self._name)
        if j.match is not None:
            self.emit(t, "match", who=self._name(j.match.person), score=round(j.match.score, 3),
                      threshold=round(j.threshold, 3), claimed=j.claimed, agreement=round(same, 3))
        if same < AGREEMENT_MIN:
            return self._deny(t, f"the face after the challenge is not the one before it ({same:.2f})")
        if j.reason is not None:
            return self._deny(t, j.reason, score=j.match.score if j.match else None,
                              **({"claimed": j.claimed} if j.claimed else {}))
        self._grant(t, j.match)

    # ---- events ----
    def emit(self, t: float, event: str, **fields: Any) -> None:
        line = {"t": round(t, 3), "event": event, **fields}
        self._emit(line)
        if self.follower is not None:
            self.follower.event(line)
        # Door events reach the audit log from the door itself (lifecycle.audit_door_events).
        if self.audit is not None and event in ("decision", "alarm", "error", "liveness"):
            try:
                self.audit.append(event, **{k: v for k, v in fields.items() if k != "t"})
            except MaskgateError as e:  # the gate keeps deciding even when the log cannot be written
                log.error("audit log: %s", e)

    # ---- the loop turn ----
    def process(self, frame: Frame, faces: list[Face]) -> None:
        """One frame. Never raises: a fault in any stage denies this approach and keeps the door locked."""
        self.now = frame.t
        try:
            self._step(frame, faces)
        except Exception as e:  # fail secure: whatever broke, nobody gets in on it
            log.exception("gate loop turn failed")
            self._lock_quietly()
            reason = f"internal error: {type(e).__name__}"
            self.emit(frame.t, "error", reason=reason)
            if self._approach is not None:
                self._deny(frame.t, reason, count=False)
        if self.follower is not None:
            self.follower.frame(frame.t, faces, self.state, frame.image)

    def _step(self, frame: Frame, faces: list[Face]) -> None:
        t = frame.t
        self._take_claim(t)
        if self.state in ("cooldown", "lockout"):
            if t < self._until:
                return
            if self.state == "lockout":
                self.emit(t, "alarm", kind="lockout_end")
                self._indicate("idle")
            self.state = "idle"
        face = self._the_face(t, faces)
        if self.state in ("cooldown", "lockout"):  # a second face just ended the approach
            return
        if self.state == "idle":
            if face is None or not near_and_frontal(face, self.cfg.vision):
                return
            self._approach = _Approach(started=t)
            self.state = "tracking"
            self.emit(t, "tracking")
            self._indicate("busy")
            if self.fault or self.embedder is None:  # nobody gets in on a broken install
                return self._deny(t, f"gate fault: {self.fault or 'no embedder'}", count=False)
            self._current_gallery()  # re-reads the vault if the CLI changed it (re-enrolled, say)
            stale = self.vault.stale_for(self.embedder.space) if self.vault is not None else None
            if stale:  # another model's templates: nobody can match, so say why instead
                return self._deny(t, f"gate fault: {stale}", count=False)
        assert self._approach is not None
        a = self._approach
        if self.state == "tracking":
            if face is None:
                return self._abandon(t, "face left before the challenge")
            if len(a.before) < self.cfg.match.frames:   # (enough already while it waits for a card)
                self._collect(frame, face, a.before, a)
            if len(a.before) >= self.cfg.match.frames:
                if self.cfg.match.mode == "claim" and self._claim is None:
                    return self._wait_for_claim(t, a)
                self._start_challenge(t, a)
            return
        if self.state == "challenge":
            verdict = a.session.update(frame, faces)
            if verdict is None:
                return
            self.emit(t, "liveness", passed=verdict.passed, step=verdict.step, reason=verdict.reason,
                      elapsed_s=round(verdict.elapsed_s, 3))
            if not verdict.passed:
                return self._deny(t, f"liveness: {verdict.reason}")
            self.state = "verify"
            a.waited = 0
            return
        if self.state == "verify":
            if face is None:
                return self._deny(t, "face lost after the challenge")
            self._collect(frame, face, a.after, a)
            if len(a.after) >= self.cfg.match.frames:
                self._verify(t, a)

    # ---- stages ----
    def _the_face(self, t: float, faces: list[Face]) -> Face | None:
        """The one face the gate serves, or None (nobody, or two people at once)."""
        if not faces:
            return None
        if landmarks.second_face(faces, faces[0]):   # two people at the gate
            if self.state in ("tracking", "challenge", "verify"):
                self._deny(t, "two faces: one person at a time")
            return None
        return faces[0]

    def _collect(self, frame: Frame, face: Face, into: list[np.ndarray], a: _Approach) -> None:
        """Add this frame's embedding when the face is good enough; give up after a while."""
        a.waited += 1
        if a.waited > COLLECT_PATIENCE:
            return self._deny(frame.t, "face never steady, near and frontal enough to recognise")
        if not worth_embedding(face, self.cfg.vision):
            return
        vec = self.embedder.embed_face(frame.image, face)
        if vec is not None:
            into.append(self.vault.protect(vec) if self.vault is not None else vec)
            if self.face_model is not None and self.vault is not None:   # the whole face, same frames
                fp = self.face_model.probe(frame.image, face.landmarks)
                e = None if fp.embedding is None else self.vault.protect_face(fp.embedding)
                a.faces.append(FaceProbe(e, fp.covered))

    def _wait_for_claim(self, t: float, a: _Approach) -> None:
        """Claim mode, a face and no card or PIN yet: ask for one before the challenge (answering a
        challenge the gate then refuses for want of a card wastes the resident's time). The frames
        taken before stay (the ones after the challenge must still agree with them), so the challenge
        starts at once when the card comes; the face leaving ends the wait."""
        if a.waiting is None:
            a.waiting = t
            self.emit(t, "waiting", on="claim")
        elif t - a.waiting > self.cfg.claim.timeout_s:
            self._deny(t, "no card or PIN presented (match.mode = claim)")

    def _start_challenge(self, t: float, a: _Approach) -> None:
        a.steps = list(self.fixed_challenges) if self.fixed_challenges else \
            liveness.draw_sequence(self.cfg.liveness, self.rng, self._last_steps)
        self._last_steps = a.steps
        self.state = "challenge"
        self.emit(t, "challenge", steps=a.steps)
        a.session = liveness.ChallengeSession(a.steps, self.cfg.liveness,
                                              prompter=_EventPrompter(self, self.prompter))

    def _current_gallery(self) -> Gallery:
        """The vault's templates as a search index, rebuilt only when the vault changed."""
        if self.vault is None:
            return self._gallery
        src = self.vault.gallery()  # re-reads the file when the CLI changed it
        if src is not self._gallery_src:
            self._gallery_src = src
            self._gallery = Gallery(*src)
            if self.face_model is not None:  # the same rule as identify and diag vault
                self._limits = fusion.thresholds(src, self.vault.face_gallery(self.face_model.space),
                                                 self.face_model, self.embedder, self.cfg.match)
                cal = self._limits.eye
            else:
                cal = calibrate(*src, self.embedder, self.cfg.match)
            self.threshold = cal.threshold
            if cal.separates and cal.model_reached:
                log.info("%s", cal.summary())
            else:
                log.warning("%s: the face alone does not keep strangers out at match.stranger_rate = %g "
                            "(maskgate diag vault)", cal.summary(), self.cfg.match.stranger_rate)
        return self._gallery

    def _verify(self, t: float, a: _Approach) -> None:
        gallery = self._current_gallery()
        fault = getattr(self.vault, "fault", None)
        if fault:
            return self._deny(t, f"template vault unreadable: {fault}")
        same = cosine(np.mean(a.before, axis=0), np.mean(a.after, axis=0))
        if self._claim_mode():
            return self._verify_claim(t, a, same)
        match, threshold, used = self._search(gallery, np.stack(a.before + a.after), a)
        self.emit(t, "match", who=self._name(match.person), score=round(match.score, 3),
                  runner_up=round(match.runner_up, 3), agreement=round(same, 3), used=used)
        if same < AGREEMENT_MIN:
            return self._deny(t, f"the face after the challenge is not the one before it ({same:.2f})")
        if not decide(match, threshold):
            why = "no one enrolled" if match.person is None else "not recognised"
            return self._deny(t, why, score=match.score)
        self._grant(t, match)

    def _search(self, gallery: Gallery, probes: np.ndarray, a: _Approach) -> tuple[Match, float, str]:
        """Eye region alone, or fused with the whole face when the approach showed its lower face."""
        if self.face_model is None or self.vault is None:
            return gallery.search(probes), self.threshold, "eye"

        return fusion.search(gallery, self._gallery_src, self.vault.face_gallery(self.face_model.space),
                             probes, a.faces, self.face_model, self._limits)

    def _access_refused(self, t: float, person_id: str | None) -> str | None:
        """Why the access rules keep this recognised person out at this moment (edge.access), or None."""
        if self.vault is None or person_id is None:
            return None
        person = self.vault.find(person_id)
        untrusted = self.clock.untrusted() if self.rules.needs_clock(person) else None
        if untrusted != self._clock_alarm and self.rules.needs_clock(person):  # said once per change
            self.emit(t, "alarm", kind="clock", active=untrusted is not None, detail=untrusted or "trusted")
            self._clock_alarm = untrusted
        when = self.clock.local(t)
        verdict = self.rules.judge(person, when, trusted=untrusted is None)
        log.info("access rules at %s: %s", f"{when:%a %Y-%m-%d %H:%M}", verdict)
        return None if verdict.allowed else verdict.reason

    # ---- outcomes ----
    def _name(self, person: str | None) -> str | None:
        if person is None or self.vault is None:
            return person
        try:
            return self.vault.name_of(person) or person
        except Exception:
            return person

    def _decision(self, t: float, granted: bool, who: str | None, score: float | None, reason: str,
                  **extra: Any) -> None:
        d = {"granted": granted, "who": who, "score": None if score is None else round(score, 3),
             "reason": reason, **extra}
        if self._claim is not None:  # one claim, one decision
            d["claim"] = self._claim.describe()
            self._claim = None
        self.decisions.append({"t": t, **d})
        self.emit(t, "decision", **d)

    def _grant(self, t: float, match: Match) -> None:
        refused = self._access_refused(t, match.person)  # identify and claim mode alike
        if refused:  # recognised, but not now: no failure towards a lock-out
            return self._deny(t, refused, score=match.score, count=False, who=self._name(match.person),
                              person=match.person)
        # The relay first: the audit line (two fsyncs) and the last-seen time (a vault write) come
        # after the door has opened, not between the decision and the resident.
        try:
            if self.cfg.door.mode == "relay":
                self.door.grant()
            else:  # Wiegand out: the keeper sends the person's card (edge.wiegand_out)
                self.door.grant(card=self._card(match.person))
        except MaskgateError as e:  # the keeper is unreachable: nobody is let in, and it is said
            return self._deny(t, f"door: {e}", score=match.score, count=False)
        who = self._name(match.person)
        self._decision(t, True, who, match.score, "recognised and live", person=match.person)
        self._failures = 0
        self.emit(t, "door", action="unlock", by="grant", open_s=self.cfg.door.open_s)
        self._indicate("idle")  # under "open" while the relay is on, and after it
        if self.vault is not None and match.person is not None:
            try:
                self.vault.touch(match.person)
            except Exception as e:  # a last-seen time is not worth a locked-out resident
                log.warning("vault: could not record last-seen time: %s", e)
        self._end(t, "cooldown", self.cfg.gate.cooldown_s)

    def _card(self, person_id: str | None) -> str | None:
        """The person's card number as the vault keeps it (canonical), for Wiegand out; None if none."""
        if self.vault is None or person_id is None:
            return None
        person = self.vault.find(person_id)
        return getattr(person, "card", None) if person is not None else None

    def _deny(self, t: float, reason: str, score: float | None = None, count: bool = True,
              who: str | None = None, **extra: Any) -> None:
        self._lock_quietly()
        self._decision(t, False, who, score, reason, **extra)
        if count:
            self._failures += 1
        if self._failures >= self.cfg.gate.max_failures:
            self.emit(t, "alarm", kind="lockout", failures=self._failures, seconds=self.cfg.gate.lockout_s)
            self._failures = 0
            self._indicate("lockout", "denied")
            return self._end(t, "lockout", self.cfg.gate.lockout_s)
        self._indicate("idle", "denied")
        self._end(t, "cooldown", self.cfg.gate.cooldown_s)

    def _abandon(self, t: float, reason: str) -> None:
        """The person walked away before anything was asked: no decision, no failure."""
        log.info("approach abandoned: %s", reason)
        self._approach = None
        self.state = "idle"
        self._indicate("idle")

    def _indicate(self, *patterns: str) -> None:
        """The LED / buzzer (docs/installer.md, "LED and buzzer"): a steady state, then a one-off pattern over it. "idle"
        shows the fault pattern while the audit log cannot be written."""
        for p in patterns:
            if p == "idle" and getattr(self.audit, "failing", False) is True:
                p = "fault"
            try:
                self.door.indicate(p)
            except Exception as e:  # noqa: BLE001 - a light is never worth a decision
                log.warning("door.indicate(%s): %s", p, e)

    def _end(self, t: float, state: str, seconds: float) -> None:
        self._approach = None
        self.state = state
        self._until = t + seconds

    def _lock_quietly(self) -> None:
        try:
            self.door.lock()
        except Exception:
            log.exception("could not lock the door")

    def close(self) -> None:
        self._lock_quietly()
        if self.follower is not None:   # the last chime heard out, the screen it opened closed
            self.follower.close()


class _EventPrompter:
    """Prompts as ``challenge`` event lines, passed on to the gate's own prompter (screen, LED, log)."""

    def __init__(self, gate: Gate, inner: Any = None) -> None:
        self.gate = gate
        self.inner = inner

    def show(self, step: str | None) -> None:
        if step is not None:
            self.gate.emit(self.gate.now, "challenge", step=step)
        if self.inner is not None:
            self.inner.show(step)

    def close(self) -> None:
        if self.inner is not None:
            self.inner.show(None)


# ---- wiring for the daemon, replay and demo ----

def build(cfg: Config, state: Path, door: Any, audit: Any, emit: Emit, challenges: list[str] | None = None,
          prompter: Any = None, clock: Any = None) -> Gate:
    """A gate on the state directory's vault and the installed model.

    A model that will not load or a vault that will not open does not stop the gate: it runs, says
    why on every approach, and grants nobody (the exit button and alternative entry still work), and
    the vault file is left exactly as it was.
    """
    faults = []
    embedder = vault = None
    try:
        embedder = Embedder(cfg.embed)
    except MaskgateError as e:
        faults.append(str(e))
    try:
        vault = Vault.open(state, cfg.vault)
    except MaskgateError as e:
        faults.append(str(e))

    face_model = fusion.load(cfg.embed) if embedder is not None else None
    stale = vault.stale_for(embedder.space) if vault is not None and embedder is not None else None
    if stale:  # not a fault of the install: re-enrolling fixes it while the gate runs
        log.error("%s", stale)
        emit({"t": 0.0, "event": "error", "reason": stale})
    for f in faults:
        log.error("%s", f)
        emit({"t": 0.0, "event": "error", "reason": f})
    return Gate(cfg, vault, embedder, door, audit, emit, challenges=challenges,
                fault="; ".join(faults) or None, prompter=prompter, face_model=face_model, clock=clock)


def replay(video: Path, cfg: Config, state: Path, emit: Emit, challenges: list[str] | None = None,
           claim: str | None = None, at: Any = None, display: Any = None) -> list[dict[str, Any]]:
    """Run the whole gate over a recording as fast as it decodes, relay on mock pins, every event to
    ``emit``; the decisions it came to (none when nobody completed an approach).

    ``claim``: a card number presented at the start of the recording (match.mode claim / either).
    ``at`` (a local ``datetime``): the recording starts then, and the access rules are judged by that
    clock, trusted (``replay --at``); without it, by this machine's clock as the gate would.
    """
    card = None
    if claim is not None:
        card = claims.card(claim, source="replay")  # a bad number fails before the video is opened
    source = ReplaySource(video, realtime=display is not None)   # a screen is watched at the clip's pace
    state.mkdir(parents=True, exist_ok=True)
    audit = AuditLog(state, cfg.audit)
    door = open_door(replace(cfg, "door", backend="mock").door)
    audit_door_events(door, audit)

    gate = build(cfg, state, door, audit, emit, challenges=challenges,
                 clock=FixedClock(at) if at is not None else None)
    if display is not None:
        attach(gate, cfg, door, display)
    if card is not None:
        gate.present(card)
    try:
        with landmarks.for_video(cfg.vision) as lm:
            for frame in frames(source):
                faces = lm.detect(frame.image)
                if faces:
                    emit(face_event(frame, faces[0], len(faces)))
                gate.process(frame, faces)
    finally:
        gate.close()
        door.close()
    return list(gate.decisions)
