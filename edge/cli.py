"""The ``maskgate`` command: parse arguments, call one function, print text or ``--json`` lines.

Exit status (DESIGN.md): 0 success, 1 a failure the command reports (a check failed, access
denied), 2 bad usage or bad input, with a one-line message naming the problem. Tracebacks only with
``--debug``. Logs go to stderr; ``--json`` output is one object per line on stdout.

Each command's module (``edge/commands/``, ``edge.service``, ``edge.keeper``) is imported lazily,
inside its ``_cmd_`` function: ``maskgate --help``, ``audit show`` and the USB stick's check must not
pay for OpenCV, MediaPipe and the TFLite runtime, and the privacy guard is installed before any of
them loads.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from pathlib import Path
from typing import Callable

from edge import __version__
from edge import config as config_mod
from edge import privacy
from edge.clock import parse_at
from edge.commands.output import Output
from edge.errors import MaskgateError
from edge.ownership import check_writer

log = logging.getLogger(__name__)

CHALLENGES = ("blink", "turn-left", "turn-right")
# Commands that may write into --state (vault, keys, locks, audit log): never as root into the gate's.
STATE_WRITERS = {"run", "replay", "enroll", "templates", "roster", "diag", "usb"}


# ---- commands: each takes (args, cfg, out) and returns the exit status ----
# Each one imports its module (edge/commands/, or the domain module it runs) when it runs, not at
# start-up: `maskgate --help`, `audit show` or `events` do not load MediaPipe, TFLite, OpenCV or the
# vault's crypto, and a guarded command imports after its privacy.install(). The function-level imports
# below are that, and only that.

def _cmd_demo(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    privacy.install()  # first: no socket, no image file from here on
    from edge.commands import demo

    if getattr(args, "display", None):   # the screens too
        return demo.run(cfg, out, args.display, args.pause)
    return demo.demo(cfg, out)


def _cmd_run(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    privacy.install()  # first: no socket, no image file from here on
    from edge import service

    _named_or_refused(args.config, cfg)

    return service.run(cfg, Path(args.state), config_path=args.config)


def _cmd_door_keeper(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    from edge import keeper

    if args.relay_off:
        return keeper.relay_off(cfg, Path(args.state))
    return keeper.serve(cfg, Path(args.state))


def _named_or_refused(path: str | None, cfg: config_mod.Config) -> None:
    """The daemon on simulated pins or a recording only when the config asks for them by name: a
    gate whose config went missing or empty must not run the demo's mock door on a real door."""
    named = config_mod.named(path)
    for section, key, value, real in (("door", "backend", cfg.door.backend, '"gpiozero" or "gpiod"'),
                                      ("camera", "source", cfg.camera.source, '"opencv" or "picamera2"')):
        if value in ("mock", "replay") and key not in named.get(section, set()):
            where = path or config_mod.DEFAULT_CONFIG
            raise config_mod.ConfigError(
                f"{where}: {section}.{key} is not set, and its default ({value!r}) is for the demo: "
                f"set {section}.{key} to {real} (or to \"{value}\" by name, for a test bench)")


