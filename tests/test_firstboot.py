"""scripts/firstboot provisions a root directory (a stand-in for a freshly flashed card), never this machine.

It runs the real script with the real shadow tools (``useradd --root``), the real config loader and
the real vault, against a temporary root holding a copy of this system's unit files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

FIRSTBOOT = ROOT / "scripts" / "firstboot"
VENV = Path(sys.executable).parent.parent
GOOD = '[camera]\nsource = "replay"\nloop = true\n\n[door]\nbackend = "mock"\nrelay_pin = 17\nopen_s = 4.0\n'

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("systemctl"),
    reason="firstboot's test needs root (useradd --root chroots) and the shadow tools and systemctl")


@pytest.fixture
def card(tmp_path: Path) -> Path:
    """A fresh root: Debian's base users and groups (no gpio group), the firstboot unit enabled."""
    r = tmp_path / "root"
    for d in ("etc/systemd/system/multi-user.target.wants", "boot/firmware", "var/lib", "usr/lib/systemd"):
        (r / d).mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", r / "usr/lib/systemd/system", symlinks=True)
    (r / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n"
                                  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    (r / "etc/shadow").write_text("root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n")
    groups = ["root:x:0:", "video:x:44:", "nogroup:x:65534:"]
    (r / "etc/group").write_text("".join(g + "\n" for g in groups))
    (r / "etc/gshadow").write_text("".join(g.split(":")[0] + ":*::\n" for g in groups))
    for f in ("shadow", "gshadow"):
        (r / "etc" / f).chmod(0o640)
    if Path("/etc/login.defs").exists():
        shutil.copy("/etc/login.defs", r / "etc/login.defs")
    shutil.copy(ROOT / "systemd/maskgate-firstboot.service", r / "etc/systemd/system/")
    (r / "etc/systemd/system/multi-user.target.wants/maskgate-firstboot.service").symlink_to(
        "/etc/systemd/system/maskgate-firstboot.service")
    return r


def firstboot(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(FIRSTBOOT), "--root", str(root), "--venv", str(VENV)],
                          capture_output=True, text=True, timeout=120)


def snapshot(root: Path) -> dict:
    """Every path under root with its type, mode, owner, mtime and content hash."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        body = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else \
            (os.readlink(p) if p.is_symlink() else "")
        out[str(p.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, body)
    return out


def entry(root: Path, file: str, name: str) -> list[str]:
    for line in (root / "etc" / file).read_text().splitlines():
        if line.split(":")[0] == name:
            return line.split(":")
    raise AssertionError(f"{name} not in {file}")


def test_first_boot_provisions_then_a_second_run_changes_nothing(card: Path) -> None:
    (card / "boot/firmware/maskgate.toml").write_text(GOOD)
    r = firstboot(card)
    assert r.returncode == 0, r.stderr

    user = entry(card, "passwd", "maskgate")
    uid, gid = int(user[2]), int(user[3])
    assert 0 < uid < 1000 and user[6] == "/usr/sbin/nologin"  # a system user that cannot log in
    for g in ("video", "gpio", "audio"):   # camera and screen, GPIO, speaker
        assert "maskgate" in entry(card, "group", g)[3].split(","), g
    assert "gpiochip" in (card / "etc/udev/rules.d/60-maskgate-gpio.rules").read_text()

    etc, state = card / "etc/maskgate", card / "var/lib/maskgate"
    assert (etc.stat().st_mode & 0o777, etc.stat().st_uid, etc.stat().st_gid) == (0o750, 0, gid)
    assert (state.stat().st_mode & 0o777, state.stat().st_uid) == (0o700, uid)
    conf = etc / "maskgate.toml"
    assert conf.read_text() == GOOD and conf.stat().st_mode & 0o777 == 0o640

    key = state / "device.key"
    assert key.stat().st_mode & 0o777 == 0o600 and key.stat().st_uid == uid and key.stat().st_size == 32
    # The key is the vault's own: the public key firstboot logged is the one the vault derives from it.
    from edge.config import VaultConfig
    from edge.vault import Vault
    assert Vault.open(state, VaultConfig()).public_key() in r.stderr
    assert not (card / "etc/systemd/system/multi-user.target.wants/maskgate-firstboot.service").is_symlink()

    before = snapshot(card)
    again = firstboot(card)
    assert again.returncode == 0 and again.stderr == ""
    assert snapshot(card) == before


@pytest.mark.parametrize("text, named", [
    ('[door]\nrelay_pin = 99\n', "door.relay_pin must be a GPIO number"),
    ('[door]\nrelay_pn = 17\n', "unknown key door.relay_pn"),
    ('[door\nrelay_pin = 17\n', "not valid TOML"),
])
def test_a_bad_config_leaves_the_gate_locked_with_a_clear_reason(card: Path, text: str, named: str) -> None:
    (card / "boot/firmware/maskgate.toml").write_text(text)
    r = firstboot(card)
    assert r.returncode == 2
    assert named in r.stderr and "stays locked" in r.stderr and "Traceback" not in r.stderr
    # No config means maskgate.service's ConditionPathExists keeps the gate from starting; no key yet;
    # firstboot stays enabled so a corrected card is taken on the next boot.
    assert not (card / "etc/maskgate/maskgate.toml").exists()
    assert not (card / "var/lib/maskgate/device.key").exists()
    assert (card / "etc/systemd/system/multi-user.target.wants/maskgate-firstboot.service").is_symlink()

    (card / "boot/firmware/maskgate.toml").write_text(GOOD)
    assert firstboot(card).returncode == 0
    assert (card / "etc/maskgate/maskgate.toml").read_text() == GOOD


def test_no_config_on_the_card_is_reported(card: Path) -> None:
    r = firstboot(card)
    assert r.returncode == 2 and "boot/firmware/maskgate.toml" in r.stderr and "stays locked" in r.stderr


def test_the_service_starts_only_with_a_config() -> None:
    unit = (ROOT / "systemd/maskgate.service").read_text()
    assert "ConditionPathExists=/etc/maskgate/maskgate.toml" in unit
    assert "After=maskgate-firstboot.service" in unit
    fb = (ROOT / "systemd/maskgate-firstboot.service").read_text()
    assert "Before=maskgate.service" in fb and "ExecStart=/usr/local/sbin/maskgate-firstboot" in fb
