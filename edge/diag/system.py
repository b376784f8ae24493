"""The board under the gate: ``diag clock`` (a time the access rules can trust), ``diag board``
(model, CPU temperature, throttling), ``diag disk`` (free space for the vault and the audit log) and
``diag service`` (the daemon under systemd).

What is read of the board (/proc, /sys, /dev, /run) is under ``base.SYS``, and every tool
(timedatectl, vcgencmd, systemctl) is optional: a missing one is a ``warn`` saying what to install
or do, never a crash.
"""

from __future__ import annotations

import os
import platform
import shutil
from datetime import datetime
from typing import Any

from edge import clock
from edge.diag import base
from edge.diag.base import Context, Finding, _fail, _ok, _read, _run, _warn

SERVICE = "maskgate.service"
TEMP_WARN_C, TEMP_FAIL_C = 70.0, 80.0  # a Pi 4/5 starts to throttle at 80-85 degrees C
DISK_WARN_MB, DISK_FAIL_MB = 1024, 100


def clock_sources() -> Any:
    """The clock's witnesses as this check reads them: under ``base.SYS`` (a fake tree in tests), and
    NTP synchronisation as systemd reports it (``timedatectl``), or the gate's own time-source files."""
    def synced() -> bool:
        out = _run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
        if out is not None and out.strip() == "yes":
            return True
        return any((base.SYS / p.relative_to("/")).exists() for p in (clock.TIMESYNC, clock.MARKER))

    rtc = sorted((base.SYS / "sys/class/rtc").glob("rtc*")) or sorted((base.SYS / "dev").glob("rtc[0-9]*"))
    return clock.TimeSources(rtc=lambda: bool(rtc), synced=synced)


def check_clock(ctx: Context, sources: Any = None) -> Finding:
    """A clock the access rules can trust (edge.clock): after the build date, kept by an RTC or a time source."""
    sources = sources or clock_sources()
    c = clock.Clock(sources)
    now = datetime.fromtimestamp(sources.wall())
    stamp = f"{now:%Y-%m-%d %H:%M} local"
    why = c.untrusted()
    if why:
        return _fail(f"{stamp}: {why}", clock.FIX)
    if sources.rtc():
        return _ok(f"{stamp}, real-time clock" + (", time source synchronised" if sources.synced() else ""))
    return _warn(f"{stamp}, time source synchronised but no real-time clock",
                 "after a power cut without the time source the clock is lost and schedules stop; "
                 "fit an RTC (Pi 5: battery on J5)")


THROTTLE_BITS = {0: "under-voltage now", 1: "ARM frequency capped now", 2: "throttled now",
                 3: "soft temperature limit now", 16: "under-voltage has occurred",
                 17: "frequency capping has occurred", 18: "throttling has occurred",
                 19: "soft temperature limit has occurred"}


def throttle_flags(value: int) -> list[str]:
    """The meaning of the bits of ``vcgencmd get_throttled`` (Raspberry Pi firmware)."""
    return [text for bit, text in THROTTLE_BITS.items() if value & (1 << bit)]


def board_model() -> str:
    """The board's name from the device tree (Pi, Jetson) or DMI (PCs), else the CPU architecture."""
    model = _read(base.SYS / "proc/device-tree/model")
    if model:
        return model
    vendor = _read(base.SYS / "sys/class/dmi/id/sys_vendor") or ""
    product = _read(base.SYS / "sys/class/dmi/id/product_name") or ""
    return f"{vendor} {product}".strip() or f"unknown {platform.machine()} board"


def cpu_temperature() -> float | None:
    """The hottest thermal zone in degrees C (the SoC on a Pi or a Jetson), or None when none is visible."""
    temps = []
    for zone in (base.SYS / "sys/class/thermal").glob("thermal_zone*"):
        raw = _read(zone / "temp")
        try:
            temps.append(int(raw) / 1000.0)  # millidegrees
        except (TypeError, ValueError):
            continue
    return max(temps) if temps else None


