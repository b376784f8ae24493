"""The ``maskgate`` command: parse arguments, call one function, print text or ``--json`` lines.

Exit status (DESIGN.md): 0 success, 1 a failure the command reports (a check failed, access
denied), 2 bad usage or bad input, with a one-line message naming the problem. Tracebacks only with
``--debug``. Logs go to stderr; ``--json`` output is one object per line on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

from edge import __version__
from edge import config as config_mod
from edge import privacy
from edge.errors import MaskgateError

log = logging.getLogger(__name__)

CHALLENGES = ("blink", "turn-left", "turn-right")


class Output:
    """Where a command's results go: JSON lines or human text on stdout."""

    def __init__(self, as_json: bool) -> None:
        self.json = as_json

    def event(self, obj: dict[str, Any], text: str | None = None) -> None:
        """One result: the object as a JSON line, or ``text`` (default: key=value pairs)."""
        if self.json:
            print(json.dumps(obj, separators=(", ", ": ")), flush=True)
        else:
            print(text if text is not None else " ".join(f"{k}={v}" for k, v in obj.items()), flush=True)

    def text(self, line: str) -> None:
        """Human-only output (skipped under --json)."""
        if not self.json:
            print(line, flush=True)


# ---- commands: each takes (args, cfg, out) and returns the exit status ----

def _cmd_demo(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    privacy.install()  # first: no socket, no image file from here on
    from edge import gate

    if getattr(args, "display", None):   # the screens too (edge/display/demo.py)
        from edge.display import demo

        return demo.run(cfg, out, args.display)
    return gate.demo(cfg, out)


def _cmd_run(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    privacy.install()  # first: no socket, no image file from here on
    from edge import service

    return service.run(cfg, Path(args.state))


def _cmd_replay(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    privacy.install()  # first: no socket, no image file from here on
    from edge import gate

    return gate.replay(Path(args.video), cfg, Path(args.state), out, challenges=args.challenge,
                       claim=args.claim)


def _cmd_embed(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    from edge import embed

    return embed.embed_images([Path(p) for p in args.images], cfg, out)


def _cmd_liveness(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    from edge import liveness

    return liveness.judge_video(Path(args.video), args.challenge, cfg, out)


def _cmd_enroll(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    from edge import enroll

    return enroll.enroll_cli(args.name, args.source, args.consent, cfg, Path(args.state), out,
                             operator=args.operator, expires=args.expires, card=args.card, pin=args.pin)


def _cmd_templates(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    from edge import vault

    return vault.templates_cli(args, cfg, Path(args.state), out)


def _cmd_audit(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    from edge import audit

    return audit.audit_cli(args, cfg, Path(args.state), out)


def _cmd_diag(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    from edge import diag

    return diag.run_checks(args.checks, cfg, Path(args.state), out, yes=args.yes)


def _cmd_bench(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    from edge import bench

    return bench.run(cfg, out, video=Path(args.video) if args.video else None, frames=args.frames,
                     templates=args.templates)


def _cmd_preview(args: argparse.Namespace, cfg: config_mod.Config, out: Output) -> int:
    from edge import diag

    return diag.preview(cfg, out, text_only=args.text)


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
    add("run", _cmd_run, "the gate daemon (camera, GPIO, systemd notify)")
    sp = add("replay", _cmd_replay, "the whole gate on a recorded video, as fast as it decodes")
    sp.add_argument("video")
    sp.add_argument("--challenge", nargs="+", choices=CHALLENGES, metavar="NAME",
                    help="the challenge sequence to ask (a recording can only answer what it shows)")
    sp.add_argument("--claim", metavar="NUMBER", help="a card presented at the start of the recording (claim mode)")
    sp = add("embed", _cmd_embed, "eye-region embedding of the largest face in each image")
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
    sp.add_argument("--card", metavar="NUMBER", help="their card or fob number (claim mode)")
    sp.add_argument("--pin", action="store_true", help="ask for their PIN on the terminal, twice (claim mode)")
    sp = add("templates", _cmd_templates,
             "vault administration: list, remove, rekey, export, import, pubkey, purge, keygen, "
             "set-card, clear-card, set-pin, clear-pin")
    tsub = sp.add_subparsers(dest="action", metavar="ACTION", required=True)
    tsub.add_parser("list", parents=[common], help="people enrolled (no embeddings shown)")
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
    sp = add("audit", _cmd_audit, "the tamper-evident event log")
    asub = sp.add_subparsers(dest="action", metavar="ACTION", required=True)
    asub.add_parser("verify", parents=[common], help="check the hash chain")
    a = asub.add_parser("show", parents=[common], help="print the newest entries")
    a.add_argument("-n", type=int, default=20)
    sp = add("diag", _cmd_diag, "technician checks, each ok / warn / fail with a hint")
    sp.add_argument("checks", nargs="*", metavar="CHECK")
    sp.add_argument("--yes", action="store_true", help="allow the relay click test")
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name, default in (("config", None), ("state", str(config_mod.DEFAULT_STATE)),
                          ("json", False), ("debug", False), ("verbose", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    _setup_logging(args.debug, args.verbose)
    try:
        cfg = config_mod.load(args.config)
        return int(args.func(args, cfg, Output(args.json)))
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
