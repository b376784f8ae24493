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
    # claim mode (edge.claim): the card or PIN, then the face against its holder
    "claim_needed": N_("Present your card or enter your PIN"),
    "card_unknown": N_("Card not recognised"),
    "pin_wrong": N_("PIN not accepted"),
    "card_mismatch": N_("Card and face do not match"),
    "pin_mismatch": N_("PIN and face do not match"),
    "card_invalid": N_("This card is not valid now"),
    "pin_invalid": N_("This PIN is not valid now"),
}
# What to do after a denial: the card is no way out when the card was the problem.
TRY_INTERCOM = N_("Try again, or use the intercom")
DENIED_NEXT = {k: TRY_INTERCOM for k in DENIED if k.startswith(("card_", "pin_"))}
DENIED_NEXT["claim_needed"] = N_("Then look at the camera")

# Claim mode: before the face, the card or PIN; once read, the face.
CLAIM = (DENIED["claim_needed"], DENIED_NEXT["claim_needed"])
CLAIM_READ = {"card": N_("Card read"), "pin": N_("PIN entered")}
CLAIM_READ_NEXT = N_("Now look at the camera")

# What the speaker says (sound.spoken): WAVs rendered at install time, one per key and language
# (edge.sound.render); the file name is the key. The same words as the screen, for those who cannot
# read it: each challenge step, the card prompt, and every outcome after its tone.
SPOKEN = {**STEP_TEXT, "claim": CLAIM[0], "welcome": TEXT["welcome"][0],
          **{f"denied-{k}": v for k, v in DENIED.items()}, "fault": TEXT["fault"][0],
          "held_open": TEXT["held_open"][1]}


@dataclass(frozen=True)
class Screen:
    """What the display shows: a ``kind`` and the few facts it needs (no image, no score)."""

    kind: str                      # one of KINDS
    step: str | None = None        # challenge: a key of STEP_TEXT
    n: int = 0
    total: int = 0
    seconds: int | None = None     # challenge countdown, lockout time left
    name: str | None = None        # welcome, only with display.show_name
    reason: str | None = None      # denied: a key of DENIED; claim_read: "card" or "pin"


KINDS = ("idle", "claim", "claim_read", "too_far", "too_close", "one_person", "challenge", "checking",
         "welcome", "denied", "lockout", "held_open", "fault", "stick_done")


def denial(reason: str) -> str:
    """The plain-words key (of :data:`DENIED`) or ``"fault"`` for a gate's denial reason."""
    r = reason.lower()
    if r.startswith(("gate fault", "internal error", "template vault", "door:")):
        return "fault"
    if "two faces" in r or "second face" in r or "one person" in r:
        return "one_person"
    if r.startswith("liveness:"):
        if "face lost" in r or "jumped" in r or "never turned" in r:
            return "moved"
        return "challenge"
    if "face lost" in r or "never steady" in r or "not the one before" in r:
        return "moved"
    if "not recognised" in r or "no one enrolled" in r:
        return "not_recognised"
    # claim mode (edge.claim.judge's reasons)
    if "no card or pin presented" in r:
        return "claim_needed"
    if "unknown card" in r:
        return "card_unknown"
    if "wrong pin" in r:
        return "pin_wrong"
    if "face does not match" in r:
        return "pin_mismatch" if "pin" in r else "card_mismatch"
    if "of someone not" in r:
        return "pin_invalid" if r.startswith("pin") else "card_invalid"
    return "not_allowed"