def check_board(ctx: Context) -> Finding:
    """Board model, CPU temperature, and throttling (Pi firmware) or thermal zones (elsewhere)."""
    model = board_model()
    temp = cpu_temperature()
    parts = [model, f"CPU {temp:.0f} C" if temp is not None else "no temperature sensor"]
    status, hints = "ok", []
    if temp is not None and temp >= TEMP_FAIL_C:
        status = "fail"
        hints.append("the CPU is at its throttling limit: fit a heatsink/fan, keep the enclosure out of the sun")
    elif temp is not None and temp >= TEMP_WARN_C:
        status = "warn"
        hints.append("the CPU runs hot: check the heatsink/fan and enclosure ventilation")
    raw = _run(["vcgencmd", "get_throttled"])
    if raw and "=" in raw:
        try:
            flags = throttle_flags(int(raw.split("=", 1)[1].strip(), 16))
        except ValueError:
            flags = []
        parts.append("throttling: " + (", ".join(flags) if flags else "none"))
        if any(f.endswith(" now") for f in flags):
            status = "fail"
            hints.append("under-voltage or throttling now: use the official power supply (5 V 3 A / 5 A for a Pi 5)")
        elif flags and status == "ok":
            status = "warn"
            hints.append("the board throttled since boot: check the power supply and cooling")
    elif "raspberry pi" in model.lower():
        parts.append("vcgencmd missing")
        hints.append("install the Pi firmware tools (`sudo apt install libraspberrypi-bin`) to read throttling")
        status = "warn" if status == "ok" else status
    if temp is None and status == "ok":
        status = "warn"
        hints.append("no /sys/class/thermal zone here (a container or a PC?): on a gate the SoC sensor is read")
    return Finding(status, ", ".join(parts), "; ".join(hints))


def check_disk(ctx: Context) -> Finding:
    """Free space where the vault and the audit log are written."""
    where = ctx.state
    while not where.exists() and where != where.parent:
        where = where.parent
    usage = shutil.disk_usage(where)
    free_mb = usage.free / 2**20
    pct = 100.0 * usage.free / usage.total if usage.total else 0.0
    space = f"{free_mb / 1024:.1f} GB free of {usage.total / 2**30:.1f} GB ({pct:.0f}%)"
    detail = f"{ctx.state}: {space}"
    if not ctx.state.exists():
        return _warn(f"{ctx.state} does not exist yet; {where}: {space}",
                     "the installer creates it (scripts/install.sh); or give --state DIR")
    if not os.access(ctx.state, os.W_OK):
        return _fail(f"{detail}, not writable by this user",
                     "run as the gate's user (`sudo -u maskgate maskgate diag`) or fix ownership of the state dir")
    if free_mb < DISK_FAIL_MB:
        return _fail(detail, "the audit log and the vault cannot be written safely: free space "
                             "(`sudo journalctl --vacuum-size=50M`, `maskgate templates purge`)")
    if free_mb < DISK_WARN_MB or pct < 5:
        return _warn(detail, "free some space soon (`sudo journalctl --vacuum-size=50M`)")
    return _ok(detail)


def _systemd_running() -> bool:
    return (base.SYS / "run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def check_service(ctx: Context) -> Finding:
    """The gate daemon under systemd: running, last (re)start, restarts, watchdog."""
    if not _systemd_running():
        return _warn("systemd is not running here", "on a gate the service runs under systemd "
                                                    "(`sudo systemctl status maskgate`)")
    props = ("LoadState", "ActiveState", "SubState", "NRestarts", "ActiveEnterTimestamp", "WatchdogUSec",
             "Result")
    raw = _run(["systemctl", "show", SERVICE, "-p", ",".join(props)])
    if raw is None:
        return _warn(f"`systemctl show {SERVICE}` failed", "run `systemctl status maskgate` by hand")
    p = dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)
    if p.get("LoadState") == "not-found":
        return _warn(f"{SERVICE} is not installed", "install it: `sudo bash scripts/install.sh`")
    active = p.get("ActiveState", "?")
    restarts = p.get("NRestarts", "0") or "0"
    watchdog = p.get("WatchdogUSec", "0")
    wd = "no watchdog" if watchdog in ("0", "infinity", "") else f"watchdog {watchdog}"
    since = p.get("ActiveEnterTimestamp") or "never"
    detail = f"{active} ({p.get('SubState', '?')}) since {since}, {restarts} restarts, {wd}"
    if active != "active":
        return _fail(detail, "read why: `journalctl -u maskgate -b -n 50`; start it: `sudo systemctl restart maskgate`")
    if restarts != "0":
        return _warn(detail, "it has crashed and been restarted: `journalctl -u maskgate -b | grep -i error`")
    if wd == "no watchdog":
        return _warn(detail, "the unit should set WatchdogSec= so a hung gate is restarted (systemd/maskgate.service)")
    return _ok(detail)
