"""Every string a resident sees or hears, as gettext message ids, and the screens that use them.

Nothing here is translated: :func:`N_` only marks a msgid (gettext's convention), and the screen
renderer looks each one up in the configured catalogue (:mod:`edge.display.i18n`). The gate's own
reasons are for technicians and the audit log; :func:`denial` turns one into plain words for the
person at the door, and never says which anti-spoofing check failed.
"""

from __future__ import annotations

from dataclasses import dataclass


def N_(msgid: str) -> str:
    """Mark a resident-facing string for the catalogue (translated where it is drawn)."""
    return msgid


USE_CARD = N_("Use your card or the intercom")
TRY_AGAIN = N_("Try again, or use your card or the intercom")

TEXT = {
    "idle": (N_("Look at the camera"), N_("Face entry: stand about 1 m away")),
    "too_far": (N_("Please step closer"), N_("Stand about 1 m from the camera")),
    "too_close": (N_("Please step back a little"), N_("Stand about 1 m from the camera")),
    "one_person": (N_("One person at a time"), N_("Others please wait behind the line")),
    "checking": (N_("Checking…"), N_("Keep looking at the camera")),
    "welcome": (N_("Welcome"), N_("The door is open")),
    "lockout": (N_("Too many attempts"), USE_CARD),
    "held_open": (N_("Door held open"), N_("Please close the door behind you")),
    "fault": (N_("Face entry is out of service"), USE_CARD),
    "stick_done": (N_("USB stick done"), N_("You can remove it now")),
}
WELCOME_NAME = N_("Welcome, {name}")
LOCKOUT_LEFT = N_("Face entry resumes in {minutes} min {seconds} s")
LOCKOUT_LEFT_S = N_("Face entry resumes in {seconds} s")

STEP_TEXT = {
    "blink": N_("Please blink"),
    "turn-left": N_("Turn your head to your left, then back"),
    "turn-right": N_("Turn your head to your right, then back"),
}
STEP_OF = N_("Step {n} of {total}")
SECONDS = N_("{seconds} s")

DENIED = {
    "not_recognised": N_("Not recognised"),
    "challenge": N_("The check was not completed"),
    "moved": N_("Please stay in front of the camera"),
    "one_person": N_("One person at a time"),
    "not_allowed": N_("No entry at this time"),
    "claim_needed": N_("Present your card or enter your PIN"),
    "claim_refused": N_("Card or PIN not accepted"),
}


@dataclass(frozen=True)
class Screen:
    """What the display shows: a ``kind`` and the few facts it needs (no image, no score)."""

    kind: str                      # idle, too_far, too_close, one_person, challenge, checking, welcome,
    step: str | None = None        # denied, lockout, held_open, fault
    n: int = 0
    total: int = 0
    seconds: int | None = None     # challenge countdown, lockout time left
    name: str | None = None        # welcome, only with display.show_name
    reason: str | None = None      # denied: a key of DENIED


KINDS = ("idle", "too_far", "too_close", "one_person", "challenge", "checking", "welcome", "denied",
         "lockout", "held_open", "fault", "stick_done")


def denial(reason: str) -> str:
    """The plain-words key (of :data:`DENIED`) or ``"fault"`` for a gate's denial reason."""
    r = reason.lower()
    if r.startswith(("gate fault", "internal error", "template vault")):
        return "fault"
    if "two faces" in r or "second face" in r or "one person" in r:
        return "one_person"
    if r.startswith("liveness:"):
        if "face lost" in r or "jumped" in r or "never turned" in r:
            return "moved"
        return "challenge"
    if "face lost" in r or "never steady" in r or "not the one before" in r:
        return "moved"
    if "not recognised" in r or "no one enrolled" in r or "face does not match" in r:
        return "not_recognised"
    if "no card or pin presented" in r:        # claim mode (edge.claim)
        return "claim_needed"
    if "unknown card" in r or "wrong pin" in r or "of someone not" in r:
        return "claim_refused"
    return "not_allowed"
