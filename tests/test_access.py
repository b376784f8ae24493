"""Who may enter when: the rules (edge.access), the clock they trust (edge.clock), and the gate judging
them on real recordings with ``replay --at`` (the issue's ``daytime`` group, end to end)."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge import access, clock, config
from edge.access import Rules, parse_window
from edge.camera import frames
from edge.camera.replay import ReplaySource, demo_clip
from edge.clock import Clock, TimeSources
from edge.config import Config
from edge.errors import ConfigError
from edge.vault import Vault
from conftest import maskgate

ENROLL = Path(demo_clip()).parent / "enroll"
ISSUE_CONFIG = textwrap.dedent("""\
    [access]
    holidays = ["2027-02-10", "2027-02-11"]          # closed to every group that does not say otherwise
    [access.groups.daytime]
    windows = ["Mon-Fri 07:00-19:00", "Sat 09:00-13:00"]
    holidays = ["2027-01-04"]
    [access.groups.residents]
    windows = ["always"]
    [access.groups.night]
    windows = ["Mon-Fri 19:00-07:00"]
    site_holidays = false
    """)
# 2027-01-04 is a Monday (and the daytime group's holiday), 2027-01-05 a Tuesday.
TUE, SAT, SUN, HOLIDAY = dt.date(2027, 1, 5), dt.date(2027, 1, 9), dt.date(2027, 1, 10), dt.date(2027, 1, 4)


def at(day: dt.date, hh_mm: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.fromisoformat(hh_mm))


def person(*groups: str, valid_from: str | None = None, valid_until: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(groups=tuple(groups), valid_from=valid_from, valid_until=valid_until)


@pytest.fixture(scope="module")
def rules() -> Rules:
    return Rules(config.from_dict(config.tomllib.loads(ISSUE_CONFIG)).access)


# ---- the rules ----

@pytest.mark.parametrize("when, allowed, reason", [
    (at(TUE, "12:00"), True, ""),
    (at(TUE, "07:00"), True, ""),
    (at(TUE, "19:00"), False, "outside schedule"),       # the end is not part of the window
    (at(TUE, "23:30"), False, "outside schedule"),
    (at(SAT, "12:00"), True, ""),                        # Sat 09:00-13:00
    (at(SAT, "13:30"), False, "outside schedule"),
    (at(SUN, "12:00"), False, "outside schedule"),
    (at(HOLIDAY, "12:00"), False, "holiday"),            # the group's own holiday
    (at(dt.date(2027, 2, 10), "12:00"), False, "holiday"),  # a site holiday (a Wednesday)
])
def test_daytime_group(rules: Rules, when: dt.datetime, allowed: bool, reason: str) -> None:
    v = rules.judge(person("daytime"), when)
    assert (v.allowed, v.reason) == (allowed, reason)


def test_overnight_window_runs_into_the_next_morning(rules: Rules) -> None:
    night = person("night")
    assert rules.judge(night, at(TUE, "23:30")).allowed
    assert rules.judge(night, at(dt.date(2027, 1, 9), "06:59")).allowed      # Friday's night, Saturday morning
    assert not rules.judge(night, at(dt.date(2027, 1, 9), "23:00")).allowed  # Saturday evening: not listed
    assert not rules.judge(night, at(HOLIDAY, "06:00")).allowed              # Sunday night is not listed
    assert rules.judge(night, at(dt.date(2027, 2, 10), "22:00")).allowed     # site_holidays = false


def test_always_groups_ignore_site_holidays_and_an_untrusted_clock(rules: Rules) -> None:
    for who in (person("residents"), person("always"), person()):        # default group: always
        assert rules.judge(who, at(dt.date(2027, 2, 10), "03:00")).allowed
        assert rules.judge(who, None, trusted=False).allowed
    v = rules.judge(person("daytime"), at(TUE, "12:00"), trusted=False)
    assert (v.allowed, v.reason) == (False, "clock not set")
    assert rules.judge(person("daytime", "residents"), None, trusted=False).allowed   # any group will do


def test_visitor_pass(rules: Rules) -> None:
    visitor = person("always", valid_from="2027-01-05T09:00", valid_until="2027-01-05 18:00")
    assert rules.judge(visitor, at(TUE, "08:59")).reason == "pass not yet valid"
    assert rules.judge(visitor, at(TUE, "09:00")).allowed
    assert rules.judge(visitor, at(TUE, "18:00")).reason == "pass expired"
    assert rules.judge(visitor, at(TUE, "12:00"), trusted=False).reason == "clock not set"  # a pass needs the date
    day_pass = person(valid_until="2027-01-05")              # a bare date: to the end of that day
    assert rules.judge(day_pass, at(TUE, "23:59")).allowed
    assert rules.judge(day_pass, at(dt.date(2027, 1, 6), "00:00")).reason == "pass expired"


def test_multiple_groups_grant_when_any_does_and_say_the_most_telling_reason(rules: Rules) -> None:
    both = person("daytime", "night")
    assert rules.judge(both, at(TUE, "12:00")).group == "daytime"
    assert rules.judge(both, at(TUE, "23:00")).group == "night"
    assert rules.judge(both, at(HOLIDAY, "12:00")).reason == "holiday"


def test_a_group_removed_from_the_config_lets_nobody_in(rules: Rules) -> None:
    v = rules.judge(person("cleaners"), at(TUE, "12:00"))
    assert not v.allowed and "cleaners" in v.reason


@pytest.mark.parametrize("text", ["Mon-Fri 19:00", "Mox 07:00-08:00", "Mon 07:00-25:00", "Mon 07:60-08:00",
                                  "Mon 07:00-07:00", "sometimes", "24:00-07:00"])
def test_bad_windows_are_refused(text: str) -> None:
    with pytest.raises(access.RuleError):
        parse_window(text)


def test_window_forms() -> None:
    assert parse_window("Mon,Wed,Fri 08:00-09:00").days == {0, 2, 4}
    assert parse_window("Fri-Mon 10:00-11:00").days == {4, 5, 6, 0}          # wraps over the weekend
    assert parse_window("Saturday 09:00-13:00").days == {5}
    assert parse_window("07:00-19:00").days == set(range(7))
    assert parse_window("Mon 00:00-24:00").contains(at(HOLIDAY, "23:59"))


@pytest.mark.parametrize("toml, key", [
    ('[access]\ndefault_group = "staff"', "access.default_group"),
    ('[access.groups.day]\nwindows = ["Mon-Fri 07:00-25:00"]', "access.groups.day.windows[0]"),
    ('[access.groups.day]\nwindows = []', "access.groups.day.windows"),
    ('[access.groups.day]\nwindow = ["always"]', "access.groups.day.window"),
    ('[access]\nholidays = ["2027-13-01"]', "access.holidays[0]"),
    ('[access.groups.day]\nwindows = ["always"]\nholidays = ["2027-02-30"]', "access.groups.day.holidays[0]"),
    ('[access]\nholidays = ["2027-12-26..2027-12-24"]', "access.holidays[0]"),
])
def test_config_names_the_bad_key(tmp_path: Path, toml: str, key: str) -> None:
    path = tmp_path / "maskgate.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(f'{path}: {key}: ')}"):
        config.load(path)
    r = maskgate("templates", "list", "--config", path, "--state", tmp_path / "state")
    assert r.returncode == 2 and key in r.stderr and "Traceback" not in r.stderr


def test_holidays_as_toml_dates_and_ranges() -> None:
    cfg = config.from_dict(config.tomllib.loads(
        '[access]\nholidays = [2027-02-10, "2027-12-24..2027-12-26"]\n[access.groups.d]\nwindows = ["07:00-19:00"]'))
    r = Rules(cfg.access)
    assert r.judge(person("d"), at(dt.date(2027, 2, 10), "12:00")).reason == "holiday"
    assert r.judge(person("d"), at(dt.date(2027, 12, 25), "12:00")).reason == "holiday"
    assert r.judge(person("d"), at(dt.date(2027, 12, 27), "12:00")).allowed


# ---- the clock ----

class FakeTime:
    def __init__(self, wall: dt.datetime) -> None:
        self.wall, self.mono = wall.timestamp(), 1000.0

    def advance(self, s: float, wall_too: bool = True) -> None:
        self.mono += s
        self.wall += s if wall_too else 0


def sources(t: FakeTime, rtc: bool = True, synced: bool = False) -> TimeSources:
    return TimeSources(wall=lambda: t.wall, monotonic=lambda: t.mono, rtc=lambda: rtc, synced=lambda: synced,
                       build_date=dt.date(2026, 12, 2))


def test_clock_trust() -> None:
    t = FakeTime(at(TUE, "12:00"))
    assert Clock(sources(t)).untrusted() is None                        # RTC
    assert Clock(sources(t, rtc=False, synced=True)).untrusted() is None  # a time source
    assert "no real-time clock and no time source" in Clock(sources(t, rtc=False)).untrusted()
    early = FakeTime(dt.datetime(1970, 1, 1, 0, 5))
    assert "before this release was built" in Clock(sources(early)).untrusted()


def test_a_backwards_jump_seen_by_the_gate_is_not_forgotten() -> None:
    t = FakeTime(at(TUE, "12:00"))
    c = Clock(sources(t))
    assert c.untrusted() is None
    t.advance(60)
    t.wall -= 2.0                       # a slewing correction: still trusted
    assert c.untrusted() is None
    t.advance(60)
    t.wall -= 3600                      # an hour back
    assert "jumped back 3602 s" in c.untrusted()   # from the furthest ahead it has been
    t.advance(3600)
    assert c.untrusted() is not None    # until the gate restarts
    assert Clock(sources(t)).untrusted() is None


def test_the_build_date_is_not_in_the_future() -> None:
    """A BUILD_DATE after today would make every gate distrust a correct clock."""
    assert clock.BUILD_DATE <= dt.date.today()


def test_replay_at_needs_a_date_and_a_time(tmp_path: Path) -> None:
    for bad in ("2027-01-05", "tomorrow", "2027-01-05T12:00+01:00"):
        r = maskgate("replay", demo_clip(), "--at", bad, "--state", tmp_path)
        assert r.returncode == 2 and "--at" in r.stderr and "Traceback" not in r.stderr, r.stderr


# ---- enrolment and the vault ----

def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "maskgate.toml"
    path.write_text(ISSUE_CONFIG + extra)
    return path


def test_enroll_refuses_an_unknown_group_or_a_bad_pass_before_capturing(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    for args, words in ((["--group", "cleaners"], "--group 'cleaners': no such group"),
                        (["--valid-until", "2027-02-30T10:00"], "not a local date and time"),
                        (["--valid-from", "2027-01-06", "--valid-until", "2027-01-05"], "ends")):
        r = maskgate("enroll", "X", "--from", ENROLL, "--consent", "c", "--config", cfg,
                     "--state", tmp_path / "s", *args)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert "good" not in r.stdout          # no frame was looked at


def test_records_carry_groups_and_passes_and_older_ones_read_as_the_default(tmp_path: Path) -> None:
    import numpy as np

    v = Vault.open(tmp_path)
    vec = [np.eye(8)[0], np.eye(8)[1]]
    old = v.add("Old", vec, "c")                            # as before groups existed
    new = v.add("Visitor", vec, "c", groups=("daytime",), valid_from="2027-01-05T09:00",
                valid_until="2027-01-05 18:00")
    again = Vault.open(tmp_path)
    p = again.find(new)
    assert (p.groups, p.valid_from, p.valid_until) == (("daytime",), "2027-01-05T09:00", "2027-01-05 18:00")
    cfg = config.from_dict(config.tomllib.loads(ISSUE_CONFIG)).access
    assert access.describe(again.find(old), cfg) == {"groups": ["always"], "valid": "always"}
    assert access.describe(p, cfg)["valid"] == "2027-01-05T09:00 to 2027-01-05 18:00"


def test_templates_access_changes_groups_and_pass_and_list_shows_them(tmp_path: Path) -> None:
    import numpy as np

    cfg = write_config(tmp_path)
    state = tmp_path / "state"
    pid = Vault.open(state).add("Ann", [np.eye(8)[0], np.eye(8)[1]], "c")
    common = ["--config", cfg, "--state", state]
    r = maskgate("templates", "access", "Ann", "--group", "daytime", "--group", "night",
                 "--valid-until", "2027-03-01T18:00", "--json", *common)
    assert r.returncode == 0, r.stderr
    assert r.json_lines()[0]["groups"] == ["daytime", "night"]
    listed = maskgate("templates", "list", *common)
    assert "groups=daytime,night valid=... to 2027-03-01T18:00" in listed.stdout
    r = maskgate("templates", "access", pid, "--group", "default", "--valid-until", "none", "--json", *common)
    assert r.json_lines()[0] == {"person": pid, "name": "Ann", "groups": ["always"], "valid": "always"}
    r = maskgate("templates", "access", "Ann", "--group", "cleaners", *common)
    assert r.returncode == 2 and "no such group" in r.stderr
    r = maskgate("templates", "access", "Ann", *common)
    assert r.returncode == 2 and "nothing to change" in r.stderr
    assert "vault.access" in (state / "audit.log").read_text()


# ---- the gate on real recordings ----

@pytest.fixture(scope="module")
def daytime_state(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo person enrolled in the issue's ``daytime`` group (frames that are not in the clip)."""
    d = tmp_path_factory.mktemp("access")
    cfg = write_config(d)
    state = d / "state"
    r = maskgate("enroll", "Day Worker", "--from", ENROLL, "--consent", "signed form #7", "--group", "daytime",
                 "--config", cfg, "--state", state)
    assert r.returncode == 0, r.stderr
    return cfg, state


