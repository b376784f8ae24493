"""Time the gate can trust before it judges a schedule or a visitor pass by it.

A Raspberry Pi before the 5 has no real-time clock, and a gate has no network for NTP: after a power
cut it boots at the time it last saved (fake-hwclock) or in 1970, and a schedule judged by that clock
lets people in at the wrong hours. So the clock is trusted only when:

- it is not before this release was built (``BUILD_DATE``: a clock earlier than that was never set),
- the gate has not seen it jump backwards while running (wall time against the monotonic clock;
  a backwards jump is how a wrong clock is "corrected" into another wrong one, and how a schedule is
  replayed), and
- something keeps it: a real-time clock (``/sys/class/rtc/rtc0``), or a time source (systemd-timesyncd's
  ``/run/systemd/timesync/synchronized``, or ``/run/maskgate/clock-set``, written when an administrator
  set the time this boot, e.g. from the admin USB stick; /run is emptied at every boot).

Untrusted, only the rules that need no time hold: people in ``always`` groups enter, everyone else is
denied ``clock not set`` (edge.access). ``maskgate diag clock`` says which condition failed and the fix.
Every source is a field of ``TimeSources`` so tests can play any board and any clock.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edge.access import RuleError, parse_moment
from edge.errors import ConfigError

log = logging.getLogger(__name__)

# The day this release was built: a clock before it was never set. Raised at each release.
BUILD_DATE = dt.date(2026, 12, 2)
# Wall time falling behind the monotonic clock by more than this is a backwards jump (NTP slews by
# milliseconds; a person or a restored fake-hwclock moves it by minutes or years).
JUMP_S = 5.0
MARKER = Path("/run/maskgate/clock-set")
TIMESYNC = Path("/run/systemd/timesync/synchronized")

FIX = ("fit a real-time clock module with a battery (e.g. a DS3231 on I2C, `dtoverlay=i2c-rtc,ds3231` in "
       "/boot/firmware/config.txt), on a Raspberry Pi 5 connect the RTC battery (J5 \"BAT\"), or set the time "
       "from the admin USB stick (or `sudo date -s 'YYYY-MM-DD HH:MM' && sudo touch /run/maskgate/clock-set`) "
       "and restart the gate; until then only people in `always` groups are let in")


def _exists(path: Path) -> Callable[[], bool]:
    return lambda: path.exists()


@dataclass
class TimeSources:
    """Where the clock and its witnesses are read (tests replace any of them)."""

    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    rtc: Callable[[], bool] = field(default=_exists(Path("/sys/class/rtc/rtc0")))
    synced: Callable[[], bool] = field(
        default=lambda: TIMESYNC.exists() or MARKER.exists())
    build_date: dt.date = BUILD_DATE


class Clock:
    """The local wall-clock time and whether to believe it."""

    def __init__(self, sources: TimeSources | None = None) -> None:
        self.sources = sources or TimeSources()
        self._offset: float | None = None   # wall - monotonic, the largest seen
        self.jumped: str | None = None      # the backwards jump seen, once seen (until restart)

    def local(self, elapsed: float | None = None) -> dt.datetime:
        """Local time now (no zone): what the schedules and passes are written in."""
        return dt.datetime.fromtimestamp(self.sources.wall())

    def _watch(self) -> None:
        wall, mono = self.sources.wall(), self.sources.monotonic()
        offset = wall - mono
        if self._offset is not None and offset < self._offset - JUMP_S and self.jumped is None:
            self.jumped = (f"it jumped back {self._offset - offset:.0f} s at "
                           f"{dt.datetime.fromtimestamp(wall):%Y-%m-%d %H:%M:%S}")
            log.warning("clock: %s; schedules are not trusted until the gate restarts", self.jumped)
        self._offset = offset if self._offset is None else max(self._offset, offset)

    def untrusted(self) -> str | None:
        """Why the clock cannot be believed now, or None when it can."""
        self._watch()
        now = dt.datetime.fromtimestamp(self.sources.wall())
        if now.date() < self.sources.build_date:
            return f"the clock says {now:%Y-%m-%d %H:%M}, before this release was built ({self.sources.build_date})"
        if self.jumped:
            return f"the clock is not trusted: {self.jumped}"
        if not self.sources.rtc() and not self.sources.synced():
            return "no real-time clock and no time source: the time may be anything after a power cut"
        return None


class FixedClock(Clock):
    """A clock that reads ``start`` plus the recording's own time (``replay --at``): trusted."""

    def __init__(self, start: dt.datetime) -> None:
        super().__init__()
        self.start = start

    def local(self, elapsed: float | None = None) -> dt.datetime:
        return self.start + dt.timedelta(seconds=elapsed or 0.0)

    def untrusted(self) -> str | None:
        return None


def parse_at(text: str) -> dt.datetime:
    """``--at 2027-01-05T12:00``: a local date and time (no zone); ``ConfigError`` (exit 2) otherwise."""
    try:
        if len(text.strip()) == 10:
            raise RuleError(f"--at {text!r}: give a date and a time of day, e.g. 2027-01-05T12:00")
        return parse_moment(text)
    except RuleError as e:
        raise ConfigError(f"--at: {e}" if not str(e).startswith("--at") else str(e)) from None


def mark_set() -> None:
    """Record that an administrator set the clock this boot (the admin USB stick's time step calls it)."""
    MARKER.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(MARKER, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.close(fd)
