"""The liveness challenge: ask for something unpredictable and check a live 3D face did it.

A session draws a random sequence of steps (blink, turn-left, turn-right), measures the person's own
open-eye and frontal baseline before showing the first prompt, then follows the same face through
every step. A step fails on a timeout, on the wrong action (a turn to the other side), when the face
is lost, jumps or another face takes over, and, for turns, when the landmark motion is that of a flat
or curled sheet rather than a head (the nose tip must move against the eye line by parallax).

Timing uses ``Frame.t`` only, so a recording judged as fast as it decodes behaves like the camera.
Directions are the person's own: turn-left means their left (yaw > 0 in ``edge.vision.geometry``).
"""

from __future__ import annotations

import itertools
import logging
import random
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from edge.camera import Frame
from edge.config import Config, LivenessConfig
from edge.errors import ConfigError
from edge.vision import geometry, landmarks
from edge.vision.landmarks import Face

log = logging.getLogger(__name__)

STEPS = ("blink", "turn-left", "turn-right")

# ---- timing and thresholds (measured on the LivePortrait clips; see evaluation/eval_liveness.py) ----
BASELINE_S = 0.4          # frontal, eyes-open frames gathered before the first prompt
FRONTAL_DEG = 15.0        # the baseline only counts frames this close to the camera's axis
BLINK_DIP = 0.6           # both eyes' EAR below this fraction of the baseline: closed
BLINK_OPEN = 0.8          # both eyes back above this fraction: open again
BLINK_MIN_S, BLINK_MAX_S = 0.08, 0.5   # human blink closure (Soukupova & Cech; VanderWerf 2003)
SQUASH_TOL = 0.12         # face height/width may change this much during a blink (a tilted photo squashes)
RETURN_FRAC = 0.5         # a turn has returned when yaw is back within this fraction of the threshold
NOSE_PARALLAX = 0.004     # nose-tip shift off the brow-nose-bridge line, pupil distances per degree of yaw
PLANAR_RESIDUAL = 0.012   # homography residual (pupil distances) a flat sheet stays under
MAX_GAP_S = 0.3           # longest absence of the face before the track counts as lost
JUMP_FRAC = 0.5           # centre moving more than this fraction of the face width in one frame
JUMP_SCALE = (0.75, 1.33)  # the face's size changing beyond these factors in one frame

# Stable, textured landmarks a flat print would carry rigidly: brows, eye corners, nose, mouth corners.
RIGID = (70, 105, 107, 336, 334, 300, 33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 2, 98, 327,
         61, 291, 0, 17, 152, 234, 454, 10, 151, 9)
BROW_MID, BRIDGE, NOSE_TIP = 9, 168, 1


@dataclass(frozen=True)
class Verdict:
    """How a challenge ended: ``step`` is the one that failed (None when passed or before any step)."""

    passed: bool
    step: str | None
    reason: str
    elapsed_s: float


def sequences(cfg: LivenessConfig) -> list[tuple[str, ...]]:
    """Every sequence the config can ask for; a replayed recording answers one of them by chance.

    With ``require_blink`` (the default) only sequences holding a blink: a turn alone can be faked by a
    print curled round a cylinder and turned the asked way, a blink cannot (evaluation/eval_liveness.py).
    """
    every = list(itertools.product(cfg.challenges, repeat=cfg.steps))
    if cfg.require_blink and "blink" in cfg.challenges:
        return [s for s in every if "blink" in s]
    return every


def timeout_for(step: str | None, cfg: LivenessConfig) -> float:
    """How long a step may take: a turn is up, held and back, slower than a blink in older people."""
    return cfg.turn_timeout_s if step in ("turn-left", "turn-right") else cfg.step_timeout_s


def draw_sequence(cfg: LivenessConfig, rng: random.Random | None = None,
                  previous: list[str] | None = None) -> list[str]:
    """A random sequence of ``cfg.steps`` steps, never the ``previous`` one (so a recording of the last
    attempt cannot be replayed straight away)."""
    rng = rng or random.SystemRandom()
    options = [s for s in sequences(cfg) if previous is None or list(s) != list(previous)]
    if not options:  # one challenge, one step: nothing else to ask
        log.warning("liveness config allows a single sequence; a replayed recording would pass it")
        options = sequences(cfg)
    return list(rng.choice(options))


