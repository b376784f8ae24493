"""Who may enter when: groups, weekly windows, holidays and visitor passes; a verdict with its reason.

The config names groups (``[access.groups.NAME]``) with weekly ``windows`` and their own ``holidays``;
``[access] holidays`` closes every time-limited group on those days unless it sets
``site_holidays = false``. A person belongs to one or more groups (none recorded: ``[access]
default_group``) and may carry a visitor pass (valid from / until a local date and time). The built-in
group ``always`` needs no config and is open at every hour.

Why the rules look like this:
- Every time here is local wall-clock time (``datetime`` without a zone), because schedules and passes
  are written the way people read a clock on the wall; a pass is stored and shown exactly as given.
- A group open ``always`` does not depend on the clock at all, so an untrustworthy clock (no RTC, no
  time source: edge.clock) denies only the people whose rules need the time (``clock not set``);
  site holidays do not close an ``always`` group either (it would need the date).
- A window whose end is not after its start runs overnight: ``Mon-Fri 19:00-07:00`` opens on Monday
  evening and closes on Tuesday morning, so Friday's runs into Saturday.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any, Iterable

from edge.errors import ConfigError

log = logging.getLogger(__name__)

ALWAYS = "always"
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
GROUP_KEYS = ("windows", "holidays", "site_holidays")

# The reasons a recognised person is turned away (decision lines, audit log, display, event stream).
OUTSIDE = "outside schedule"
HOLIDAY = "holiday"
NOT_YET = "pass not yet valid"
EXPIRED = "pass expired"
CLOCK = "clock not set"

_TIME = r"(\d{1,2}):(\d{2})"
_WINDOW = re.compile(rf"^(?:(?P<days>[A-Za-z,\- ]+?)\s+)?{_TIME}\s*-\s*{_TIME}$")


class RuleError(ValueError):
    """A window, a date or a pass that cannot be read; the message says what is wrong with it."""


# ---------------------------------------------------------------- windows

@dataclass(frozen=True)
class Window:
    """Open on ``days`` (0 = Monday) from ``start`` for ``end - start`` minutes (overnight: past midnight)."""

    days: frozenset[int]
    start: int   # minutes after midnight
    end: int     # minutes after midnight; <= start: the window ends the next day
    text: str = ""

    @property
    def always(self) -> bool:
        return self.text == ALWAYS

    def contains(self, when: dt.datetime) -> bool:
        if self.always:
            return True
        minute = when.hour * 60 + when.minute
        day = when.weekday()
        if self.end > self.start:
            return day in self.days and self.start <= minute < self.end
        # overnight: the evening of a listed day, or the morning after one
        return (day in self.days and minute >= self.start) or ((day - 1) % 7 in self.days and minute < self.end)


_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _day(name: str, text: str) -> int:
    """``Mon`` or ``Monday`` (any case) -> 0."""
    word = name.strip().lower()
    for i, full in enumerate(_FULL):
        if len(word) >= 3 and full.startswith(word):
            return i
    raise RuleError(f"{text!r}: unknown day {name.strip()!r} (days: {', '.join(DAYS)})")


def _days(spec: str, text: str) -> frozenset[int]:
    """``Mon-Fri``, ``Sat``, ``Mon,Wed,Fri``, ``Fri-Mon`` (wraps), ``daily``."""
    if spec.strip().lower() in ("daily", "every day", "all"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in spec.split(","):
        if not part.strip():
            raise RuleError(f"{text!r}: empty day in {spec!r}")
        if "-" in part:
            a, b = part.split("-", 1)
            first, last = _day(a, text), _day(b, text)
            days.update((first + i) % 7 for i in range((last - first) % 7 + 1))
        else:
            days.add(_day(part, text))
    return frozenset(days)


def _minutes(h: str, m: str, text: str, end: bool) -> int:
    hours, minutes = int(h), int(m)
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not end)):
        raise RuleError(f"{text!r}: {h}:{m} is not a time of day (00:00 to 23:59, 24:00 as an end)")
    return hours * 60 + minutes


def parse_window(text: Any) -> Window:
    """``"always"``, ``"Mon-Fri 07:00-19:00"``, ``"Sat 09:00-13:00"``, ``"Mon-Fri 19:00-07:00"`` (overnight),
    ``"07:00-19:00"`` (every day). Raises ``RuleError`` naming what is wrong."""
    if not isinstance(text, str):
        raise RuleError(f"{text!r} is not a string like \"Mon-Fri 07:00-19:00\" or \"always\"")
    clean = " ".join(text.split())
    if clean.lower() == ALWAYS:
        return Window(frozenset(range(7)), 0, 24 * 60, ALWAYS)
    m = _WINDOW.match(clean)
    if not m:
        raise RuleError(f"{text!r} is not a window like \"Mon-Fri 07:00-19:00\", \"Sat 09:00-13:00\" or \"always\"")
    days = _days(m.group("days"), text) if m.group("days") else frozenset(range(7))
    start = _minutes(m.group(2), m.group(3), text, end=False)
    end = _minutes(m.group(4), m.group(5), text, end=True)
    if start == end:
        raise RuleError(f"{text!r}: starts and ends at the same time (for the whole day write 00:00-24:00)")
    return Window(days, start, end, clean)


# ---------------------------------------------------------------- dates and passes

def parse_dates(item: Any) -> tuple[dt.date, dt.date]:
    """A holiday: ``"2027-02-10"``, a TOML date, or a range ``"2027-12-24..2027-12-26"``; (first, last)."""
    if isinstance(item, dt.datetime):
        raise RuleError(f"{item!r} is a date and time; a holiday is a date like 2027-02-10")
    if isinstance(item, dt.date):
        return item, item
    if not isinstance(item, str):
        raise RuleError(f"{item!r} is not a date like \"2027-02-10\"")
    parts = item.split("..")
    if len(parts) > 2:
        raise RuleError(f"{item!r} is not a date or a range like 2027-12-24..2027-12-26")
    try:
        days = [dt.date.fromisoformat(p.strip()) for p in parts]
    except ValueError:
        raise RuleError(f"{item!r} is not a date like 2027-02-10 (or a range 2027-12-24..2027-12-26)") from None
    if days[-1] < days[0]:
        raise RuleError(f"{item!r}: the range ends before it starts")
    return days[0], days[-1]


def parse_moment(text: str, end: bool = False) -> dt.datetime:
    """A pass's local date and time: ``2027-01-05T09:00``, ``2027-01-05 09:00`` or a bare date.

    A bare date starts at 00:00 (``end=False``) or runs to the end of that day (``end=True``)."""
    clean = " ".join(str(text).split())
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", clean):
            day = dt.date.fromisoformat(clean)
            return dt.datetime.combine(day + dt.timedelta(days=1) if end else day, dt.time())
        moment = dt.datetime.fromisoformat(clean.replace(" ", "T", 1))
    except ValueError:
        raise RuleError(f"{text!r} is not a local date and time like 2027-01-05T09:00 (or a date 2027-01-05)") \
            from None
    if moment.tzinfo is not None:
        raise RuleError(f"{text!r}: give the local time without a zone (the gate's own time zone applies)")
    return moment


def check_pass(valid_from: str | None, valid_until: str | None) -> tuple[str | None, str | None]:
    """The pass as it will be stored (stripped text, as given); ``RuleError`` if unreadable or empty."""
    vf = " ".join(valid_from.split()) if valid_from else None
    vu = " ".join(valid_until.split()) if valid_until else None
    start = parse_moment(vf) if vf else None
    stop = parse_moment(vu, end=True) if vu else None
    if start is not None and stop is not None and stop <= start:
        raise RuleError(f"the pass ends ({vu}) before it starts ({vf})")
    return vf, vu


# ---------------------------------------------------------------- groups and the config

@dataclass(frozen=True)
class Group:
    """One configured group: when it is open."""

    name: str
    windows: tuple[Window, ...]
    holidays: tuple[tuple[dt.date, dt.date], ...] = ()
    site_holidays: bool = True

    @property
    def always(self) -> bool:
        """Open at every hour of every day: needs no clock, and holidays do not close it."""
        return any(w.always for w in self.windows) and not self.holidays


ALWAYS_GROUP = Group(ALWAYS, (parse_window(ALWAYS),), (), False)


def _bad(key: str, why: str) -> RuleError:
    return RuleError(f"{key}: {why}")


def parse_groups(groups: Any) -> dict[str, Group]:
    """``[access.groups.*]`` as ``Group``s; a ``RuleError`` names the key (``access.groups.X.windows``)."""
    if not isinstance(groups, dict):
        raise _bad("access.groups", "must be a table of groups ([access.groups.NAME])")
    out = {}
    for name, body in groups.items():
        key = f"access.groups.{name}"
        if not GROUP_NAME.fullmatch(name):
            raise _bad(key, "a group name is letters, digits, '_', '-' or '.' (at most 40)")
        if not isinstance(body, dict):
            raise _bad(key, "must be a table with windows = [...]")
        for k in body:
            if k not in GROUP_KEYS:
                raise _bad(f"{key}.{k}", f"unknown key (known: {', '.join(GROUP_KEYS)})")
        windows = body.get("windows")
        if not isinstance(windows, list) or not windows:
            raise _bad(f"{key}.windows", "must be a non-empty list like [\"Mon-Fri 07:00-19:00\"] or [\"always\"]")
        parsed = _each(windows, parse_window, f"{key}.windows")
        site = body.get("site_holidays", True)
        if not isinstance(site, bool):
            raise _bad(f"{key}.site_holidays", f"must be true or false, not {site!r}")
        out[name] = Group(name, parsed, parse_holidays(body.get("holidays", []), f"{key}.holidays"), site)
    return out


def parse_holidays(items: Any, key: str = "access.holidays") -> tuple[tuple[dt.date, dt.date], ...]:
    if not isinstance(items, list):
        raise _bad(key, "must be a list of dates like [\"2027-02-10\"]")
    return _each(items, parse_dates, key)


def _each(items: list[Any], parse: Any, key: str) -> tuple[Any, ...]:
    """Every item of a config list parsed, a bad one named by its index (``key[i]``)."""
    out = []
    for i, item in enumerate(items):
        try:
            out.append(parse(item))
        except RuleError as e:
            raise _bad(f"{key}[{i}]", str(e)) from None
    return tuple(out)


def check_config(holidays: Any, default_group: Any, groups: Any) -> None:
    """Everything ``[access]`` says, read once so that a bad key is refused when the config loads."""
    parse_holidays(holidays)
    known = parse_groups(groups)
    if default_group != ALWAYS and default_group not in known:
        raise _bad("access.default_group", f"no group {default_group!r} (groups: {', '.join(names(known))})")


def names(groups: dict[str, Group]) -> list[str]:
    """Every group a person may be put in: the configured ones and the built-in ``always``."""
    return sorted(set(groups) | {ALWAYS})


# ---------------------------------------------------------------- the rules

@dataclass(frozen=True)
class Verdict:
    """May this person enter now? ``reason`` is one of the constants above when not."""

    allowed: bool
    reason: str = ""
    group: str | None = None   # the group that let them in


class Rules:
    """The site's access rules from ``[access]`` (an ``edge.config.AccessConfig``)."""

    def __init__(self, cfg: Any) -> None:
        self.holidays = parse_holidays(cfg.holidays)
        self.groups = parse_groups(cfg.groups)
        self.default_group = cfg.default_group

    def group(self, name: str) -> Group | None:
        if name in self.groups:
            return self.groups[name]
        return ALWAYS_GROUP if name == ALWAYS else None

    def groups_of(self, person: Any) -> list[str]:
        """The person's groups, or the default group for records that name none (older vaults)."""
        return list(getattr(person, "groups", None) or ()) or [self.default_group]

    def check_names(self, groups: Iterable[str], what: str = "--group") -> list[str]:
        """Groups an operator typed, in order, once each; ``RuleError`` for a name not configured."""
        out = []
        for g in groups:
            if self.group(g) is None:
                raise RuleError(f"{what} {g!r}: no such group in [access.groups] "
                                f"(groups: {', '.join(names(self.groups))})")
            if g not in out:
                out.append(g)
        return out

    def _closed_on(self, g: Group, day: dt.date) -> bool:
        spans = g.holidays + (self.holidays if g.site_holidays and not g.always else ())
        return any(a <= day <= b for a, b in spans)

    def judge(self, person: Any, when: dt.datetime | None, trusted: bool = True) -> Verdict:
        """The verdict for ``person`` (groups, valid_from, valid_until) at local time ``when``.

        ``trusted=False`` (or ``when=None``): the clock cannot be believed, so only a group open
        ``always``, for a person without a pass, lets them in; everyone else gets ``clock not set``.
        """
        clock_ok = trusted and when is not None
        valid_from, valid_until = getattr(person, "valid_from", None), getattr(person, "valid_until", None)
        if valid_from or valid_until:
            if not clock_ok:
                return Verdict(False, CLOCK)
            assert when is not None
            if valid_from and when < parse_moment(valid_from):
                return Verdict(False, NOT_YET)
            if valid_until and when >= parse_moment(valid_until, end=True):
                return Verdict(False, EXPIRED)
        reasons = []
        for name in self.groups_of(person):
            g = self.group(name)
            if g is None:
                reasons.append(f"group {name} is not in the config")
                continue
            if g.always:
                return Verdict(True, "", name)
            if not clock_ok:
                reasons.append(CLOCK)
                continue
            assert when is not None
            if self._closed_on(g, when.date()):
                reasons.append(HOLIDAY)
            elif any(w.contains(when) for w in g.windows):
                return Verdict(True, "", name)
            else:
                reasons.append(OUTSIDE)
        for reason in (CLOCK, HOLIDAY, OUTSIDE):  # the one that tells the person most
            if reason in reasons:
                return Verdict(False, reason)
        return Verdict(False, reasons[0] if reasons else OUTSIDE)

    def needs_clock(self, person: Any) -> bool:
        """True when this person's entry depends on the date or time (a pass, or no ``always`` group)."""
        if getattr(person, "valid_from", None) or getattr(person, "valid_until", None):
            return True
        return not any((g := self.group(n)) is not None and g.always for n in self.groups_of(person))