@pytest.mark.parametrize("when, granted, reason", [
    ("2027-01-05T12:00", True, "recognised and live"),   # Tuesday noon
    ("2027-01-05T23:30", False, "outside schedule"),     # Tuesday night
    ("2027-01-09T12:00", True, "recognised and live"),   # Saturday noon: inside "Sat 09:00-13:00"
    ("2027-01-09T14:00", False, "outside schedule"),     # Saturday afternoon
    ("2027-01-10T12:00", False, "outside schedule"),     # Sunday noon
    ("2027-01-04T12:00", False, "holiday"),              # the group's holiday (a Monday)
])
def test_replay_at_judges_the_daytime_group(daytime_state: tuple[Path, Path], when: str, granted: bool,
                                            reason: str) -> None:
    cfg, state = daytime_state
    r = maskgate("replay", demo_clip(), "--challenge", "blink", "--at", when, "--json", "--config", cfg,
                 "--state", state)
    decisions = [e for e in r.json_lines() if e["event"] == "decision"]
    first = decisions[0]
    assert (first["granted"], first["reason"], first["who"]) == (granted, reason, "Day Worker"), decisions
    assert [e for e in r.json_lines() if e["event"] == "door"][:1] == (
        [{"t": first["t"], "event": "door", "action": "unlock", "by": "grant", "open_s": 3.0}] if granted else [])
    audit = json.loads([line for line in (state / "audit.log").read_text().splitlines()
                        if '"decision"' in line][-2 if len(decisions) > 1 else -1])
    assert audit["reason"] == reason


