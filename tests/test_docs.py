"""The documentation an installer and a newcomer follow agrees with the code and with itself.

An installer wires from the pin table and the diagrams and copies the example config: all three, and
the config's own defaults, must name the same GPIO for each signal (a mismatch once put the door
contact on the buzzer's pin). Every TOML example loads as it stands, every relative link resolves,
and every module the README's map names exists.
"""

from __future__ import annotations

import re
import textwrap
import tomllib
from pathlib import Path

import gpiozero
import pytest

from conftest import ROOT
from edge import config

INSTALLER = ROOT / "docs" / "installer.md"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINKED = [*DOCS, ROOT / "PRIVACY.md", ROOT / "models" / "MODEL_CARD.md", ROOT / "models" / "training" / "README.md",
          ROOT / "evaluation" / "README.md"]
# Raspberry Pi 3B, 4B and 5B share the 40-pin header; gpiozero knows each board's layout.
BOARDS = ("a02082", "c03111", "d04170")


def pin_table() -> dict[tuple[str, str], tuple[int, int]]:
    """(section, key) -> (BCM GPIO, header pin) from the one pin table in docs/installer.md."""
    rows = {}
    for line in INSTALLER.read_text().splitlines():
        m = re.match(r"\|[^|]+\| `\[(\w+)\] (\w+_pin)` \| (\d+) \| (\d+) \|", line)
        if m:
            rows[(m.group(1), m.group(2))] = (int(m.group(3)), int(m.group(4)))
    return rows


def header_name(pin: int) -> set[str]:
    return {gpiozero.pi_info(rev).headers["J8"].pins[pin].name for rev in BOARDS}


def toml_blocks(path: Path) -> list[str]:
    return [textwrap.dedent(b) for b in re.findall(r"```toml\n(.*?)```", path.read_text(), re.S)]


def test_pin_table_covers_every_pin_key_once_on_the_right_header_pin() -> None:
    table = pin_table()
    cfg = config.Config()
    pin_keys = {(section, name) for section in ("door", "claim")
                for name in type(getattr(cfg, section)).__dataclass_fields__ if name.endswith("_pin")}
    assert set(table) == pin_keys, "every *_pin config key has exactly one row in docs/installer.md's pin table"
    gpios = [gpio for gpio, _ in table.values()]
    assert len(set(gpios)) == len(gpios), "two signals on one GPIO"
    for (section, key), (gpio, pin) in table.items():
        assert header_name(pin) == {f"GPIO{gpio}"}, f"[{section}] {key}: header pin {pin} is not GPIO{gpio}"
    # every pin of the table in one config, every output in use: accepted together (no pin given twice)
    door = {k: g for (s, k), (g, _) in table.items() if s == "door"}
    claim = {k: g for (s, k), (g, _) in table.items() if s == "claim"}
    loaded = config.from_dict({"door": {**door, "mode": "both"}, "claim": {**claim, "reader": "wiegand"}})
    assert loaded.door.relay_pin == door["relay_pin"] and loaded.claim.wiegand_d0_pin == claim["wiegand_d0_pin"]


def test_config_defaults_agree_with_the_pin_table() -> None:
    """The relay has a default pin, and it is the table's; every other pin is off until configured."""
    table = pin_table()
    cfg = config.Config()
    for (section, key), (gpio, _) in table.items():
        default = getattr(getattr(cfg, section), key)
        assert default in (None, gpio), f"[{section}] {key} defaults to {default}, the pin table says {gpio}"
    assert cfg.door.relay_pin == table[("door", "relay_pin")][0]


