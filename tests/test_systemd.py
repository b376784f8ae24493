"""The units: systemd's own verifier and exposure score, and the inference stack under W^X.

``systemd-analyze`` needs no running systemd: ``verify --root`` reads a directory holding this system's
unit files plus ours, ``security --offline=true`` scores a unit file. ``verify`` only warns (exit 0)
on unknown keys, so any output at all fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT

UNITS = ("maskgate.service", "maskgate-keeper.service", "maskgate-firstboot.service", "maskgate-purge.service",
         "maskgate-purge.timer", "maskgate-usb@.service", "maskgate-mqtt.service")
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze missing (apt-get install systemd)")


def unit_text(name: str) -> str:
    return (ROOT / "systemd" / name).read_text()


def exec_paths(text: str) -> list[str]:
    return [line.split("=", 1)[1].split()[0] for line in text.splitlines() if line.startswith("ExecStart=")]


def verify(tmp_path: Path, texts: dict[str, str]) -> str:
    """Output of ``systemd-analyze verify`` for our units in a root with this system's units."""
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for name, text in texts.items():
        (root / "etc/systemd/system" / name).write_text(text)
        for exe in exec_paths(text):  # the programs the units start, as install.sh puts them
            p = root / exe.lstrip("/")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("#!/bin/sh\n")
            p.chmod(0o755)
    r = subprocess.run([ANALYZE, "verify", f"--root={root}", *texts], capture_output=True, text=True, timeout=60)
    return (r.stdout + r.stderr).strip() + ("" if r.returncode == 0 else f"\n(exit {r.returncode})")


@needs_analyze
def test_units_verify_without_a_word(tmp_path: Path) -> None:
    assert verify(tmp_path, {u: unit_text(u) for u in UNITS}) == ""


@needs_analyze
def test_verify_does_speak_about_a_bad_key(tmp_path: Path) -> None:
    """The check above can fail: an unknown key is reported (as a warning, exit 0)."""
    bad = unit_text("maskgate.service").replace("[Service]\n", "[Service]\nPrivateNetwerk=yes\n")
    assert "Unknown key 'PrivateNetwerk'" in verify(tmp_path, {"maskgate.service": bad})


def security(path: Path) -> tuple[float, str]:
    r = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager", str(path)],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    return float(m.group(1)), r.stdout


@needs_analyze
def test_exposure_is_at_most_2(tmp_path: Path) -> None:
    score, report = security(ROOT / "systemd/maskgate.service")
    assert score <= 2.0, report
    passed = {line.split()[1] for line in report.splitlines() if line.startswith("✓")}
    for item in ("PrivateNetwork=", "IPAddressDeny=", "RestrictAddressFamilies=~AF_(INET|INET6)",
                 "RestrictAddressFamilies=~AF_NETLINK", "NoNewPrivileges=", "ProtectSystem=",
                 "ProtectHome=", "MemoryDenyWriteExecute=", "SystemCallFilter=~@privileged",
                 "CapabilityBoundingSet=~CAP_SYS_ADMIN", "User=/DynamicUser="):
        assert item in passed, f"{item} not satisfied:\n{report}"
    # and the score does move: the same unit with the network back scores worse
    loose = tmp_path / "maskgate.service"
    loose.write_text(unit_text("maskgate.service").replace("PrivateNetwork=yes", "PrivateNetwork=no")
                     .replace("RestrictAddressFamilies=AF_UNIX", "RestrictAddressFamilies=AF_UNIX AF_INET"))
    assert security(loose)[0] > score


