#!/usr/bin/env python3
"""Measure, from outside the process, what ``maskgate replay`` sends and writes: the figures of PRIVACY.md.

It builds a long recording from the bundled clips (the demo person, whom it enrols first, and the
test fixtures of other people, letterboxed to 512 x 512 and repeated), then runs the real
``maskgate replay`` on it under ``strace -f`` with every socket, file and write system call traced,
and prints:

- sockets created by family, and any syscall naming an IP address;
- programs started;
- every file opened for writing, and the bytes written to each (stdout and stderr included);
- the bytes of image or video data written: writes to a file with an image/video name, plus every
  byte written to a file or stream whose first bytes are an image/video magic number, plus any
  image-shaped data found by ``edge.privacy.image_traces`` in the state directory, stdout or stderr
  afterwards.

Exit 0 when all of it is clean, 1 otherwise. Run it niced; 10 minutes of footage takes a while on
two cores: ``nice -n 10 .venv/bin/python evaluation/measure_privacy.py --minutes 10``.

The recording is built by this script (not by the gate) in a temporary folder that is deleted at
the end; it is the only video file written, and it is written before tracing starts.
"""

from __future__ import annotations

import argparse
import codecs
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from edge.privacy import image_traces, media_kind, media_name

ROOT = Path(__file__).resolve().parent.parent

CLIPS = [ROOT / "edge" / "demo" / "clip.mp4", *sorted((ROOT / "tests" / "fixtures").glob("*.mp4"))]
ENROLL = ROOT / "edge" / "demo" / "enroll"
SIZE = 512
FPS = 30.0
TRACED = ("socket,socketpair,connect,bind,sendto,sendmsg,open,openat,openat2,creat,rename,renameat,"
          "renameat2,link,linkat,symlink,symlinkat,truncate,execve,write,pwrite64,writev,pwritev,pwritev2")