@pytest.fixture(scope="module")
def demo_footage() -> list:
    from edge.vision import landmarks

    with landmarks.for_video(max_faces=2) as lm:
        return [(f, lm.detect(f.image)) for f in frames(ReplaySource(demo_clip()))]


def run(state: Path, cfg: Config, footage: list, gate_clock: Clock) -> list[dict]:
    from edge.door import open_door
    from edge.gate import build

    events: list[dict] = []
    door = open_door(cfg.door)
    gate = build(cfg, state, door, None, events.append, challenges=["blink"], clock=gate_clock)
    gate.rng = random.Random(1)
    try:
        for frame, faces in footage:
            gate.process(frame, faces)
    finally:
        gate.close()
        door.close()
    return events


def test_an_untrusted_clock_keeps_schedule_groups_out_and_lets_always_groups_in(
        daytime_state: tuple[Path, Path], demo_footage: list, tmp_path: Path) -> None:
    cfg_path, state = daytime_state
    cfg = config.load(cfg_path)
    t = FakeTime(at(TUE, "12:00"))
    no_rtc = Clock(sources(t, rtc=False))                        # Tuesday noon, but nothing vouches for it
    events = run(state, cfg, demo_footage, no_rtc)
    d = [e for e in events if e["event"] == "decision"][0]
    assert (d["granted"], d["reason"], d["who"]) == (False, "clock not set", "Day Worker")
    alarm = [e for e in events if e["event"] == "alarm"][0]
    assert alarm["kind"] == "clock" and alarm["active"] and "no real-time clock" in alarm["detail"]
    # the same person in an always group walks in on the same clock
    Vault.open(state).set_access("Day Worker", groups=("residents",))
    try:
        events = run(state, cfg, demo_footage, Clock(sources(t, rtc=False)))
        d = [e for e in events if e["event"] == "decision"][0]
        assert d["granted"] and not [e for e in events if e["event"] == "alarm"]
    finally:
        Vault.open(state).set_access("Day Worker", groups=("daytime",))


def test_claim_mode_keeps_to_the_rules_too(daytime_state: tuple[Path, Path], tmp_path: Path) -> None:
    """A card does not open the door outside its holder's hours: the rules are judged in claim mode too."""
    cfg, state = daytime_state
    claim_cfg = tmp_path / "claim.toml"
    claim_cfg.write_text(cfg.read_text() + '\n[match]\nmode = "claim"\n')
    r = maskgate("templates", "set-card", "Day Worker", "1001", "--config", claim_cfg, "--state", state)
    assert r.returncode == 0, r.stderr
    args = ["replay", demo_clip(), "--challenge", "blink", "--claim", "1001", "--json", "--config", claim_cfg,
            "--state", state]
    for when, granted, reason in (("2027-01-05T12:00", True, "recognised and live"),
                                  ("2027-01-05T23:30", False, "outside schedule")):
        d = [e for e in maskgate(*args, "--at", when).json_lines() if e["event"] == "decision"][0]
        assert (d["granted"], d["reason"], d["claim"]) == (granted, reason, "card 1001"), d