def test_the_service_is_the_daemon_the_cli_defines() -> None:
    """ExecStart parses with maskgate's own parser as ``run`` with the config and state of DESIGN.md."""
    from edge.cli import _parser
    line = next(s for s in unit_text("maskgate.service").splitlines() if s.startswith("ExecStart="))
    exe, *argv = line.split("=", 1)[1].split()
    assert exe == "/opt/maskgate/venv/bin/maskgate"
    args = _parser().parse_args(argv)
    assert args.command == "run"
    assert (args.config, args.state) == ("/etc/maskgate/maskgate.toml", "/var/lib/maskgate")
    unit = unit_text("maskgate.service")
    for setting in ("Type=notify", "User=maskgate", "SupplementaryGroups=video gpio", "Restart=always",
                    "StateDirectory=maskgate", "ConfigurationDirectory=maskgate", "DevicePolicy=closed",
                    # the resident's screen and speaker reach their devices under DevicePolicy=closed
                    "DeviceAllow=char-fb rw", "DeviceAllow=char-alsa rw", "SupplementaryGroups=audio"):
        assert setting in unit.splitlines(), setting
    assert re.search(r"^WatchdogSec=\d+", unit, re.M)


MDWE_PROBE = r"""
import ctypes, mmap, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:      # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN (Linux >= 6.3)
    print("no-mdwe", ctypes.get_errno()); sys.exit(0)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("W+X mapping allowed: MDWE not in force")
except PermissionError:
    pass
import numpy as np
from ai_edge_litert.interpreter import Interpreter
import mediapipe
model = os.path.join(os.path.dirname(mediapipe.__file__), "modules/face_landmark/face_landmark.tflite")
it = Interpreter(model_path=model, num_threads=1)
it.allocate_tensors()
d = it.get_input_details()[0]
it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
it.invoke()
os.execv(sys.executable, [sys.executable, "-m", "edge.cli", "bench", "--frames", "6", "--json",
                          "--video", sys.argv[1]])
"""


def test_inference_runs_with_memory_deny_write_execute() -> None:
    """MemoryDenyWriteExecute=yes is in the unit because the runtime works under it: LiteRT with
    XNNPACK and MediaPipe's face mesh run under the kernel's equivalent W^X rule (PR_SET_MDWE)."""
    assert "MemoryDenyWriteExecute=yes" in unit_text("maskgate.service").splitlines()
    clip = FIXTURES / "d11.mp4"
    r = subprocess.run([sys.executable, "-c", MDWE_PROBE, str(clip)], capture_output=True, text=True,
                       timeout=300, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if r.stdout.startswith("no-mdwe"):
        pytest.skip(f"this kernel ({os.uname().release}) has no PR_SET_MDWE; the image boot test measures it")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "XNNPACK delegate" in r.stderr
    stages = {line.split('"stage": "')[1].split('"')[0] for line in r.stdout.splitlines() if '"stage"' in line}
    assert "landmarks" in stages, r.stdout


def _programs_started(env: dict[str, str], tmp_path: Path) -> list[str]:
    trace = tmp_path / "execve.txt"
    subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(trace), sys.executable, "-c",
                    "import mediapipe"], env=env, check=True, capture_output=True, timeout=120)
    return re.findall(r'execve\("([^"]+)"', trace.read_text())[1:]   # [0]: the interpreter itself


@pytest.mark.skipif(not shutil.which("strace"), reason="strace not installed")
def test_matplotlib_font_cache_persists_so_no_program_runs_at_restart(tmp_path: Path) -> None:
    """Both units point MPLCONFIGDIR into their CacheDirectory: matplotlib (imported by mediapipe)
    runs fc-list once to build its font list and, with the list kept there, never at a restart."""
    for name in ("maskgate.service", "maskgate-purge.service"):
        lines = unit_text(name).splitlines()
        assert "CacheDirectory=maskgate" in lines, name
        env_line = next(s for s in lines if s.startswith("Environment=") and "MPLCONFIGDIR=" in s)
        assert re.search(r"\bMPLCONFIGDIR=/var/cache/maskgate(\s|$)", env_line), name
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "cache")}
    _programs_started(env, tmp_path)                     # first start: may list fonts
    assert _programs_started(env, tmp_path) == []        # a restart: nothing started


