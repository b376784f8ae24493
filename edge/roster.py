"""Rosters: an enrolment station's whole list of people for one gate, so that removals travel too.

Why not bundles: a bundle (``templates export``) only adds, so a person removed at the station stays
on every gate, and an old bundle imported again brings back someone removed since. A roster is the
station's *complete* list, numbered: importing it makes the gate's people from that station equal
to it (added, changed, removed), and a roster not newer than the last one imported from that station
is refused, so an old copy cannot undo a removal.

- The crypto is the bundle's (``edge.vault.seal_signed`` / ``open_signed``): sealed to the gate's
  X25519 key, header and box signed by an installer key the gate lists in ``vault.trusted_keys``.
  The payload is ``u32 length | JSON {station, version, created, gate} | encode_records(...)``.
- The station keeps ``station.json`` (its id ``s-`` + 16 hex, and the last version it issued) in its
  state directory; every export takes the next version.
- The gate keeps ``rosters.json``: per station the last version imported and every person id that
  station ever sent (``known``). The station's people on the gate are the vault's people among
  those ids; people enrolled at the gate (or by another station) are never touched. ``known`` is
  widened *before* the vault is written and the version raised after, both under the vault's
  writers' lock, so a crash in between leaves a roster that can simply be imported again.
- Which people a station exports: everyone in its vault except those it got from rosters itself.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import VaultError
from edge.files import atomic_write, exclusive
from edge.vault import (
    Person,
    Vault,
    decode_records,
    encode_records,
    read_or_none,
    seal_signed,
    sealed_target,
)

log = logging.getLogger(__name__)

ROSTER_MAGIC = b"MGROSTR\x00"
STATION_FILE = "station.json"
STATION_LOCK = "station.lock"
ROSTERS_FILE = "rosters.json"
SUFFIX = ".roster"
STATION_RE = re.compile(r"s-[0-9a-f]{16}")
MAX_VERSION = 2 ** 53


class RosterError(VaultError):
    """A roster cannot be made or imported (old, foreign, unsigned, altered)."""


@dataclass
class Roster:
    """An opened roster: who issued it, its number, and the people (plain templates) it holds."""

    station: str
    version: int
    created: float
    records: list = field(default_factory=list)
    dim: int = 0
    space: str = ""


@dataclass
class Change:
    """What an import did, by person: (id, name) pairs."""

    station: str
    version: int
    added: list[tuple[str, str]]
    changed: list[tuple[str, str]]
    removed: list[tuple[str, str]]
    unchanged: int


# ---------------------------------------------------------------- the station's side

def _json_file(path: Path) -> dict:
    raw = read_or_none(path)
    if raw is None:
        return {}
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RosterError(f"{path}: not valid JSON (damaged); move it away only if you know why") from None
    if not isinstance(obj, dict):
        raise RosterError(f"{path}: not a JSON object (damaged)")
    return obj


def station_info(state: Path) -> dict:
    """This station's id and the last roster version it issued (0 before the first export)."""
    obj = _json_file(Path(state) / STATION_FILE)
    sid, version = obj.get("id"), obj.get("version", 0)
    if obj and (not isinstance(sid, str) or not STATION_RE.fullmatch(sid) or not isinstance(version, int)
                or isinstance(version, bool) or not 0 <= version < MAX_VERSION):
        raise RosterError(f"{Path(state) / STATION_FILE}: malformed station record")
    return {"id": sid, "version": version} if obj else {"id": None, "version": 0}


def _gate_book(state: Path) -> dict[str, dict]:
    """``rosters.json``: {station id: {"version": last imported, "known": [every id it sent]}}."""
    path = Path(state) / ROSTERS_FILE
    obj = _json_file(path)
    stations = obj.get("stations", {}) if obj else {}
    if not isinstance(stations, dict):
        raise RosterError(f"{path}: malformed (no stations object)")
    for sid, rec in stations.items():
        if (not STATION_RE.fullmatch(str(sid)) or not isinstance(rec, dict)
                or not isinstance(rec.get("version"), int) or not isinstance(rec.get("known"), list)):
            raise RosterError(f"{path}: malformed record for station {str(sid)[:20]!r}")
    return stations