def test_wiring_diagrams_agree_with_the_pin_table() -> None:
    table = pin_table()
    words = {  # words on a diagram line -> the row it wires
        "IN": ("door", "relay_pin"), "door contact": ("door", "contact_pin"), "exit button": ("door", "rex_pin"),
        "alternative entry": ("door", "alt_entry_pin"), "LED": ("door", "led_pin"), "buzzer": ("door", "buzzer_pin"),
        "Wiegand D0 out": ("door", "wiegand_d0_pin"), "Wiegand D1 out": ("door", "wiegand_d1_pin"),
        "D0 (green)": ("claim", "wiegand_d0_pin"), "D1 (white)": ("claim", "wiegand_d1_pin")}
    seen = set()
    for line in INSTALLER.read_text().splitlines():
        # the door diagram: " pin 11  GPIO17 ──...── IN"; the reader's: "D0 (green) --...-- GPIO 5  (pin 29)"
        m = re.match(r"\s*pin (\d+)\s+GPIO(\d+)\s+(.*)", line) or re.match(r"(.*?)GPIO (\d+)\s+\(pin (\d+)\)", line)
        if m and m.re.pattern.startswith(r"\s*pin"):
            pin, gpio, rest = int(m.group(1)), int(m.group(2)), m.group(3)
        elif m:
            rest, gpio, pin = m.group(1), int(m.group(2)), int(m.group(3))
        else:
            for m in re.finditer(r"(GND|5 V) \(pin (\d+)\)|pin (\d+)\s+(GND)", line):
                name, pin = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
                assert header_name(int(pin)) == {"GND" if name == "GND" else "5V"}, line
            continue
        row = next(row for w, row in words.items() if w in rest)
        assert (gpio, pin) == table[row], f"diagram wires {row} to GPIO{gpio} (pin {pin}), the table {table[row]}"
        seen.add(row)
    assert seen == set(words.values()), set(words.values()) - seen


def test_example_configs_use_the_pin_tables_pins() -> None:
    table = pin_table()
    checked = 0
    for path in DOCS:
        for block in toml_blocks(path):
            doc = tomllib.loads(block)
            for section in ("door", "claim"):
                for key, value in doc.get(section, {}).items():
                    if key.endswith("_pin"):
                        assert value == table[(section, key)][0], \
                            f"{path.name}: [{section}] {key} = {value}, the pin table says {table[(section, key)][0]}"
                        checked += 1
    assert checked >= 6


def test_every_toml_example_loads(tmp_path: Path) -> None:
    """Every TOML example an installer may copy loads as it stands."""
    blocks = [(path, b) for path in DOCS for b in toml_blocks(path)]
    assert len(blocks) >= 5
    for path, block in blocks:
        f = tmp_path / "maskgate.toml"
        f.write_text(block)
        config.load(f)


def test_installer_doc_names_every_config_section() -> None:
    text = INSTALLER.read_text()
    for section in config.Config.__dataclass_fields__:
        assert f"`[{section}]`" in text, section


def test_readme_test_command_is_the_one_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == "bash scripts/setup.sh && .venv/bin/python -m pytest -q"
    assert ci in (ROOT / "README.md").read_text()


def test_readme_stays_a_front_door() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) < 200


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("path", LINKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.exists(), f"{path.name}: link to {target}: no such file"
        if anchor and dest.suffix == ".md":
            anchors = {slug(h) for h in re.findall(r"^#+ (.*)$", dest.read_text(), re.M)}
            assert anchor in anchors, f"{path.name}: link to {target}: no such heading"


def test_modules_named_in_the_docs_exist() -> None:
    """A newcomer finds each module the README's map (and the docs) names."""
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"`(edge/[\w/]+(?:\.py)?)`", readme))
    assert {"edge/camera/", "edge/liveness.py", "edge/embed.py", "edge/match.py", "edge/gate.py",
            "edge/door.py"} <= named
    for path in DOCS:
        named |= set(re.findall(r"(edge/[\w/]+\.py)", path.read_text()))
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, missing


def test_residents_doc_shows_every_screen_in_every_language() -> None:
    """docs/screens/render.py draws each screen of the tour in each language; residents.md shows them all."""
    from edge.display.demo import TOUR
    from edge.display.i18n import LANGUAGES

    text = (ROOT / "docs" / "residents.md").read_text()
    shown = set(re.findall(r"!\[\]\(screens/([\w-]+)\.png\)", text))
    names = {"-".join(str(x) for x in (s.kind, s.step, s.reason) if x) for s in TOUR}
    assert shown == {f"{lang}-{n}" for lang in LANGUAGES for n in names}
    assert shown == {p.stem for p in (ROOT / "docs" / "screens").glob("*.png")}
