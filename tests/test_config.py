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


def test_readme_config_examples_load(tmp_path: Path) -> None:
    """Every TOML example an installer may copy from README loads as it stands."""
    import re
    import textwrap

    from conftest import ROOT

    blocks = re.findall(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks
    for block in blocks:
        config.load(write(tmp_path, textwrap.dedent(block)))


def test_readme_names_every_section() -> None:
    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    for section in config.Config.__dataclass_fields__:
        assert f"`[{section}]`" in readme, section


def test_readme_pins_match_the_wiring_diagram() -> None:
    """An installer follows both the example config and the wiring diagram: every pin the example
    sets is the GPIO the diagram wires for that input (a mismatch once put the door contact on the
    buzzer's pin)."""
    import re
    import tomllib

    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    diagram = {  # words on a diagram line -> the config key that names its pin
        "IN": "relay_pin", "door contact": "contact_pin", "exit button": "rex_pin",
        "alternative entry": "alt_entry_pin", "LED": "led_pin", "buzzer": "buzzer_pin",
        "Wiegand D0 out": "wiegand_d0_pin", "Wiegand D1 out": "wiegand_d1_pin"}
    wired: dict[str, int] = {}
    for line in readme.splitlines():
        m = re.match(r"\s*pin \d+\s+GPIO(\d+)\s+(.*)", line)
        if m:
            for words, key in diagram.items():
                if words in m.group(2) and key not in wired:
                    wired[key] = int(m.group(1))
                    break
    assert set(wired) == set(diagram.values()), wired
    examples = [tomllib.loads(b) for b in re.findall(r"```toml\n(.*?)```", readme, re.S)]
    doors = [e["door"] for e in examples if "door" in e]
    assert doors
    for door in doors:
        for key, pin in door.items():
            if key.endswith("_pin"):
                assert pin == wired[key], f"README example {key} = {pin}, diagram wires GPIO{wired[key]}"