# ---------------------------------------------------------------- operators: enrol, templates

def describe(person: Any, cfg: Any) -> dict[str, Any]:
    """A person's rules for ``templates list``: their groups (the default when none) and their pass."""
    vf, vu = getattr(person, "valid_from", None), getattr(person, "valid_until", None)
    valid = "always" if not (vf or vu) else f"{vf or '...'} to {vu or '...'}"
    return {"groups": list(getattr(person, "groups", None) or ()) or [cfg.default_group], "valid": valid}


def _clearable(text: str | None) -> str | None:
    return None if text is None or text.strip().lower() in ("", "none") else text


def person_rules(cfg: Any, groups: list[str] | None, valid_from: str | None,
                 valid_until: str | None) -> dict[str, Any]:
    """What ``enroll --group/--valid-from/--valid-until`` will store, checked; ``ConfigError`` (exit 2)."""
    try:
        checked = Rules(cfg).check_names(groups or [])
        vf, vu = check_pass(_clearable(valid_from), _clearable(valid_until))
    except RuleError as e:
        raise ConfigError(str(e)) from None
    return {"groups": tuple(checked), "valid_from": vf, "valid_until": vu}


def change_access(vault: Any, cfg: Any, person: str, groups: list[str] | None, valid_from: str | None,
                  valid_until: str | None) -> Any:
    """Change a person's groups or visitor pass in the vault; the person as now stored.

    ``groups`` replaces the person's groups (``["default"]`` puts them back in the default group);
    ``"none"`` for ``valid_from`` / ``valid_until`` removes that end of the pass; None leaves it."""
    found = vault.find(person)
    changes: dict[str, Any] = {}
    if groups:
        changes["groups"] = () if groups == ["default"] else person_rules(cfg, groups, None, None)["groups"]
    vf = found.valid_from if valid_from is None else _clearable(valid_from)
    vu = found.valid_until if valid_until is None else _clearable(valid_until)
    if valid_from is not None or valid_until is not None:
        rules = person_rules(cfg, None, vf, vu)
        changes.update(valid_from=rules["valid_from"], valid_until=rules["valid_until"])
    if not changes:
        raise ConfigError("nothing to change: give --group, --valid-from or --valid-until")
    return vault.set_access(found.id, **changes)