# ---- prompts ----

PROMPT_TEXT = {"blink": "Please blink", "turn-left": "Turn your head to your left",
               "turn-right": "Turn your head to your right"}


class Prompter(Protocol):
    """Shows the person what to do; ``show(None)`` clears the prompt."""

    def show(self, step: str | None) -> None: ...

    def close(self) -> None: ...


class LogPrompter:
    """Prompts as log lines (and as lines to ``say``, for a person at the terminal)."""

    def __init__(self, say: Callable[[str], None] | None = None) -> None:
        self.say = say

    def show(self, step: str | None) -> None:
        if step is None:
            return
        log.info("prompt: %s", PROMPT_TEXT[step])
        if self.say is not None:
            self.say(f"challenge: {PROMPT_TEXT[step]}")

    def close(self) -> None:
        pass


def gui_available() -> bool:
    """Whether this OpenCV build can open windows (opencv-python-headless cannot)."""
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip().upper() != "NONE"
    return False


def render_prompt(step: str | None, size: tuple[int, int] = (480, 800)) -> np.ndarray:
    """The prompt image (BGR, in memory): the instruction and, for turns, an arrow to the side to turn to."""
    import cv2

    h, w = size
    img = np.zeros((h, w, 3), np.uint8)
    if step is None:
        return img
    text = PROMPT_TEXT[step]
    tsize = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.2, 2)[0]
    cv2.putText(img, text, ((w - tsize[0]) // 2, h // 4), cv2.FONT_HERSHEY_SIMPLEX, 1.2,
                (255, 255, 255), 2, cv2.LINE_AA)
    cy, cx, half = h * 3 // 5, w // 2, w // 4
    if step == "blink":
        cv2.ellipse(img, (cx, cy), (half // 2, half // 5), 0, 0, 360, (255, 255, 255), 4)
    else:  # the person faces the screen: their left is the screen's left
        tip = cx - half if step == "turn-left" else cx + half
        cv2.arrowedLine(img, (cx, cy), (tip, cy), (0, 255, 255), 10, tipLength=0.3)
    return img


class WindowPrompter:
    """Text and an arrow in an OpenCV window on the gate's display; drawn in memory, never saved."""

    NAME = "maskgate"

    def __init__(self, size: tuple[int, int] = (480, 800), fullscreen: bool = True) -> None:
        import cv2

        if not gui_available():
            raise ConfigError("liveness.prompt = \"window\" needs OpenCV with GUI support, but this is "
                              "opencv-python-headless: install opencv-python (or the OS python3-opencv) "
                              "in its place, or set liveness.prompt to \"log\" or \"led\"")
        self._cv2 = cv2
        self.h, self.w = size
        try:
            cv2.namedWindow(self.NAME, cv2.WINDOW_NORMAL)
            if fullscreen:
                cv2.setWindowProperty(self.NAME, cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_FULLSCREEN)
        except cv2.error as e:
            raise ConfigError(f"cannot open a window for the liveness prompt ({e}); is a display "
                              "attached and DISPLAY/WAYLAND_DISPLAY set? Or set liveness.prompt = \"log\"")

    def show(self, step: str | None) -> None:
        self._cv2.imshow(self.NAME, render_prompt(step, (self.h, self.w)))
        self._cv2.waitKey(1)

    def close(self) -> None:
        self._cv2.destroyWindow(self.NAME)


class LedPrompter:
    """A status-LED pattern through gpiozero: fast flicker = blink, long-on = turn left,
    short-on = turn right (the sign beside the camera explains the code)."""

    PATTERNS = {"blink": (0.1, 0.1), "turn-left": (0.6, 0.2), "turn-right": (0.2, 0.6)}

    def __init__(self, pin: int, pin_factory: Any = None) -> None:
        from gpiozero import LED

        try:
            self.led = LED(pin, pin_factory=pin_factory)
        except Exception as e:  # gpiozero raises its own tree; ours says what to fix
            raise ConfigError(f"cannot drive the prompt LED on GPIO {pin} ({e}); check door.led_pin "
                              "or set liveness.prompt = \"log\"") from None

    def show(self, step: str | None) -> None:
        if step is None:
            self.led.off()
        else:
            on, off = self.PATTERNS[step]
            self.led.blink(on_time=on, off_time=off, background=True)

    def close(self) -> None:
        self.led.off()
        self.led.close()


class DoorLedPrompter:
    """The same LED code shown by the door (the keeper owns the LED pin): ``door.indicate``."""

    def __init__(self, door: Any) -> None:
        self.door = door

    def show(self, step: str | None) -> None:
        self.door.indicate("busy" if step is None else f"prompt-{step}")

    def close(self) -> None:
        self.door.indicate("idle")


def make_prompter(cfg: Config, say: Callable[[str], None] | None = None, pin_factory: Any = None,
                  door: Any = None) -> Prompter:
    """The prompter the config names (``[liveness] prompt``; the LED is ``[door] led_pin``, shown
    through ``door`` when the gate has one, since the door keeper owns that pin)."""
    if cfg.liveness.prompt == "window":
        return WindowPrompter()
    if cfg.liveness.prompt == "led":
        if cfg.door.led_pin is None:
            raise ConfigError("liveness.prompt = \"led\" needs door.led_pin set to the LED's GPIO number")
        if door is not None:
            return DoorLedPrompter(door)
        return LedPrompter(cfg.door.led_pin, pin_factory=pin_factory)
    return LogPrompter(say)


# ---- measurements on one face ----

def nose_offset(landmarks: np.ndarray) -> float:
    """Signed distance of the nose tip from the brow-mid -> nose-bridge line, in pupil distances.

    Any homography keeps collinear points collinear, and a sheet curled round a vertical cylinder
    carries the face's centre line as one rigid line: only a nose standing out of the face moves off it.
    """
    a, b, n = landmarks[BROW_MID, :2], landmarks[BRIDGE, :2], landmarks[NOSE_TIP, :2]
    u = (b - a) / (np.linalg.norm(b - a) + 1e-9)
    v = n - a
    return float((u[0] * v[1] - u[1] * v[0]) / (_scale(landmarks) + 1e-9))


def _scale(landmarks: np.ndarray) -> float:
    """Outer eye-corner distance: a face size steadier than the pupils, which jump during blinks."""
    return float(np.linalg.norm(landmarks[geometry.R_EYE_OUTER, :2] - landmarks[geometry.L_EYE_OUTER, :2]))


def jumped(prev: Face, face: Face) -> str | None:
    """Why ``face`` cannot be ``prev`` one frame later (None: it can): its centre moved more than
    ``JUMP_FRAC`` of the face's width, or its size changed beyond ``JUMP_SCALE``. The one rule for
    following a person: the challenge (``ChallengeSession``) and enrolment's capture after it."""
    moved = np.hypot(face.center[0] - prev.center[0], face.center[1] - prev.center[1])
    if moved > JUMP_FRAC * (prev.box[2] - prev.box[0]):
        return "face jumped (position)"
    grow = _scale(face.landmarks) / (_scale(prev.landmarks) + 1e-9)
    if not JUMP_SCALE[0] < grow < JUMP_SCALE[1]:
        return "face jumped (size)"
    return None


def face_aspect(landmarks: np.ndarray) -> float:
    """Forehead-chin length over eye-corner width: constant through a real blink."""
    return float(np.linalg.norm(landmarks[geometry.FOREHEAD, :2] - landmarks[geometry.CHIN, :2])
                 / (_scale(landmarks) + 1e-9))


def planar_residual(a: np.ndarray, b: np.ndarray) -> float:
    """RMS error of the best homography from landmarks ``a`` to ``b`` (rigid subset), in face widths.

    A printed photo or a screen moves its landmarks by one homography; a head turning shows parallax.
    """
    import cv2

    pa = a[list(RIGID), :2].astype(np.float64)
    pb = b[list(RIGID), :2].astype(np.float64)
    H, _ = cv2.findHomography(pa, pb, 0)
    if H is None:
        return 0.0
    proj = cv2.perspectiveTransform(pa[None], H)[0]
    return float(np.sqrt(np.mean(np.sum((proj - pb) ** 2, axis=1))) / (_scale(b) + 1e-9))


# ---- the session ----

@dataclass
class _Sample:
    t: float
    yaw: float
    ear: tuple[float, float]
    aspect: float
    landmarks: np.ndarray


class ChallengeSession:
    """One challenge for one face: feed every frame to :meth:`update` until it returns a ``Verdict``."""

    def __init__(self, steps: list[str], cfg: LivenessConfig, prompter: Prompter | None = None) -> None:
        bad = [s for s in steps if s not in STEPS]
        if not steps or bad:
            raise ConfigError(f"unknown challenge step(s) {bad or steps}; use {', '.join(STEPS)}")
        self.steps = list(steps)
        self.cfg = cfg
        self.prompter = prompter
        self.verdict: Verdict | None = None
        self._track: Face | None = None
        self._last_seen = 0.0
        self._first_t: float | None = None
        self._baseline: list[_Sample] = []
        self._base_ear = (0.0, 0.0)
        self._base_yaw = 0.0
        self._base_aspect = 0.0
        self._prompt_t: float | None = None
        self._step = -1
        self._step_t = 0.0
        self._reset_step()

    # -- plumbing --
    @property
    def step(self) -> str | None:
        return self.steps[self._step] if 0 <= self._step < len(self.steps) else None

    @property
    def prompt_t(self) -> float | None:
        """Frame time of the first prompt (None before it): what an answer's latency is measured from."""
        return self._prompt_t

    def unanswered(self, last_t: float) -> Verdict:
        """The verdict on a recording that ended (at ``last_t``) before the session reached one; it
        is not recorded as the session's own (``maskgate liveness`` on a clip)."""
        reason = "no face in the recording" if self._first_t is None else "recording ended before the answer"
        start = self._prompt_t if self._prompt_t is not None else last_t
        return Verdict(False, self.step, reason, round(last_t - start, 3))

    def _finish(self, t: float, passed: bool, reason: str) -> Verdict:
        start = self._prompt_t if self._prompt_t is not None else (self._first_t or t)
        self.verdict = Verdict(passed, None if passed else self.step, reason, round(t - start, 3))
        log.info("liveness %s: %s (%s)", "passed" if passed else "failed", reason, self.steps)
        if self.prompter is not None:
            self.prompter.show(None)
        return self.verdict

    def _reset_step(self) -> None:
        self._closed: list[_Sample] = []      # blink: frames below the dip, in the current dip
        self._open_before: float | None = None
        self._armed: _Sample | None = None    # turn: the frontal reference
        self._peak: _Sample | None = None

    def _next_step(self, t: float) -> None:
        self._step += 1
        self._step_t = t
        self._reset_step()
        if self.step is not None and self.prompter is not None:
            self.prompter.show(self.step)

    def _follow(self, t: float, faces: list[Face]) -> tuple[Face | None, str | None]:
        """The tracked face in this frame, or why the track broke."""
        if self._track is None:
            return (faces[0] if faces else None), None
        if not faces:
            return None, ("face lost" if t - self._last_seen > MAX_GAP_S else None)
        prev = self._track
        face = min(faces, key=lambda f: np.hypot(f.center[0] - prev.center[0], f.center[1] - prev.center[1]))
        broken = jumped(prev, face)
        if broken is not None:
            return None, broken
        if landmarks.second_face(faces, face):   # another face could take over: abort
            return None, "second face"
        return face, None

    # -- the loop --
    def update(self, frame: Frame, faces: list[Face]) -> Verdict | None:
        """Advance by one frame; a ``Verdict`` once the challenge is decided, else None."""
        if self.verdict is not None:
            return self.verdict
        t = frame.t
        face, broken = self._follow(t, faces)
        if broken:
            return self._finish(t, False, broken)
        if face is None:
            if self._prompt_t is not None and t - self._step_t > timeout_for(self.step, self.cfg):
                return self._finish(t, False, "timeout")
            return None
        if self._first_t is None:
            self._first_t = t
        self._track, self._last_seen = face, t
        lm = face.landmarks
        s = _Sample(t, geometry.head_pose(lm).yaw, geometry.ears(lm), face_aspect(lm), lm)
        if self._prompt_t is None:
            return self._gather_baseline(s)
        if t - self._step_t > timeout_for(self.step, self.cfg):
            return self._finish(t, False, "timeout")
        done = self._blink(s) if self.step == "blink" else self._turn(s)
        if isinstance(done, str):
            return self._finish(t, False, done)
        if done:
            self._next_step(t)
            if self.step is None:
                return self._finish(t, True, "passed " + ", ".join(self.steps))
        return None

    def _gather_baseline(self, s: _Sample) -> Verdict | None:
        if abs(s.yaw) <= FRONTAL_DEG:
            self._baseline.append(s)
        elif self._first_t is not None and s.t - self._first_t > self.cfg.step_timeout_s:
            return self._finish(s.t, False, "face never turned to the camera")
        if self._baseline and s.t - self._baseline[0].t >= BASELINE_S and len(self._baseline) >= 3:
            ears = np.array([b.ear for b in self._baseline])
            self._base_ear = (float(np.median(ears[:, 0])), float(np.median(ears[:, 1])))
            self._base_yaw = float(np.median([b.yaw for b in self._baseline]))
            self._base_aspect = float(np.median([b.aspect for b in self._baseline]))
            self._prompt_t = s.t
            self._step = -1
            self._next_step(s.t)
        return None

    def _blink(self, s: _Sample) -> bool | str:
        """Both eyes dip below ``BLINK_DIP`` of their baseline and recover within human timing."""
        ratio = max(s.ear[0] / (self._base_ear[0] + 1e-9), s.ear[1] / (self._base_ear[1] + 1e-9))
        if ratio < BLINK_DIP:
            if abs(s.aspect / self._base_aspect - 1) > SQUASH_TOL:
                self._closed, self._open_before = [], None  # the whole face squashed: a tilted sheet
                return False
            if self._open_before is not None:
                self._closed.append(s)
            return False
        if ratio > BLINK_OPEN:
            if self._closed:
                shut_min = self._closed[-1].t - self._closed[0].t       # surely shut this long
                shut_max = s.t - (self._open_before or self._closed[0].t)  # at most this long
                self._closed = []
                if shut_min <= BLINK_MAX_S and shut_max >= BLINK_MIN_S:
                    return True
                log.debug("eye closure of %.2f-%.2f s is not a blink", shut_min, shut_max)
            self._open_before = s.t
        return False

    def _turn(self, s: _Sample) -> bool | str:
        """From frontal, past the threshold toward the asked side, and back; the motion must be 3D."""
        thr = self.cfg.turn_threshold_deg
        sign = 1.0 if self.step == "turn-left" else -1.0
        rel = s.yaw - self._base_yaw
        if self._armed is None or self._peak is None:
            if abs(rel) < RETURN_FRAC * thr:
                if self._armed is None or abs(rel) <= abs(self._armed.yaw - self._base_yaw):
                    self._armed = s
            if self._armed is None:
                return False
            if -sign * rel >= thr:
                return "turned the wrong way"
            if sign * rel >= thr:
                self._peak = s
            return False
        if sign * rel > sign * (self._peak.yaw - self._base_yaw):
            self._peak = s
        if -sign * rel >= thr:
            return "turned the wrong way"
        if abs(rel) < RETURN_FRAC * thr:
            return self._solid(self._armed, self._peak)
        return False

    def _solid(self, front: _Sample, peak: _Sample) -> bool | str:
        """The turn's landmark motion shows a head: parallax against a plane and a protruding nose."""
        turned = peak.yaw - front.yaw
        shift = -(nose_offset(peak.landmarks) - nose_offset(front.landmarks))  # > 0 for a left turn
        if shift * np.sign(turned) < NOSE_PARALLAX * abs(turned):
            log.info("turn of %.0f deg moved the nose %.3f: no 3D nose", turned, shift)
            return "flat or curled object (nose shows no parallax)"
        resid = planar_residual(front.landmarks, peak.landmarks)
        if resid < PLANAR_RESIDUAL:
            log.info("turn of %.0f deg fits one homography (%.4f)", turned, resid)
            return "flat object (landmarks move as one plane)"
        return True
