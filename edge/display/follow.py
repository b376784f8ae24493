"""The resident's side of the gate: follows the gate's events and frames and keeps the screen and the
sounds in step with them.

It is told three things: every gate event (``event``), every door event (``door_event``: the
held-open alarm), and every frame with its faces and the gate's state (``frame``: too far, too close,
one person at a time, countdowns). It draws only when what is shown changes, so a framebuffer write
happens a few times a second at most. A screen or speaker that fails is logged once and dropped:
the gate's decisions never wait on them.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edge.display import messages as M
from edge.display.backends import open_display
from edge.display.i18n import translator
from edge.display.messages import Screen
from edge.display.render import Renderer
from edge.errors import MaskgateError
from edge.liveness import timeout_for
from edge.sound import Player
from edge.vision import geometry, landmarks

log = logging.getLogger(__name__)

# Pupil distance as a fraction of the frame width beyond which the face is too close to judge well.
TOO_CLOSE_FRAC = 0.30


class Follower:
    """Screens and sounds for the gate's states."""

    def __init__(self, cfg: Any, display: Any, renderer: Any, player: Any = None,
                 owns_display: bool = True) -> None:
        self.cfg = cfg                       # the whole Config: display, liveness, vision, gate, door
        self.display = display
        self.owns_display = owns_display     # False: the caller's (demo, replay), closed by the caller
        self.renderer = renderer
        self.player = player
        self.screen = Screen("idle")
        self.shown: Screen | None = None
        self._until = 0.0                    # an outcome screen stays until then
        self._sticky: Screen | None = None   # lockout / fault / held open: until cleared
        self._steps: list[str] = []
        self._step_i = 0
        self._step_t = 0.0
        self._lock_end = 0.0
        self._held = False
        self._claim: str | None = None       # "card" / "pin": a claim the gate holds (claim mode)
        self._failed = False
        self.now = 0.0

    # ---- inputs ----
    def event(self, ev: dict[str, Any]) -> None:
        """A gate event line (edge.gate); never raises."""
        try:
            self._event(ev)
        except Exception:
            log.exception("display: event %s", ev.get("event"))

    def _event(self, ev: dict[str, Any]) -> None:
        t, kind = float(ev.get("t", self.now)), ev.get("event")
        self.now = max(self.now, t)
        if kind == "tracking":
            if self.cfg.match.mode == "claim" and self._claim is None:
                self._play("say:claim")   # the face alone will not do: say so while they look
                self._set(Screen("claim"))
            else:
                self._set(Screen("checking"))
        elif kind == "waiting":   # claim mode: the gate holds the challenge until a card or PIN
            self._set(self._idle())
        elif kind == "claim" and not ev.get("ignored"):
            if ev.get("expired"):
                self._claim = None
                if self.screen.kind == "claim_read":
                    self._set(self._idle())
            else:
                self._claim = "pin" if ev.get("claim") == "PIN" else "card"
                self._play("tick")
                if self.screen.kind in ("idle", "claim", "claim_read", "too_far", "too_close", "denied"):
                    self._until = 0.0   # a new card ends the last denial's screen
                    self._set(self._idle())
        elif kind == "challenge" and "steps" in ev:
            self._steps, self._step_i = list(ev["steps"]), 0
        elif kind == "challenge" and ev.get("step"):
            self._step_i += 1
            self._step_t = t
            self._play("tick", "say:" + ev["step"])
            self._set(self._challenge(ev["step"], t))
        elif kind == "liveness" and ev.get("passed"):
            self._set(Screen("checking"))
        elif kind == "decision":
            if "claim" in ev:   # the gate used up its claim on this decision
                self._claim = None
            self._decision(t, ev)
        elif kind == "alarm" and ev.get("kind") == "lockout":
            self._lock_end = t + float(ev.get("seconds", self.cfg.gate.lockout_s))
            self._sticky = self._lockout(t)
            self._set(self._sticky)
        elif kind == "alarm" and ev.get("kind") == "lockout_end":
            self._lock_end = 0.0
            self._sticky = None
            self._set(self._idle())
        elif kind == "error" and t == 0.0:   # the gate was built broken: it grants nobody
            self._sticky = Screen("fault")
            self._set(self._sticky)

    def door_event(self, ev: dict[str, Any]) -> None:
        """A door event (edge.door): the held-open alarm raised or cleared; a USB stick dealt with
        (the keeper played "done" for edge.usb), shown for ``display.result_s``."""
        if ev.get("event") == "stick" and ev.get("action") == "done":
            self._until = self.now + max(2.0, self.cfg.display.result_s)
            self._set(Screen("stick_done"))
        elif ev.get("event") == "alarm" and ev.get("alarm") == "held_open":
            self._held = bool(ev.get("active"))
            if self._held:
                self._play("say:held_open")
            self._set(Screen("held_open") if self._held else self._base())

    def frame(self, t: float, faces: list, state: str, image: np.ndarray | None = None) -> None:
        """Every frame: countdowns, and what to tell someone the gate is not yet serving; never raises."""
        try:
            self._frame(t, faces, state, image)
        except Exception:
            log.exception("display: frame")

    def _frame(self, t: float, faces: list, state: str, image: np.ndarray | None) -> None:
        self.now = t
        if self._held:
            screen = Screen("held_open")
        elif self.screen.kind == "challenge" and state == "challenge":
            screen = self._challenge(self.screen.step or "blink", t)
        elif self._sticky is not None and self._sticky.kind == "lockout":
            screen = self._lockout(t) if t < self._lock_end else self._idle()
            self._sticky = screen if screen.kind == "lockout" else None
        elif self._sticky is not None:
            screen = self._sticky
        elif t < self._until:
            screen = self.screen
        elif state in ("idle", "cooldown"):
            screen = self._approach(faces, image)
        else:
            screen = self.screen
        self._set(screen, image if self.cfg.display.preview else None)

    # ---- screens ----
    def _challenge(self, step: str, t: float) -> Screen:
        left = max(0, int(np.ceil(timeout_for(step, self.cfg.liveness) - (t - self._step_t))))
        return Screen("challenge", step=step, n=self._step_i, total=len(self._steps), seconds=left)

    def _lockout(self, t: float) -> Screen:
        return Screen("lockout", seconds=int(np.ceil(max(0.0, self._lock_end - t))))

    def _decision(self, t: float, ev: dict[str, Any]) -> None:
        hold = max(2.0, self.cfg.display.result_s)
        if ev.get("granted"):
            name = ev.get("who") if self.cfg.display.show_name else None
            self._set(Screen("welcome", name=name))
            self._play("granted", "say:welcome")
            self._until = t + hold
            return
        why = M.denial(str(ev.get("reason", "")))
        self._play("denied", "say:fault" if why == "fault" else f"say:denied-{why}")
        if why == "fault":
            self._sticky = None
            self._set(Screen("fault"))
        else:
            self._set(Screen("denied", reason=why))
        self._until = t + hold

    def _idle(self) -> Screen:
        """Nobody served yet: look at the camera; in claim mode first the card or PIN, and once one
        is read, the face."""
        if self._claim is not None:
            return Screen("claim_read", reason=self._claim)
        return Screen("claim") if self.cfg.match.mode == "claim" else Screen("idle")

    def _approach(self, faces: list, image: np.ndarray | None) -> Screen:
        if not faces:
            return self._idle()
        if landmarks.second_face(faces, faces[0]):
            return Screen("one_person")
        pd = geometry.pupil_distance(faces[0].landmarks)
        if pd < self.cfg.vision.min_pupil_distance_px:
            return Screen("too_far")
        width = image.shape[1] if image is not None and image.size else self.cfg.camera.width
        if pd > TOO_CLOSE_FRAC * width:
            return Screen("too_close")
        return self._idle()

    def _base(self) -> Screen:
        return self._sticky or self._idle()

    # ---- outputs ----
    def _set(self, screen: Screen, preview: np.ndarray | None = None) -> None:
        self.screen = screen
        if screen == self.shown and preview is None:
            return
        self.shown = screen
        if self._failed:
            return
        try:
            self.display.show(self.renderer.render(screen, preview))
        except Exception as e:   # a broken screen must not stop the gate
            log.error("display: %s; no more screens this run", e)
            self._failed = True

    def _play(self, *names: str) -> None:
        if self.player is not None:
            try:
                self.player.play(*names)
            except Exception as e:
                log.warning("sound: %s", e)

    def close(self) -> None:
        """The last sound played to its end; the screen closed when this follower opened it."""
        for part in (self.player, self.display if self.owns_display else None):
            if part is not None:
                try:
                    part.close()
                except Exception:
                    log.exception("closing %s", type(part).__name__)