@needs_analyze
def test_usb_unit_sandboxed_like_the_others(tmp_path: Path) -> None:
    """The stick's unit: the gate's network and filesystem sandbox; root kept only to mount the stick
    and drop to user maskgate; started by the udev rule for USB filesystems only."""
    score, report = security(ROOT / "systemd/maskgate-usb@.service")
    assert score <= 2.0, report
    passed = {line.split()[1] for line in report.splitlines() if line.startswith("✓")}
    for item in ("PrivateNetwork=", "IPAddressDeny=", "RestrictAddressFamilies=~AF_(INET|INET6)",
                 "NoNewPrivileges=", "ProtectSystem=", "ProtectHome=", "MemoryDenyWriteExecute=",
                 "CapabilityBoundingSet=~CAP_(DAC_*|FOWNER|IPC_OWNER)", "CapabilityBoundingSet=~CAP_NET_ADMIN",
                 "CapabilityBoundingSet=~CAP_SYS_MODULE"):
        assert item in passed, f"{item} not satisfied:\n{report}"
    unit = unit_text("maskgate-usb@.service").splitlines()
    assert "CapabilityBoundingSet=CAP_SYS_ADMIN CAP_SETUID CAP_SETGID" in unit
    assert "ExecStart=/usr/local/sbin/maskgate-usb %I" in unit and "PrivateMounts=yes" in unit
    assert "ReadWritePaths=/var/lib/maskgate -/var/cache/maskgate" in unit
    assert verify(tmp_path, {"maskgate-usb@sda1.service": unit_text("maskgate-usb@.service")}) == ""
    [rules] = (ROOT / "systemd").glob("*-maskgate-usb.rules")
    # udev reads rules files in name order: after 60-persistent-storage.rules sets ID_BUS and ID_FS_USAGE
    assert rules.name > "60-persistent-storage.rules"
    rule = rules.read_text()
    [line] = [s for s in rule.splitlines() if s and not s.startswith("#")]
    assert 'ENV{ID_BUS}=="usb"' in line and 'ENV{SYSTEMD_WANTS}+="maskgate-usb@%k.service"' in line
    script = (ROOT / "scripts/maskgate-usb").read_text()
    assert "opts=ro," in script and "--check-request" in script and "remount,rw" in script
    assert script.index("--check-request") < script.index("remount,rw")   # read-only until a valid request
def test_only_the_mqtt_bridge_may_reach_the_network_and_only_its_broker() -> None:
    """The gate's units keep IPAddressDeny=any and no IP address family; the bridge's unit denies
    every address but the ones allowed (loopback as shipped, the broker added by the installer), runs
    `maskgate mqtt`, and install.sh installs it without enabling it (off by default)."""
    for name in ("maskgate.service", "maskgate-purge.service"):
        lines = unit_text(name).splitlines()
        assert "IPAddressDeny=any" in lines and "RestrictAddressFamilies=AF_UNIX" in lines, name
        assert not any(x.startswith("IPAddressAllow=") for x in lines), name
    lines = unit_text("maskgate-mqtt.service").splitlines()
    assert "IPAddressDeny=any" in lines and "IPAddressAllow=localhost" in lines
    assert "LoadCredential=mqtt:/etc/maskgate/mqtt.secret" in lines and "DynamicUser=yes" in lines
    assert "InaccessiblePaths=-/var/lib/maskgate" in lines
    from edge.cli import _parser
    exe, *argv = next(x for x in lines if x.startswith("ExecStart=")).split("=", 1)[1].split()
    assert exe == "/opt/maskgate/venv/bin/maskgate" and _parser().parse_args(argv).command == "mqtt"
    install = (ROOT / "scripts/install.sh").read_text()
    assert "systemd/maskgate-mqtt.service" in install
    assert not re.search(r"enable[^\n]*maskgate-mqtt", install)


@needs_analyze
def test_mqtt_bridge_exposure(tmp_path: Path) -> None:
    score, report = security(ROOT / "systemd/maskgate-mqtt.service")
    assert score <= 2.5, report