def _write_book(state: Path, stations: dict[str, dict]) -> None:
    atomic_write(Path(state) / ROSTERS_FILE,
                 json.dumps({"stations": stations}, indent=1, sort_keys=True).encode() + b"\n", 0o600)


def _from_rosters(state: Path) -> set[str]:
    return {pid for rec in _gate_book(state).values() for pid in rec["known"]}


def export(vault: Vault, state: Path, target_public_hex: str, signing_key: bytes) -> tuple[bytes, Roster]:
    """The station's next roster for one gate: its own people, sealed to the gate and signed."""
    state = Path(state)
    with exclusive(state / STATION_LOCK, 0o600, RosterError):
        info = station_info(state)
        sid = info["id"] or "s-" + secrets.token_hex(8)
        version = info["version"] + 1
        received = _from_rosters(state)
        own = [p.id for p in vault.people() if p.id not in received]
        records, dim, space = vault.plain_records(own)
        created = time.time()
        head = json.dumps({"station": sid, "version": version, "created": created,
                           "gate": target_public_hex.strip().lower()}, separators=(",", ":")).encode()
        payload = struct.pack(">I", len(head)) + head + encode_records(records, dim, space)
        data = seal_signed(payload, target_public_hex, signing_key, ROSTER_MAGIC, "roster")
        # The version is spent before the file exists: a crash here skips a number, never reuses one.
        atomic_write(state / STATION_FILE, json.dumps({"id": sid, "version": version}).encode() + b"\n", 0o600)
    return data, Roster(sid, version, created, records, dim, space)


# ---------------------------------------------------------------- the gate's side

def is_for(data: bytes, public_key_hex: str) -> bool:
    """Whether a roster's clear header names this gate (a stick may carry rosters for many gates)."""
    target = sealed_target(data)
    return data.startswith(ROSTER_MAGIC) and target is not None and target.hex() == public_key_hex


def open_roster(data: bytes, vault: Vault, where: str) -> Roster:
    """Check and open a roster sealed to this gate; every fault is a ``RosterError``."""
    try:
        plain = vault.open_sealed(data, where, ROSTER_MAGIC, "roster")
    except VaultError as e:
        raise RosterError(str(e)) from None
    try:
        (n,) = struct.unpack_from(">I", plain)
        head = json.loads(plain[4:4 + n])
        sid, version, created = head["station"], head["version"], head["created"]
        if (not isinstance(sid, str) or not STATION_RE.fullmatch(sid) or not isinstance(version, int)
                or isinstance(version, bool) or not 1 <= version < MAX_VERSION
                or not isinstance(created, (int, float))):
            raise ValueError
        records, dim, space = decode_records(plain[4 + n:])
    except (struct.error, ValueError, KeyError, TypeError, UnicodeDecodeError, VaultError):
        raise RosterError(f"{where}: signed, but its contents are malformed (a newer maskgate's roster?)") from None
    return Roster(sid, version, float(created), records, dim, space)


