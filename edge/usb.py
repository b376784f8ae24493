"""Administration by USB stick: the way in for a gate with no network, no console and no login.

A stick with a ``maskgate/`` folder, plugged into a gate (``systemd/maskgate-usb@.service``, started
by ``systemd/80-maskgate-usb.rules``, mounts it read-only and runs ``maskgate usb MOUNTPOINT``):

- every roster on it sealed to this gate (``maskgate/*.roster``) is imported, the newest per station
  (``edge.roster``: unsigned, altered, foreign or old ones are refused and audited); rosters for
  other gates are left alone, so one stick can serve a whole site;
- when it also holds ``maskgate/request.signed``, a report request signed by a key in
  ``vault.trusted_keys`` and not expired, the gate writes into ``maskgate/from-gates/<its key>/``:
  ``pubkey.txt`` (what a station seals rosters to), ``diag.jsonl`` (``diag --json`` without the
  camera and door checks, which belong to the running gate), ``audit.jsonl`` and ``audit.csv`` (the
  whole log; never images: the log holds none) and ``result.json``, then syncs and says done.

"Done" is said in the journal and on the door's LED and buzzer, through the door keeper (which owns
those pins): pattern ``done`` (two long flashes and beeps) when everything on the stick was taken,
``denied`` (three short beeps) when something was refused; the journal says what. Without a keeper
(a station, a test) only the journal says it.

Without a valid request nothing is written to the stick: an unknown stick can bring a signed roster
but take nothing away. A station writes the request with ``maskgate usb DIR --request --sign-key KEY``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge import audit_query, diag, roster
from edge.audit import LOG_NAME, record
from edge.errors import DoorError, MaskgateError, VaultError
from edge.files import atomic_write
from edge.keeper import KeeperDoor, socket_path
from edge.vault import Vault

log = logging.getLogger(__name__)

FOLDER = "maskgate"
REQUEST = "request.signed"
OUT = "from-gates"
KIND = "maskgate-report-request"
DIAG_CHECKS = ("models", "vault", "audit", "clock", "board", "disk", "service")
MAX_REQUEST = 4096


class UsbError(MaskgateError):
    """The stick cannot be used: no maskgate/ folder, a request that cannot be written, ..."""


@dataclass
class Outcome:
    """What one stick did on this gate."""

    imported: list[dict] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    report: str | None = None
    request: str = "none"
    led: str | None = None   # what the door keeper played for it (signal_done), None without a keeper


# ---------------------------------------------------------------- the signed request

def make_request(signing_key: bytes, gate: str = "*", days: float = 30.0, now: float | None = None) -> bytes:
    """A report request signed by an installer's Ed25519 key (the one in the gates' trusted_keys)."""
    from nacl.signing import SigningKey

    now = time.time() if now is None else now
    if gate != "*" and (len(gate) != 64 or any(c not in "0123456789abcdef" for c in gate.lower())):
        raise UsbError(f"--gate must be a gate's public key (64 hex characters) or '*', not {gate[:80]!r}")
    if not 0 < days <= 366:
        raise UsbError(f"--days must be between 0 and 366, not {days:g}")
    key = SigningKey(signing_key)
    body = json.dumps({"kind": KIND, "gate": gate.lower(), "created": now, "expires": now + days * 86400},
                      separators=(",", ":")).encode()
    return json.dumps({"signer": bytes(key.verify_key).hex(), "signed": bytes(key.sign(body)).hex()}).encode() + b"\n"


def check_request(data: bytes, trusted: list[str], public_key: str, now: float | None = None) -> str:
    """Why the request is refused, or "" when it is valid for this gate now."""
    from nacl.exceptions import BadSignatureError, CryptoError
    from nacl.signing import VerifyKey

    now = time.time() if now is None else now
    try:
        outer = json.loads(data[:MAX_REQUEST])
        signer, signed = bytes.fromhex(outer["signer"]), bytes.fromhex(outer["signed"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return "not a maskgate request (malformed)"
    if signer.hex() not in {k.lower() for k in trusted}:
        return f"signed by {signer.hex()[:16]}..., which is not in vault.trusted_keys"
    try:
        body = json.loads(VerifyKey(signer).verify(signed))
    except (BadSignatureError, CryptoError, ValueError, TypeError):
        return "bad signature (altered)"
    if not isinstance(body, dict) or body.get("kind") != KIND:
        return "not a report request"
    if body.get("gate") not in ("*", public_key):
        return f"made for gate {str(body.get('gate'))[:16]}..., not this one"
    created, expires = body.get("created"), body.get("expires")
    if not isinstance(created, (int, float)) or not isinstance(expires, (int, float)):
        return "malformed times"
    if now >= expires:
        return f"expired on {time.strftime('%Y-%m-%d %H:%M', time.localtime(expires))} (make a new one)"
    if created > now + 86400:
        return "made in the future (is this gate's clock right? maskgate diag clock)"
    return ""


# ---------------------------------------------------------------- the gate's side

def _rosters(folder: Path, vault: Any, state: Path, audit: Any, model_space: str | None, outcome: Outcome) -> None:
    mine: list[tuple[Path, Any]] = []
    for path in sorted(folder.glob("*" + roster.SUFFIX)):
        try:
            data = path.read_bytes()
        except OSError as e:
            outcome.refused.append({"file": path.name, "reason": f"unreadable: {e.strerror}"})
            continue
        if data.startswith(roster.ROSTER_MAGIC) and not roster.is_for(data, vault.public_key()):
            outcome.skipped.append({"file": path.name, "reason": "for another gate"})
            continue
        try:
            mine.append((path, roster.open_roster(data, vault, path.name)))
        except VaultError as e:
            audit("roster.refused", file=path.name[-200:], source="usb", reason=str(e)[:200])
            outcome.refused.append({"file": path.name, "reason": str(e)})
    newest: dict[str, tuple[Path, Any]] = {}
    for path, r in mine:
        if r.station not in newest or r.version > newest[r.station][1].version:
            newest[r.station] = (path, r)
    for path, r in mine:
        if newest[r.station][0] != path:
            outcome.skipped.append({"file": path.name, "reason": f"superseded by v{newest[r.station][1].version} "
                                                                 f"of station {r.station} on the stick"})
    for path, r in newest.values():
        try:
            change = roster.import_opened(r, path.name, vault, state, audit, model_space, source="usb")
        except VaultError as e:
            outcome.refused.append({"file": path.name, "reason": str(e)})
            continue
        outcome.imported.append({"file": path.name, **roster.change_dict(change)})


def write_to_stick(path: Path, data: bytes) -> None:
    try:
        atomic_write(path, data, 0o644)
    except OSError as e:
        raise UsbError(f"{path}: cannot write to the stick: {e.strerror} (mounted read-only? a FAT stick "
                       "mounted for the service user?)") from None


def _report(folder: Path, vault: Any, cfg: Any, state: Path, outcome: Outcome) -> Path:
    dest = folder / OUT / vault.public_key()[:16]
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsbError(f"{dest}: cannot write to the stick: {e.strerror}") from None
    write_to_stick(dest / "pubkey.txt", f"{vault.public_key()}\n".encode())
    ctx = diag.Context(cfg, state)
    lines = [json.dumps(diag.run_one(name, ctx).as_dict(), separators=(", ", ": ")) for name in DIAG_CHECKS]
    write_to_stick(dest / "diag.jsonl", "".join(line + "\n" for line in lines).encode())
    rows = audit_query.select(state / LOG_NAME, audit_query.Query())
    write_to_stick(dest / "audit.jsonl", audit_query.to_jsonl(rows))
    write_to_stick(dest / "audit.csv", audit_query.to_csv(rows))
    return dest


def process(stick: Path, cfg: Any, state: Path) -> Outcome:
    """``maskgate usb DIR``: rosters in, and with a signed request the report out; what was imported,
    refused and skipped (``Outcome.refused`` not empty: the command exits 1)."""
    from edge.embed import installed_space  # lazy: edge.embed brings OpenCV, which --check-request need not

    folder = Path(stick) / FOLDER
    if not folder.is_dir():
        raise UsbError(f"{stick}: no {FOLDER}/ folder: not a maskgate stick")

    def audit(event: str, **fields: Any) -> None:
        record(state, cfg.audit, event, **fields)

    vault = Vault.open(state, cfg.vault)
    outcome = Outcome()
    _rosters(folder, vault, state, audit, installed_space(cfg.embed.model), outcome)
    req = folder / REQUEST
    if req.is_file():
        why = check_request(req.read_bytes()[:MAX_REQUEST], cfg.vault.trusted_keys, vault.public_key())
        if why:
            outcome.request = f"refused: {why}"
            outcome.refused.append({"file": REQUEST, "reason": why})
            audit("usb.request_refused", reason=why[:200])
        else:
            outcome.request = "accepted"
            dest = _report(folder, vault, cfg, state, outcome)
            outcome.report = str(dest)
            audit("usb.report", written=str(dest.relative_to(stick))[:200])
    result = {"stick": str(stick), "imported": outcome.imported, "refused": outcome.refused,
              "skipped": outcome.skipped, "request": outcome.request, "report": outcome.report,
              "done": True}
    if outcome.report:
        write_to_stick(Path(outcome.report) / "result.json", json.dumps(result, indent=1).encode() + b"\n")
        os.sync()  # the stick may be pulled as soon as the gate says done
    status = "done" if not outcome.refused else "done, with refusals"
    outcome.led = signal_done(cfg, state, refused=bool(outcome.refused))
    log.info("usb stick %s: %s", stick, status)
    audit("usb.done", imported=len(outcome.imported), refused=len(outcome.refused), request=outcome.request[:200])
    return outcome


def signal_done(cfg: Any, state: Path, refused: bool) -> str | None:
    """Tell the technician at the gate that the stick may be pulled: the door keeper plays ``done``
    (or ``denied`` when something was refused) on the LED and buzzer. Returns the pattern played, or
    None when no keeper answers (never raises: the stick is dealt with either way)."""
    pattern = "denied" if refused else "done"
    try:
        door = KeeperDoor(socket_path(cfg, state), timeout=2.0)
    except DoorError as e:
        log.info("usb: no door keeper to show %s on the LED (%s)", pattern, e)
        return None
    try:
        door.call({"op": "indicate", "pattern": pattern})
    except DoorError as e:
        log.warning("usb: the door keeper did not show %s: %s", pattern, e)
        return None
    finally:
        door.close()
    return pattern


def has_valid_request(stick: Path, cfg: Any, state: Path) -> bool:
    """For the unit's script: whether to remount the stick read-write (exit 0) or keep it read-only."""
    req = Path(stick) / FOLDER / REQUEST
    if not req.is_file():
        return False
    vault = Vault.open(state, cfg.vault)
    return not check_request(req.read_bytes()[:MAX_REQUEST], cfg.vault.trusted_keys, vault.public_key())
