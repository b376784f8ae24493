"""Config: defaults run the demo; typos and bad values are refused with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge import config
from edge.errors import ConfigError
from conftest import maskgate


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "maskgate.toml"
    p.write_text(text)
    return p


def test_defaults_are_the_demo() -> None:
    cfg = config.Config()
    assert cfg.camera.source == "replay" and cfg.door.backend == "mock"


def test_values_are_read(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, '[camera]\nsource = "opencv"\ndevice = "/dev/video2"\n'
                                      '[door]\nrelay_pin = 27\nopen_s = 5\n'))
    assert cfg.camera.device == "/dev/video2" and cfg.door.relay_pin == 27 and cfg.door.open_s == 5


@pytest.mark.parametrize("text, named", [
    ("[camera]\nsorce = 'opencv'\n", "camera.sorce"),
    ("[cammera]\nsource = 'opencv'\n", "[cammera]"),
    ("[door]\nrelay_pin = 'seventeen'\n", "door.relay_pin"),
    ("[door]\nrelay_pin = 99\n", "door.relay_pin"),
    ("[door]\nopen_s = 0\n", "door.open_s"),
    ("[camera]\nsource = 'webcam'\n", "camera.source"),
    ("[liveness]\nchallenges = ['smile']\n", "liveness.challenges"),
    ("[door]\nrelay_active_high = 1\n", "door.relay_active_high"),
    ("camera = 3\n", "[camera]"),
    ("[match]\nstranger_rate = 0\n", "match.stranger_rate"),
])
def test_bad_values_name_the_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        config.load(write(tmp_path, text))


def test_not_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(write(tmp_path, "[camera\nsource=\n"))


def test_missing_default_file_means_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(config, "DEFAULT_CONFIG", tmp_path / "absent.toml")
    assert config.load() == config.Config()


def test_missing_named_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "absent.toml")


def test_cli_reports_bad_config_in_one_line(tmp_path: Path) -> None:
    r = maskgate("bench", "--config", write(tmp_path, "[door]\nrelay_pin = -1\n"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "door.relay_pin" in r.stderr


def test_replace_validates() -> None:
    cfg = config.replace(config.Config(), "camera", realtime=False)
    assert cfg.camera.realtime is False
    with pytest.raises(ConfigError):
        config.replace(cfg, "camera", fps=-1)
