"""Admin commands run as root cannot break the daemon: the CLI refuses to write root-owned files into the
service user's state directory, and the `maskgate` wrapper (scripts/maskgate-admin) runs the real command
as the service user, so `sudo maskgate enroll ...` leaves every state file owned by that user.

Needs root (to own files as someone else) and setpriv; `nobody` stands in for the `maskgate` user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT, maskgate
from edge.ownership import OwnershipError, check_writer

WRAPPER = ROOT / "scripts" / "maskgate-admin"
NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                             reason="needs root and setpriv (util-linux)")


def test_check_writer_only_stops_root_in_someone_elses_dir(tmp_path: Path) -> None:
    check_writer(tmp_path / "missing", euid=0)            # root makes its own
    check_writer(tmp_path, euid=os.stat(tmp_path).st_uid)  # the owner
    check_writer(tmp_path, euid=12345)                     # another user: the OS refuses for us
    if os.stat(tmp_path).st_uid != 0:
        with pytest.raises(OwnershipError, match="wrapper"):
            check_writer(tmp_path, euid=0)


@pytest.fixture
def open_tmp() -> Path:
    """A temporary folder the stand-in service user can reach (pytest's tmp_path is root-only)."""
    d = Path(tempfile.mkdtemp(prefix="maskgate-own-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@as_root
def test_root_cli_refuses_a_service_users_state_dir(open_tmp: Path) -> None:
    state = open_tmp / "state"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    for args in (["templates", "list"], ["templates", "pubkey"], ["roster", "status"],
                 ["enroll", "x", "--from", ROOT / "edge/demo/enroll", "--consent", "c"], ["diag", "vault"]):
        r = maskgate(*args, "--state", state)
        assert r.returncode == 2, (args, r.stderr)
        assert "belongs to nobody" in r.stderr and "maskgate" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert list(state.iterdir()) == []          # refused before anything was written
    assert maskgate("templates", "keygen", "--out", open_tmp / "k", "--state", state).returncode == 0
    assert maskgate("audit", "show", "--state", state).returncode == 0  # reading is harmless


def _fake_install(base: Path) -> Path:
    """/opt/maskgate as install.sh lays it out: venv/bin/maskgate and models/ (this checkout's)."""
    prefix = base / "opt"
    (prefix / "venv/bin").mkdir(parents=True)
    exe = prefix / "venv/bin/maskgate"
    # As pip writes a console script: this interpreter, then edge.cli's main (this checkout's).
    exe.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                   "from edge.cli import main\nsys.exit(main())\n")
    exe.chmod(0o755)
    (prefix / "models").symlink_to(ROOT / "models")
    for d in (prefix, prefix / "venv", prefix / "venv/bin"):
        d.chmod(0o755)
    return prefix


def wrapper(prefix: Path, *args: str, user: str = "nobody") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MASKGATE_MODELS"}
    env.update(MASKGATE_PREFIX=str(prefix), MASKGATE_USER=user, MASKGATE_DEVICE_ID="wrapped-gate",
               SUDO_USER="olga")
    return subprocess.run(["sh", str(WRAPPER), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=300)


def _nobody_can_run_this_checkout() -> bool:
    """Whether user nobody can run this interpreter on this checkout (not when it lives under /root)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    r = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable, "-c",
                        f"import sys; sys.path.insert(0, {str(ROOT)!r}); import edge.cli, edge.embed; "
                        f"open({str(ROOT / 'models/manifest.toml')!r}).read()"],
                       capture_output=True, timeout=120)
    return r.returncode == 0


@as_root
@pytest.mark.skipif(not (ROOT / "models/manifest.toml").exists(), reason="no embedder model")
@pytest.mark.skipif(not _nobody_can_run_this_checkout(), reason="user nobody cannot read this interpreter or checkout")
def test_sudo_maskgate_enroll_leaves_state_owned_by_the_service_user(open_tmp: Path) -> None:
    prefix = _fake_install(open_tmp)
    state = open_tmp / "state"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    photos = open_tmp / "photos"
    shutil.copytree(ROOT / "edge/demo/enroll", photos)
    r = wrapper(prefix, "enroll", "Ana", "--from", photos, "--consent", "form 1", "--state", state, "--json")
    assert r.returncode == 0, r.stderr
    r = wrapper(prefix, "templates", "remove", "Ana", "--state", state)
    assert r.returncode == 0, r.stderr
    files = list(state.rglob("*"))
    assert {"vault.bin", "device.key", "audit.log", "audit.head", "vault.lock"} <= {f.name for f in files}
    assert {(f.name, f.stat().st_uid) for f in files} == {(f.name, NOBODY) for f in files}
    log = (state / "audit.log").read_text()
    assert '"user":"olga"' in log and '"event":"vault.enroll"' in log   # the administrator, not the service user
    bad = wrapper(prefix, "templates", "list", "--state", state, user="no-such-user")
    assert bad.returncode == 2 and "no user no-such-user" in bad.stderr
