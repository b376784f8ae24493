"""scripts/install.sh's plan (--dry-run) per platform, and the deployment scripts' syntax and lint."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

SCRIPTS = [ROOT / "scripts" / s for s in ("install.sh", "firstboot", "build-image.sh", "test-image.sh",
                                          "maskgate-admin", "maskgate-usb")]


def plan(*args: str) -> tuple[int, list[str], str]:
    r = subprocess.run(["bash", str(ROOT / "scripts/install.sh"), "--dry-run", *args],
                       capture_output=True, text=True, timeout=60)
    return r.returncode, [line[2:] for line in r.stdout.splitlines() if line.startswith("+ ")], r.stderr


def step(lines: list[str], pattern: str) -> int:
    hits = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    assert hits, f"no step matching {pattern!r} in:\n" + "\n".join(lines)
    return hits[0]


def test_pi_plan() -> None:
    rc, lines, _ = plan("--platform", "pi")
    assert rc == 0
    apt = lines[step(lines, r"^apt-get install")]
    assert "python3-picamera2" in apt and "python3-lgpio" in apt
    venv = step(lines, r"-m venv --system-site-packages /opt/maskgate/venv$")
    req = step(lines, r"pip .* install -r \S+/requirements.txt$")
    mp = step(lines, r"pip .* install --no-deps mediapipe==")
    pkg = step(lines, rf"pip .* install --no-deps --force-reinstall {re.escape(str(ROOT))}$")
    wrapper = step(lines, rf"^install -m 755 {re.escape(str(ROOT))}/scripts/maskgate-admin /usr/local/bin/maskgate$")
    units = step(lines, r"^install -m 644 \S+/maskgate.service \S+/maskgate-keeper.service "
                        r"\S+/maskgate-firstboot.service \S+/maskgate-purge.service \S+/maskgate-purge.timer /etc/systemd/system/")
    usb = [step(lines, r"^install -m 755 \S+/scripts/maskgate-usb /usr/local/sbin/maskgate-usb$"),
           step(lines, r"^install -m 644 \S+/systemd/maskgate-usb@.service /etc/systemd/system/$"),
           step(lines, r"^install -m 644 \S+/systemd/80-maskgate-usb.rules /etc/udev/rules.d/$")]
    enable = step(lines, r"^systemctl enable maskgate-firstboot.service maskgate-keeper.service maskgate.service "
                         r"maskgate-purge.timer$")
    fb = step(lines, r"^/usr/local/sbin/maskgate-firstboot --boot-config /boot/firmware/maskgate.toml$")
    start = step(lines, r"^systemctl restart maskgate.service$")
    assert apt and venv < req < mp < pkg < wrapper < units < min(usb) and max(usb) < enable < fb < start
    # the models go to the gate without the training recipe beside them (models/training stays in the repo)
    copy = step(lines, r"^cp -r \S+/models /opt/maskgate/models.new$")
    drop = step(lines, r"^rm -rf /opt/maskgate/models.new/training$")
    assert copy < drop < step(lines, r"^mv /opt/maskgate/models.new /opt/maskgate/models$")


def test_image_leaves_the_training_recipe_out() -> None:
    image = (ROOT / "scripts/build-image.sh").read_text()
    assert image.index('cp -a "$repo/models"') < image.index('rm -rf "$root/opt/maskgate/models/training"')


def test_jetson_and_generic_plans_have_no_pi_packages() -> None:
    for platform in ("jetson", "generic"):
        rc, lines, _ = plan("--platform", platform)
        assert rc == 0
        text = "\n".join(lines)
        assert "picamera2" not in text and "--system-site-packages" not in text
        assert re.search(r"-m venv /opt/maskgate/venv$", text, re.M)
        assert any("gpiod==2.5.0" in shlex.split(line) for line in lines)
    assert not any("gpiod==2.5.0" in shlex.split(line) for line in plan("--platform", "pi")[1])


def test_no_start_and_bad_usage() -> None:
    rc, lines, _ = plan("--platform", "pi", "--no-start")
    assert rc == 0 and not any(line.startswith("systemctl restart") for line in lines)
    rc, lines, err = plan("--platform", "pi5")
    assert rc == 2 and "--platform must be" in err and not lines
    rc, _, err = plan("--config", "/nonexistent/maskgate.toml")
    assert rc == 2 and "no such file" in err


def test_pins_match_the_dev_setup() -> None:
    """install.sh, setup.sh and build-image.sh install the same mediapipe (and gpiod); the unit starts
    install.sh's venv."""
    scripts = (ROOT / "scripts/install.sh", ROOT / "scripts/setup.sh", ROOT / "scripts/build-image.sh")
    pins = {p.name: set(re.findall(r"mediapipe==[\d.]+", p.read_text())) for p in scripts}
    assert len(set.union(*pins.values())) == 1 and all(pins.values()), pins
    gpiod = {p.name: set(re.findall(r"gpiod==[\d.]+", p.read_text())) for p in scripts[::2]}
    assert len(set.union(*gpiod.values())) == 1 and all(gpiod.values()), gpiod
    assert "/opt/maskgate/venv/bin/maskgate run" in (ROOT / "systemd/maskgate.service").read_text()
    assert "/opt/maskgate/venv" in (ROOT / "scripts/build-image.sh").read_text()
    # the `maskgate` on PATH of a flashed card too, and the wrapper drops to the unit's user and models
    image = (ROOT / "scripts/build-image.sh").read_text()
    assert 'scripts/maskgate-admin" "$root/usr/local/bin/maskgate"' in image
    assert 'maskgate-usb" "$root/usr/local/sbin/maskgate-usb"' in image and "80-maskgate-usb.rules" in image
    wrapper, unit = (ROOT / "scripts/maskgate-admin").read_text(), (ROOT / "systemd/maskgate.service").read_text()
    assert "User=maskgate" in unit and "user=${MASKGATE_USER:-maskgate}" in wrapper
    assert "MASKGATE_MODELS=/opt/maskgate/models" in unit and "prefix=${MASKGATE_PREFIX:-/opt/maskgate}" in wrapper


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse_and_lint(script: Path) -> None:
    assert script.stat().st_mode & 0o111, f"{script.name} is not executable"
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck missing (apt-get install shellcheck); bash -n passed")
    r = subprocess.run(["shellcheck", "--severity=warning", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_install_renders_the_spoken_prompts(tmp_path: Path) -> None:
    """install.sh's render step, taken from its plan and run for real (its venv and prefix swapped for
    this checkout's and a temporary folder): a WAV of speech per prompt and language, where the gate
    reads them ($MASKGATE_MODELS/sounds with the unit's MASKGATE_MODELS=/opt/maskgate/models)."""
    import io
    import os
    import sys
    import wave

    import numpy as np

    from conftest import need
    from edge.display.i18n import LANGUAGES
    from edge.display.messages import SPOKEN
    from edge.sound import prompt_path

    need("espeak-ng", "espeak-ng")
    rc, lines, _ = plan("--platform", "generic")
    assert rc == 0 and "espeak-ng" in shlex.split(lines[step(lines, r"^apt-get install")])
    render = step(lines, r"^/opt/maskgate/venv/bin/python -m edge.sound render /opt/maskgate/models/sounds$")
    assert step(lines, r"--force-reinstall") < render and step(lines, r"^mv \S+/models.new /opt/maskgate/models$") < render
    argv = [sys.executable if a == "/opt/maskgate/venv/bin/python" else a.replace("/opt/maskgate", str(tmp_path))
            for a in shlex.split(lines[render])]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    base = tmp_path / "models" / "sounds"
    lengths = {}
    for lang in LANGUAGES:
        for key in SPOKEN:
            path = prompt_path(lang, key, base)
            with wave.open(io.BytesIO(path.read_bytes())) as w:
                assert w.getnchannels() == 1 and w.getsampwidth() == 2
                pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
                lengths[lang, key] = len(pcm) / w.getframerate()
            assert 0.5 < lengths[lang, key] < 10 and np.abs(pcm).max() > 3000, (path, lengths[lang, key])
    assert sorted(p.relative_to(base).as_posix() for p in base.rglob("*")) == sorted(
        [lang for lang in LANGUAGES] + [f"{lang}/{k}.wav" for lang in LANGUAGES for k in SPOKEN])
    # each language says its own words: the Chinese prompt is not the English one
    assert all(lengths["zh_CN", k] != lengths["en", k] for k in SPOKEN)
    gate_env = {**os.environ, "MASKGATE_MODELS": str(tmp_path / "models"), "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", "from edge.sound import prompt_path; print(prompt_path('zh_CN', 'blink'))"],
                       capture_output=True, text=True, env=gate_env, cwd=tmp_path)
    assert Path(r.stdout.strip()) == base / "zh_CN" / "blink.wav"    # where the gate looks