def make_follower(cfg: Any, display: Any = None) -> Follower | None:
    """The follower for ``[display]`` and ``[sound]``; None when both are off."""
    dcfg = cfg.display
    tr = translator(dcfg.language)
    player = Player(cfg.sound, dcfg.language)
    owns = display is None
    if display is None:
        if dcfg.backend == "none" and not player.enabled:
            return None
        display = open_display(dcfg)
    renderer = Renderer(display.size, dcfg.language, tr, dcfg.font)
    return Follower(cfg, display, renderer, player, owns_display=owns)


def attach(gate: Any, cfg: Any, door: Any = None, display: Any = None) -> Follower | None:
    """Give ``gate`` its screen and sounds (and the door's alarms); a display that cannot be opened
    is logged and left out: residents lose the screen, not the gate."""
    try:
        follower = make_follower(cfg, display)
    except (MaskgateError, ImportError, OSError) as e:
        log.error("display: %s; the gate runs without a screen", e)
        return None
    if follower is None:
        return None
    gate.follower = follower
    if getattr(gate, "fault", None):   # built broken: grants nobody, so say so from the start
        follower.event({"t": 0.0, "event": "error", "reason": gate.fault})
    if door is not None and hasattr(door, "on_event"):
        door.on_event(follower.door_event)
    return follower
