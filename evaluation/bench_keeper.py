#!/usr/bin/env python3
"""Decision to relay-on through the door keeper: how long the gate's grant takes to move the relay.

Starts a real ``maskgate door-keeper`` process (mock pins, a temporary state directory, the audit
log with fsync on, as on a gate) and times, from the gate's side, ``KeeperDoor.grant()``: the
request, the keeper driving the relay on, and its reply (sent after the pin moved), so each figure
is an upper bound on decision -> relay on. For comparison it times what the gate used to do before
the relay: one audit append (line + head, two fsyncs) in the same state directory.

    .venv/bin/python evaluation/bench_keeper.py [--n 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge.audit import AuditLog
from edge.errors import DoorError
from edge.keeper import KeeperDoor

ROOT = Path(__file__).resolve().parent.parent


def _figures(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {"n": len(ms), "ms_median": round(statistics.median(ms), 2),
            "ms_p95": round(ms[int(0.95 * (len(ms) - 1))], 2), "ms_max": round(ms[-1], 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mg-keeper-") as tmp:
        state, cfg = Path(tmp) / "state", Path(tmp) / "keeper.toml"
        cfg.write_text('[door]\nbackend = "mock"\nopen_s = 5.0\n')
        p = subprocess.Popen([sys.executable, "-m", "edge.cli", "door-keeper", "--config", str(cfg),
                              "--state", str(state)], cwd=ROOT, stderr=subprocess.DEVNULL)
        try:
            end = time.monotonic() + 60
            while True:
                try:
                    door = KeeperDoor(state / "keeper.sock")
                    break
                except DoorError:
                    if time.monotonic() > end or p.poll() is not None:
                        raise
                    time.sleep(0.05)
            grant = []
            for _ in range(args.n):
                t0 = time.perf_counter()
                door.grant()
                grant.append((time.perf_counter() - t0) * 1e3)
                door.lock("bench")
                time.sleep(0.01)  # let the keeper's audit writes of the last pulse land meanwhile
            log = AuditLog(state)
            append = []
            for _ in range(min(args.n, 50)):
                t0 = time.perf_counter()
                log.append("bench", i=1)
                append.append((time.perf_counter() - t0) * 1e3)
        finally:
            p.terminate()
            p.wait(10)
    rows = [{"stage": "decision->relay on (keeper round trip)", **_figures(grant)},
            {"stage": "one audit append (fsync), formerly before the relay", **_figures(append)}]
    for r in rows:
        print(json.dumps(r) if args.json else
              f"{r['stage']}: median {r['ms_median']} ms, p95 {r['ms_p95']} ms, max {r['ms_max']} ms (n={r['n']})")
    print(json.dumps({"cpu_count": os.cpu_count()}) if args.json else f"({os.cpu_count()} CPUs, mock pins)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