def apply(vault: Vault, roster: Roster, state: Path, where: str, model_space: str | None = None) -> Change:
    """Make the gate's people from ``roster.station`` equal to the roster; refuse one not newer."""
    state = Path(state)
    ids = {r.person.id for r in roster.records}
    change = Change(roster.station, roster.version, [], [], [], 0)
    book: dict[str, dict] = {}

    def plan(current: dict[str, Person]) -> list[str]:
        book.update(_gate_book(state))
        rec = book.get(roster.station, {"version": 0, "known": []})
        if roster.version <= rec["version"]:
            raise RosterError(f"{where}: roster version {roster.version} of station {roster.station} is not "
                              f"newer than version {rec['version']} imported before; nothing changed "
                              "(export a new roster at the station)")
        others = {pid for sid, r in book.items() if sid != roster.station for pid in r["known"]}
        clash = sorted(ids & others)
        if clash:
            raise RosterError(f"{where}: person {clash[0]} belongs to another station's roster; nothing changed")
        mine = set(rec["known"])
        for r in roster.records:
            p, old = r.person, current.get(r.person.id)
            if old is None:
                change.added.append((p.id, p.name))
            elif _differs(old, p):
                change.changed.append((p.id, p.name))
            else:
                change.unchanged += 1
        remove = sorted(pid for pid in current if pid in mine and pid not in ids)
        change.removed = [(pid, current[pid].name) for pid in remove]
        # Widened before the vault is written: after a crash, the next import still knows them all.
        book[roster.station] = {"version": rec["version"], "known": sorted(mine | ids)}
        _write_book(state, book)
        return remove

    def done() -> None:
        book[roster.station]["version"] = roster.version
        _write_book(state, book)

    vault.apply(roster.records, roster.dim, roster.space, where, model_space, plan, done)
    return change


def _differs(a: Person, b: Person) -> bool:
    """Whether the station's record of a person differs from the gate's (last-seen is the gate's own)."""
    def fields(p: Person) -> dict:
        return {k: v for k, v in p.to_dict().items() if k != "last_seen"}

    return fields(a) != fields(b)


def status(vault: Vault, state: Path) -> list[dict[str, Any]]:
    """Per station: the last version imported and how many of its people are enrolled here."""
    here = {p.id for p in vault.people()}
    return [{"station": sid, "version": rec["version"], "people": len(here & set(rec["known"]))}
            for sid, rec in sorted(_gate_book(state).items())]


def import_file(path: Path, vault: Vault, state: Path, cfg: Any, audit: Any, model_space: str | None) -> Change:
    """Open, check and apply one roster file, auditing the outcome either way."""
    where = str(path)
    try:
        data = read_or_none(Path(path))
        if data is None:
            raise RosterError(f"{path}: no such roster file")
        roster = open_roster(data, vault, where)
    except VaultError as e:
        audit("roster.refused", file=Path(path).name[-200:], reason=str(e).removeprefix(f"{where}: ")[:200])
        raise RosterError(str(e)) from None
    return import_opened(roster, where, vault, state, audit, model_space)


def import_opened(roster: Roster, where: str, vault: Vault, state: Path, audit: Any, model_space: str | None,
                  **extra: Any) -> Change:
    """Apply an opened roster; the import (each person added, changed, removed) or the refusal is audited."""
    try:
        change = apply(vault, roster, state, where, model_space)
    except VaultError as e:
        audit("roster.refused", file=Path(where).name[-200:], station=roster.station, version=roster.version,
              reason=str(e).removeprefix(f"{where}: ")[:200], **extra)
        raise RosterError(str(e)) from None
    audit("roster.import", station=change.station, version=change.version, added=len(change.added),
          changed=len(change.changed), removed=len(change.removed), unchanged=change.unchanged, **extra)
    for kind, people in (("add", change.added), ("change", change.changed), ("remove", change.removed)):
        for pid, name in people:  # one entry each, so `audit show --person` finds them
            audit(f"roster.{kind}", station=change.station, version=change.version, person=pid, name=name[:200])
    return change


# ---------------------------------------------------------------- the CLI

def describe(change: Change) -> str:
    parts = [f"roster v{change.version} of station {change.station}: {len(change.added)} added, "
             f"{len(change.changed)} changed, {len(change.removed)} removed, {change.unchanged} unchanged"]
    for word, people in (("added", change.added), ("changed", change.changed), ("removed", change.removed)):
        parts += [f"  {word:8s} {pid} {name}" for pid, name in people]
    return "\n".join(parts)


def change_dict(change: Change) -> dict[str, Any]:
    def ids(people: list[tuple[str, str]]) -> list[dict[str, str]]:
        return [{"id": pid, "name": name} for pid, name in people]

    return {"station": change.station, "version": change.version, "added": ids(change.added),
            "changed": ids(change.changed), "removed": ids(change.removed), "unchanged": change.unchanged}