def _cmd_replay(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    privacy.install()  # first: no socket, no image file from here on
    from edge.commands import gate

    at = parse_at(args.at) if args.at else None
    return gate.replay(Path(args.video), cfg, Path(args.state), out, challenges=args.challenge,
                       claim=args.claim, at=at)


def _cmd_embed(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    from edge.commands import embed

    return embed.embed_images([Path(p) for p in args.images], cfg, out)


def _cmd_identify(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    from edge.commands import identify

    return identify.identify_images([Path(p) for p in args.images], cfg, Path(args.state), out)


def _cmd_liveness(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    from edge.commands import liveness

    return liveness.judge_video(Path(args.video), args.challenge, cfg, out)


def _cmd_enroll(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    privacy.install()  # enrolment reads live frames: no socket, no image file from here on
    from edge.commands import enroll

    return enroll.enroll_cli(args.name, args.source, args.consent, cfg, Path(args.state), out,
                             operator=args.operator, expires=args.expires, card=args.card, pin=args.pin,
                             allow_look_alike=args.allow_look_alike,
                             groups=args.group, valid_from=args.valid_from, valid_until=args.valid_until)


def _cmd_templates(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    from edge.commands import templates

    return templates.templates_cli(args, cfg, Path(args.state), out)


def _cmd_roster(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    from edge.commands import roster

    return roster.roster_cli(args, cfg, Path(args.state), out)


def _cmd_usb(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    from edge.commands import usb

    return usb.usb_cli(args, cfg, Path(args.state), out)


def _cmd_audit(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    from edge.commands import audit

    return audit.audit_cli(args, cfg, Path(args.state), out)


def _cmd_diag(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    if not args.checks or "camera" in args.checks:
        privacy.install()  # the camera check looks at live frames
    from edge.commands import diag as diag_cmd  # lazy: numpy and OpenCV load only for this command

    return diag_cmd.run_checks(args.checks, cfg, Path(args.state), out, yes=args.yes)


def _cmd_events(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    privacy.install()  # a reader of the local stream: no network here either
    from edge.commands import events

    return events.events_cli(cfg.events, out, count=args.count)


def _cmd_mqtt(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    # No privacy guard: the bridge is the one part of maskgate that opens an IP socket, to the
    # configured broker only (its own unit, IPAddressAllow=); it sees only the event stream.
    from edge import mqtt_bridge

    return mqtt_bridge.run(cfg, out.text)


def _cmd_bench(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    from edge.commands import bench

    return bench.run(cfg, out, video=Path(args.video) if args.video else None, frames=args.frames,
                     templates=args.templates)


def _cmd_preview(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    privacy.install()  # live frames on the screen only, never on disk or the network
    from edge.commands import diag as diag_cmd  # lazy: numpy and OpenCV load only for this command

    return diag_cmd.preview(cfg, out, text_only=args.text)


def _access_options(sp: argparse.ArgumentParser, change: bool = False) -> None:
    """--group / --valid-from / --valid-until (edge.access) for ``enroll`` and ``templates access``."""
    sp.add_argument("--group", action="append", metavar="NAME",
                    help="an [access.groups] group (repeatable; default: [access] default_group)"
                    + ("; replaces the person's groups, `default` puts them back in the default group" if change else ""))
    clear = "; `none` removes it" if change else ""
    sp.add_argument("--valid-from", metavar="LOCAL-TIME", help=f"visitor pass starts, e.g. 2027-01-05T09:00{clear}")
    sp.add_argument("--valid-until", metavar="LOCAL-TIME",
                    help=f"visitor pass ends, e.g. 2027-01-05T18:00 (a bare date: the end of that day){clear}")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("global options")
    g.add_argument("--config", default=argparse.SUPPRESS,
                   help=f"config file (default {config_mod.DEFAULT_CONFIG}; missing default = built-in defaults)")
    g.add_argument("--state", default=argparse.SUPPRESS,
                   help=f"state directory: vault, device key, audit log (default {config_mod.DEFAULT_STATE})")
    g.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="one JSON object per line")
    g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="debug logs and tracebacks")
    g.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="info logs")

    p = argparse.ArgumentParser(prog="maskgate", parents=[common],
                                description="Face access control at the gate: masks on, images never kept.")
    p.add_argument("--version", action="version", version=f"maskgate {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, func: Callable[..., int], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, parents=[common], help=help, description=help)
        sp.set_defaults(func=func)
        return sp

    sp = add("demo", _cmd_demo, "the whole gate on the bundled clip, mock relay, temporary state")
    sp.add_argument("--display", choices=("window", "framebuffer"),
                    help="also show the resident's screens (window: a desktop window; then every screen in turn)")
    sp.add_argument("--pause", type=float, default=1.5, metavar="SECONDS",
                    help="with --display: how long each screen of the tour stays up (default 1.5)")
    add("run", _cmd_run, "the gate daemon (camera, GPIO, systemd notify)")
    sp = add("door-keeper", _cmd_door_keeper, "the door keeper: owns the GPIO lines, times every unlock")
    sp.add_argument("--relay-off", action="store_true",
                    help="drive the relay line off and exit (the keeper unit's ExecStopPost)")
    sp = add("replay", _cmd_replay, "the whole gate on a recorded video, as fast as it decodes")
    sp.add_argument("video")
    sp.add_argument("--challenge", nargs="+", choices=CHALLENGES, metavar="NAME",
                    help="the challenge sequence to ask (a recording can only answer what it shows)")
    sp.add_argument("--claim", metavar="NUMBER", help="a card presented at the start of the recording (claim mode)")
    sp.add_argument("--at", metavar="LOCAL-TIME",
                    help="judge the access rules as if the recording started then, e.g. 2027-01-05T12:00")
    sp = add("embed", _cmd_embed, "eye-region embedding of the largest face in each image")
    sp.add_argument("images", nargs="+", metavar="IMAGE")
    sp = add("identify", _cmd_identify, "whom the recogniser takes each image's face for (no liveness)")
    sp.add_argument("images", nargs="+", metavar="IMAGE")
    sp = add("liveness", _cmd_liveness, "judge one challenge on a recorded video")
    sp.add_argument("video")
    sp.add_argument("--challenge", required=True, choices=CHALLENGES)
    sp = add("enroll", _cmd_enroll, "enrol a person from the camera, a video, an image folder or images")
    sp.add_argument("name")
    sp.add_argument("--from", dest="source", required=True, nargs="+", metavar="SOURCE",
                    help="camera, a video, an image folder, or image files")
    sp.add_argument("--consent", required=True, metavar="TEXT",
                    help="the person's recorded consent (text or a reference to the signed form)")
    sp.add_argument("--operator", default="", help="who enrolled them (kept in the consent record)")
    sp.add_argument("--expires", metavar="YYYY-MM-DD", help="the day their access ends (then purged)")
    sp.add_argument("--allow-look-alike", action="store_true",
                    help="enrol even when the face matches someone enrolled (twins, relatives)")
    sp.add_argument("--card", metavar="NUMBER", help="their card or fob number (claim mode)")
    sp.add_argument("--pin", action="store_true", help="ask for their PIN on the terminal, twice (claim mode)")
    _access_options(sp)
    sp = add("templates", _cmd_templates,
             "vault administration: list, add, remove, rekey, export, import, pubkey, purge, keygen, "
             "set-card, clear-card, set-pin, clear-pin")
    tsub = sp.add_subparsers(dest="action", metavar="ACTION", required=True)
    tsub.add_parser("list", parents=[common], help="people enrolled (no embeddings shown)")
    t = tsub.add_parser("add", parents=[common], help="more templates for someone enrolled (same quality gates)")
    t.add_argument("person", help="person id or name")
    t.add_argument("--from", dest="source", required=True, nargs="+", metavar="SOURCE",
                   help="camera, a video, an image folder, or image files")
    t.add_argument("--allow-look-alike", action="store_true", help="add even when the frames match someone else better")
    t = tsub.add_parser("remove", parents=[common], help="remove a person for good")
    t.add_argument("person", help="person id or name")
    tsub.add_parser("rekey", parents=[common], help="new key and transform; old copies match nobody")
    t = tsub.add_parser("export", parents=[common], help="a bundle sealed to another device and signed")
    t.add_argument("--to", required=True, metavar="PUBKEY", help="the target device's public key (hex)")
    t.add_argument("--sign-key", required=True, metavar="FILE", help="the installer's Ed25519 signing key file")
    t.add_argument("--out", required=True, metavar="FILE")
    t = tsub.add_parser("import", parents=[common], help="import a signed bundle from a trusted installer")
    t.add_argument("bundle")
    tsub.add_parser("pubkey", parents=[common], help="this device's public key, for export --to")
    tsub.add_parser("purge", parents=[common], help="remove records past their expiry or retention")
    t = tsub.add_parser("access", parents=[common], help="change a person's groups or visitor pass")
    t.add_argument("person", help="person id or name")
    _access_options(t, change=True)
    t = tsub.add_parser("keygen", parents=[common], help="make an installer's Ed25519 signing key for export")
    t.add_argument("--out", required=True, metavar="FILE")
    t = tsub.add_parser("set-card", parents=[common], help="give a person a card or fob number (claim mode)")
    t.add_argument("person", help="person id or name")
    t.add_argument("number", help="the card number (as the reader sends it, or facility,card)")
    for action, what in (("clear-card", "take a person's card number away"),
                         ("set-pin", "set a person's PIN, asked twice on the terminal"),
                         ("clear-pin", "take a person's PIN away")):
        t = tsub.add_parser(action, parents=[common], help=what)
        t.add_argument("person", help="person id or name")
    sp = add("roster", _cmd_roster, "rosters: an enrolment station's whole list of people for one gate")
    rsub = sp.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = rsub.add_parser("export", parents=[common], help="this station's people, the next version, for one gate")
    r.add_argument("--to", required=True, metavar="PUBKEY", help="the gate's public key (templates pubkey there)")
    r.add_argument("--sign-key", required=True, metavar="FILE", help="the installer's Ed25519 signing key file")
    r.add_argument("--out", required=True, metavar="FILE|DIR", help="the roster file, or a folder (a stick's maskgate/)")
    r = rsub.add_parser("import", parents=[common], help="make this gate's people from that station equal to it")
    r.add_argument("roster")
    rsub.add_parser("status", parents=[common], help="this station's id; the rosters imported here")
    sp = add("usb", _cmd_usb, "administration by USB stick: import its rosters; with a signed request, "
                              "write this gate's key, diag and audit log onto it")
    sp.add_argument("dir", metavar="DIR", help="where the stick is mounted (it holds a maskgate/ folder)")
    sp.add_argument("--check-request", action="store_true", help="exit 0 when the stick holds a valid request")
    sp.add_argument("--request", action="store_true", help="(station) write a signed report request onto the stick")
    sp.add_argument("--sign-key", metavar="FILE", help="with --request: the installer's signing key file")
    sp.add_argument("--gate", metavar="PUBKEY", help="with --request: only this gate (default: any gate)")
    sp.add_argument("--days", type=float, default=30.0, help="with --request: valid this many days (default 30)")
    sp = add("audit", _cmd_audit, "the tamper-evident event log")
    asub = sp.add_subparsers(dest="action", metavar="ACTION", required=True)
    asub.add_parser("verify", parents=[common], help="check the hash chain")
    a = asub.add_parser("show", parents=[common], help="print the newest entries (those matching the filters)")
    a.add_argument("-n", type=int, default=20)
    # "--json FILE" names the export's format here, so this parser takes the global options but --json.
    e = asub.add_parser("export", help="the entries (matching the filters) to a file; never images")
    e.add_argument("--config", default=argparse.SUPPRESS, help="config file")
    e.add_argument("--state", default=argparse.SUPPRESS, help="state directory")
    e.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="debug logs and tracebacks")
    e.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="info logs")
    fmt = e.add_mutually_exclusive_group(required=True)
    fmt.add_argument("--csv", metavar="FILE", help="CSV, one row per entry ('-': stdout)")
    fmt.add_argument("--json", "--jsonl", dest="json_file", metavar="FILE",
                     help="JSON lines as in the log, byte for byte ('-': stdout)")
    for x in (a, e):
        x.add_argument("--person", metavar="NAME|ID", help="entries about this person")
        x.add_argument("--event", metavar="KIND", help="decision, door, door.unlock, roster, vault.enroll, ...")
        x.add_argument("--since", metavar="TIME", help="from this local time (2026-12-01 or '2026-12-01 18:00')")
        x.add_argument("--until", metavar="TIME", help="up to this time (a date: through that day)")
    sp = add("diag", _cmd_diag, "technician checks, each ok / warn / fail with a hint")
    sp.add_argument("checks", nargs="*", metavar="CHECK")
    sp.add_argument("--yes", action="store_true", help="allow the relay click test")
    sp = add("events", _cmd_events, "follow the local event stream: decisions, door changes, alarms")
    sp.add_argument("--count", type=int, metavar="N", help="stop after N events")
    add("mqtt", _cmd_mqtt, "the optional MQTT bridge: the event stream to a broker (Home Assistant discovery)")
    sp = add("bench", _cmd_bench, "per-stage timings on the bundled clip")
    sp.add_argument("--video", help="another recording instead of the bundled clip")
    sp.add_argument("--frames", type=int, default=150, help="frames to time (default 150)")
    sp.add_argument("--templates", type=int, default=10_000,
                    help="gallery size for the match stage (default 10000: 2,000 people x 5)")
    sp = add("preview", _cmd_preview, "camera positioning aid; nothing is saved")
    sp.add_argument("--text", action="store_true", help="terminal readout even when a display exists")
    return p


def _setup_logging(debug: bool, verbose: bool) -> None:
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _check_state(state: Path) -> None:
    """A state directory that cannot be one is bad usage, said before any command trips over it."""
    if state.exists() and not state.is_dir():
        raise MaskgateError(f"--state {state} is not a directory (the state directory holds the vault, "
                            f"the device key and the audit log)")
    if state.is_dir() and not os.access(state, os.R_OK | os.X_OK):
        raise MaskgateError(f"--state {state}: permission denied (run as the maskgate user, "
                            f"e.g. sudo -u maskgate maskgate ...)")


def _os_error(e: OSError) -> str:
    """One line with the file and a hint for the usual causes."""
    where = f"{e.filename}: " if e.filename else ""
    hint = {errno.ENOSPC: "the disk is full: free space on it",
            errno.EROFS: "the file system is read-only: check the SD card and mount options",
            errno.EACCES: "permission denied: run as the maskgate user (sudo -u maskgate ...) or check the owner",
            errno.EPERM: "not permitted: run as the maskgate user or check the owner",
            errno.ENOTDIR: "a file stands where a directory should be: check --state",
            errno.EEXIST: "a file stands in the way: check --state",
            errno.EIO: "an I/O error: the storage may be failing"}.get(e.errno or 0, "check the path and its permissions")
    return f"{where}{e.strerror or e} ({hint})"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name, default in (("config", None), ("state", str(config_mod.DEFAULT_STATE)),
                          ("json", False), ("debug", False), ("verbose", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    _setup_logging(args.debug, args.verbose)
    try:
        if args.command in STATE_WRITERS and getattr(args, "action", None) != "keygen":
            check_writer(Path(args.state))  # before anything is written: no root-owned files for the daemon
        cfg = config_mod.load(args.config)
        if args.command in ("run", "door-keeper", "replay", "enroll", "templates", "audit", "diag"):
            _check_state(Path(args.state))
        return int(args.func(args, cfg, Output(args.json)))
    except OSError as e:  # an I/O failure no module turned into its own error: say which file and why
        if args.debug:
            log.exception("failed")
        print(f"maskgate: error: {_os_error(e)}", file=sys.stderr)
        return 1
    except MaskgateError as e:
        if args.debug:
            log.exception("failed")
        print(f"maskgate: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # `maskgate replay ... | head`: the reader left, not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("maskgate: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: say so in one line unless --debug
        if args.debug:
            raise
        print(f"maskgate: internal error: {type(e).__name__}: {e} (run with --debug for details)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