_CALL = re.compile(r"^(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+)")
_FD = re.compile(r"^(-?\d+|AT_FDCWD)<((?:[^>\\]|\\.)*)>")
_STR = re.compile(r'"((?:[^"\\]|\\.)*)"')
_WRITE_FLAGS = re.compile(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND")


def build_video(path: Path, minutes: float) -> int:
    """Letterbox the clips to SIZE x SIZE at FPS and repeat them until ``minutes`` of footage."""
    import cv2
    import numpy as np

    want = int(minutes * 60 * FPS)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (SIZE, SIZE))
    n = 0
    while n < want:
        for clip in CLIPS:
            cap = cv2.VideoCapture(str(clip))
            while n < want:
                ok, bgr = cap.read()
                if not ok:
                    break
                h, w = bgr.shape[:2]
                s = SIZE / max(h, w)
                small = cv2.resize(bgr, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
                canvas = np.zeros((SIZE, SIZE, 3), np.uint8)
                y, x = (SIZE - small.shape[0]) // 2, (SIZE - small.shape[1]) // 2
                canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
                writer.write(canvas)
                n += 1
            cap.release()
    writer.release()
    return n


def model_line() -> str:
    """Which embedder the gate ran with (``$MASKGATE_MODELS`` or ``models/``), by file and sha256."""
    from edge.embed import load_spec
    from edge.errors import ModelError

    try:
        spec = load_spec()
    except ModelError as e:
        return f"none ({e}: every approach is denied as a gate fault)"
    return f"{spec.path} (sha256 {spec.sha256[:12]}...)"


def unescape(s: str) -> bytes:
    return codecs.escape_decode(s.encode("latin-1", "backslashreplace"))[0]


def analyse(trace: str) -> dict:
    """Sockets, programs, files opened for writing, and bytes written per file (first bytes kept)."""
    sockets: Counter[str] = Counter()
    ip: list[str] = []
    programs: list[str] = []
    opened: set[str] = set()
    written: Counter[str] = Counter()
    image: Counter[str] = Counter()   # bytes written to a file whose first bytes were image data
    fresh: set[str] = set()           # opened empty (new or truncated); the next write is at offset 0
    is_image: dict[str, bool] = {}
    for line in trace.splitlines():
        m = _CALL.match(line)
        if not m:
            continue
        _, call, args, ret = m.groups()
        ok = int(ret) >= 0
        if call in ("socket", "socketpair") and ok:
            sockets[args.split(",")[0]] += 1
        if "AF_INET" in args or "sin_addr" in args or "sin6_addr" in args:
            ip.append(line)
        strings = _STR.findall(args)
        if call == "execve" and ok and strings:
            programs.append(unescape(strings[0]).decode())
        elif call in ("open", "openat", "openat2", "creat") and ok and (call == "creat" or _WRITE_FLAGS.search(args)):
            target = re.search(r"=\s+\d+<((?:[^>\\]|\\.)*)>\s*$", line)
            path = unescape(target.group(1)).decode() if target else unescape(strings[0]).decode()
            opened.add(path)
            if "O_TRUNC" in args or "O_EXCL" in args or call == "creat":
                fresh.add(path)
        elif call in ("rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat") and ok:
            opened.add(unescape(strings[-1]).decode())
        elif call in ("write", "pwrite64", "writev", "pwritev", "pwritev2") and ok:
            fd = _FD.match(args)
            path = unescape(fd.group(2)).decode() if fd else "?"
            written[path] += int(ret)
            if path in fresh or path not in is_image:  # a stream's or a file's first bytes
                fresh.discard(path)
                head = b"".join(unescape(s) for s in strings)
                is_image[path] = media_name(path) or media_kind(head) is not None
            if is_image[path]:
                image[path] += int(ret)
    return {"sockets": sockets, "ip": ip, "programs": programs, "opened": opened, "written": written,
            "image": image}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="minutes of footage to replay (default 10)")
    ap.add_argument("--video", help="replay this recording instead of building one")
    ap.add_argument("--keep", metavar="DIR", help="keep the trace, stdout and stderr in DIR")
    args = ap.parse_args()
    strace = shutil.which("strace")
    if not strace:
        print("measure_privacy: strace is not installed (apt-get install -y strace)", file=sys.stderr)
        return 2
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "edge"], capture_output=True,
                           text=True).stdout.strip()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    with tempfile.TemporaryDirectory(prefix="maskgate-measure-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        state = Path(tmp) / "state"
        state.mkdir()
        if args.video:
            video, frames = Path(args.video), None
        else:
            video = Path(tmp) / "footage.mp4"
            frames = build_video(video, args.minutes)
        enrol = subprocess.run([sys.executable, "-m", "edge.cli", "enroll", "demo person", "--from", str(ENROLL),
                                "--consent", "privacy measurement", "--state", str(state)],
                               capture_output=True, text=True, cwd=ROOT, env=env)
        enrolled = "demo person enrolled" if enrol.returncode == 0 else \
            f"EMPTY (enrol failed: {(enrol.stderr.strip().splitlines() or ['?'])[-1]})"
        trace_file, out_file, err_file = work / "strace.txt", work / "stdout.txt", work / "stderr.txt"
        start = time.monotonic()
        with open(out_file, "wb") as out, open(err_file, "wb") as err:
            rc = subprocess.run([strace, "-f", "--seccomp-bpf", "-y", "-x", "-s", "64", "-qq", "-e",
                                 f"trace={TRACED}", "-o", str(trace_file), sys.executable, "-m", "edge.cli",
                                 "replay", str(video), "--json", "--state", str(state)],
                                stdout=out, stderr=err, cwd=ROOT, env=env).returncode
        wall = time.monotonic() - start
        a = analyse(trace_file.read_text(errors="replace"))
        stdout, stderr = out_file.read_bytes(), err_file.read_bytes()
        decisions = sum(1 for ln in stdout.splitlines() if b'"event": "decision"' in ln)
        faces = sum(1 for ln in stdout.splitlines() if b'"event": "face"' in ln)

        image_bytes = sum(a["image"].values())
        media_paths = sorted(p for p in a["opened"] | set(a["written"]) if media_name(p))
        found = [f"stdout: {t}" for t in image_traces(stdout)] + [f"stderr: {t}" for t in image_traces(stderr)]
        for f in (p for p in state.rglob("*") if p.is_file()):
            found += [f"{f.name}: {t}" for t in image_traces(f.read_bytes())]
        python = [p for p in a["programs"] if p == sys.executable]
        others = [p for p in a["programs"] if p != sys.executable]
        ip_sockets = a["sockets"]["AF_INET"] + a["sockets"]["AF_INET6"]
        outside = sorted(p for p in a["opened"] if p != os.devnull and not Path(p).is_relative_to(state))

        secs = frames / FPS if frames else None
        print(f"measured at commit {commit}{' (edge/ has uncommitted changes)' if dirty else ''}, "
              f"strace {subprocess.run([strace, '-V'], capture_output=True, text=True).stdout.split()[3]}")
        print(f"footage: {video.name if args.video else 'bundled clips letterboxed and repeated'}"
              + (f", {frames} frames = {int(secs // 60)} min {secs % 60:.0f} s at {FPS:.0f} fps" if secs else ""))
        print(f"model: {model_line()}")
        print(f"state: {enrolled}; replay exit {rc}, {wall / 60:.1f} min wall; "
              f"{faces} face events, {decisions} decisions")
        print(f"IP sockets created: {ip_sockets}")
        print(f"sockets of any family: {sum(a['sockets'].values())} {dict(a['sockets']) or ''}".rstrip())
        print(f"syscalls naming an IP address: {len(a['ip'])}")
        print(f"programs started besides the interpreter: {len(others)} {others or ''}".rstrip())
        print(f"files opened for writing outside the state directory and /dev/null: {len(outside)} {outside or ''}"
              .rstrip())
        print(f"files with an image or video name: {len(media_paths)} {media_paths or ''}".rstrip())
        names = {str(out_file): "stdout", str(err_file): "stderr"}
        files = {p: n for p, n in a["written"].items() if Path(p).is_relative_to(state)}
        print(f"bytes written to files (the state directory): {sum(files.values())} "
              + " ".join(f"{Path(p).name}={n}" for p, n in sorted(files.items())))
        streams = {names.get(p, p): n for p, n in a["written"].items() if p not in files}
        print("bytes written elsewhere: " + " ".join(f"{p}={n}" for p, n in sorted(streams.items())))
        print(f"bytes of image or video data written: {image_bytes}")
        print(f"image-shaped data in the state directory, stdout, stderr: {len(found)} {found[:5] or ''}".rstrip())
        clean = (ip_sockets == 0 and not a["ip"] and not others and not outside and not media_paths
                 and image_bytes == 0 and not found and len(python) == 1)
        print("verdict: " + ("clean" if clean else "NOT CLEAN"))
        return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
