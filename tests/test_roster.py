"""Rosters: a station's whole list for one gate; removals travel, old rosters are refused, the gate's own
people are left alone. The end-to-end test enrols real faces (tests/fixtures, the demo frames) through
the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from nacl.signing import SigningKey

from conftest import FIXTURES, ROOT, maskgate
from edge.config import VaultConfig
from edge.errors import VaultError
from edge.roster import ROSTERS_FILE, RosterError, apply, export, open_roster, station_info
from edge.vault import Vault

HAS_MODEL = (ROOT / "models" / "manifest.toml").exists()
FACES = FIXTURES / "faces"


def unit(rng: np.random.Generator, n: int, dim: int = 64) -> list[np.ndarray]:
    x = rng.standard_normal((n, dim))
    return list(x / np.linalg.norm(x, axis=1, keepdims=True))


@pytest.fixture
def world(tmp_path: Path):
    """A station with two people, a gate with one of its own, an installer key the gate trusts."""
    rng = np.random.default_rng(3)
    installer = SigningKey.generate()
    station = Vault.open(tmp_path / "station", device_id="station")
    station.add("ana", unit(rng, 3), "form 1", space="m1")
    station.add("ben", unit(rng, 2), "form 2", space="m1")
    gate = Vault.open(tmp_path / "gate", VaultConfig(trusted_keys=[bytes(installer.verify_key).hex()]),
                      device_id="gate")
    gate.add("gus (enrolled at the gate)", unit(rng, 2), "form 9", space="m1")
    return tmp_path, station, gate, bytes(installer)


def names(v: Vault) -> list[str]:
    return sorted(p.name for p in v.people())


def test_import_follows_the_station_and_refuses_old_versions(world) -> None:
    tmp, station, gate, key = world
    v1, r1 = export(station, tmp / "station", gate.public_key(), key)
    assert (r1.version, station_info(tmp / "station")["version"]) == (1, 1)
    station.remove("ben")
    v2, r2 = export(station, tmp / "station", gate.public_key(), key)
    assert (r2.station, r2.version) == (r1.station, 2) and [r.person.name for r in r2.records] == ["ana"]

    ch = apply(gate, open_roster(v1, gate, "v1"), tmp / "gate", "v1")
    assert sorted(n for _, n in ch.added) == ["ana", "ben"] and not ch.removed
    assert names(gate) == ["ana", "ben", "gus (enrolled at the gate)"]
    ch = apply(gate, open_roster(v2, gate, "v2"), tmp / "gate", "v2")
    assert [n for _, n in ch.removed] == ["ben"] and ch.unchanged == 1 and not ch.added
    before = (tmp / "gate" / "vault.bin").read_bytes()
    with pytest.raises(RosterError, match="not newer than version 2"):
        apply(gate, open_roster(v1, gate, "v1"), tmp / "gate", "v1")
    with pytest.raises(RosterError, match="not newer"):
        apply(gate, open_roster(v2, gate, "v2"), tmp / "gate", "v2")
    assert (tmp / "gate" / "vault.bin").read_bytes() == before
    assert names(Vault.open(tmp / "gate", device_id="gate")) == ["ana", "gus (enrolled at the gate)"]


def test_changes_and_an_emptied_station(world) -> None:
    tmp, station, gate, key = world
    apply(gate, open_roster(export(station, tmp / "station", gate.public_key(), key)[0], gate, "v1"), tmp / "gate", "v1")
    station.add_templates("ana", unit(np.random.default_rng(5), 2), space="m1")
    ch = apply(gate, open_roster(export(station, tmp / "station", gate.public_key(), key)[0], gate, "v2"),
               tmp / "gate", "v2")
    assert [n for _, n in ch.changed] == ["ana"] and ch.unchanged == 1
    assert {p.name: p.templates for p in gate.people()}["ana"] == 5
    station.remove("ana")
    station.remove("ben")
    ch = apply(gate, open_roster(export(station, tmp / "station", gate.public_key(), key)[0], gate, "v3"),
               tmp / "gate", "v3")
    assert sorted(n for _, n in ch.removed) == ["ana", "ben"]
    assert names(gate) == ["gus (enrolled at the gate)"]


def test_refused_rosters(world, tmp_path: Path) -> None:
    tmp, station, gate, key = world
    good, _ = export(station, tmp / "station", gate.public_key(), key)
    with pytest.raises(VaultError, match="not in vault.trusted_keys"):
        open_roster(export(station, tmp / "station", gate.public_key(), bytes(SigningKey.generate()))[0], gate, "x")
    other = Vault.open(tmp / "other", device_id="other")
    with pytest.raises(VaultError, match="sealed to gate"):
        open_roster(export(station, tmp / "station", other.public_key(), key)[0], gate, "x")
    for i in (20, 90, len(good) - 1):
        with pytest.raises(VaultError):
            open_roster(good[:i] + bytes([good[i] ^ 1]) + good[i + 1:], gate, "x")
    with pytest.raises(VaultError, match="not a maskgate roster"):
        open_roster(gate.export_bundle(gate.public_key(), key), gate, "a bundle")
    # A second station cannot take over the first one's people.
    apply(gate, open_roster(good, gate, "v"), tmp / "gate", "v")
    book = json.loads((tmp / "gate" / ROSTERS_FILE).read_text())
    assert list(book["stations"]) == [station_info(tmp / "station")["id"]]
    (tmp / "station" / "station.json").unlink()   # the same people under a new station id
    with pytest.raises(RosterError, match="belongs to another station"):
        apply(gate, open_roster(export(station, tmp / "station", gate.public_key(), key)[0], gate, "s2"),
              tmp / "gate", "s2")


def test_the_stations_own_people_only(world) -> None:
    """A station that is also a gate fed by another station exports only the people enrolled there."""
    tmp, station, gate, key = world
    mid = Vault.open(tmp / "mid", VaultConfig(trusted_keys=gate.cfg.trusted_keys), device_id="mid")
    apply(mid, open_roster(export(station, tmp / "station", mid.public_key(), key)[0], mid, "up"), tmp / "mid", "up")
    mid.add("mia", unit(np.random.default_rng(8), 2), "form 4", space="m1")
    _, r = export(mid, tmp / "mid", gate.public_key(), key)
    assert [x.person.name for x in r.records] == ["mia"]


# ---------------------------------------------------------------- through the real command line

@pytest.mark.skipif(not HAS_MODEL, reason="models/manifest.toml not present (the embedder model)")
def test_done_when_station_to_gate_through_the_cli(tmp_path: Path) -> None:
    st = {"MASKGATE_DEVICE_ID": "station-laptop"}
    gt = {"MASKGATE_DEVICE_ID": "gate-board"}
    station, gate = tmp_path / "station", tmp_path / "gate"
    signing = tmp_path / "installer.key"
    installer = maskgate("templates", "keygen", "--out", signing, "--json").json_lines()[0]["public_key"]
    config = tmp_path / "gate.toml"
    config.write_text(f'[vault]\ntrusted_keys = ["{installer}"]\n')
    g = ("--state", gate, "--config", config)
    pub = maskgate("templates", "pubkey", *g, env=gt).stdout.strip()

    for name, src in (("Ana Demo", [ROOT / "edge/demo/enroll"]),
                      ("Ben Glasses", [FACES / "d12_010.jpg", FACES / "d12_060.jpg", FACES / "d12_060_masked.jpg"])):
        r = maskgate("enroll", name, "--from", *src, "--consent", "form", "--state", station, env=st)
        assert r.returncode == 0, r.stderr
    r = maskgate("roster", "export", "--to", pub, "--sign-key", signing, "--out", tmp_path / "v1.roster",
                 "--state", station, "--json", env=st)
    assert r.returncode == 0, r.stderr
    assert r.json_lines()[0]["version"] == 1 and len(r.json_lines()[0]["people"]) == 2
    assert maskgate("templates", "remove", "Ben Glasses", "--state", station, env=st).returncode == 0
    r = maskgate("roster", "export", "--to", pub, "--sign-key", signing, "--out", tmp_path / "v2.roster",
                 "--state", station, "--json", env=st)
    assert r.returncode == 0 and r.json_lines()[0]["version"] == 2

    def listed() -> list[str]:
        r = maskgate("templates", "list", "--json", *g, env=gt)
        assert r.returncode == 0, r.stderr
        return sorted(p["name"] for p in r.json_lines())

    r = maskgate("roster", "import", tmp_path / "v1.roster", *g, "--json", env=gt)
    assert r.returncode == 0, r.stderr
    assert listed() == ["Ana Demo", "Ben Glasses"]
    r = maskgate("roster", "import", tmp_path / "v2.roster", *g, "--json", env=gt)
    assert r.returncode == 0, r.stderr
    [ch] = r.json_lines()
    assert [p["name"] for p in ch["removed"]] == ["Ben Glasses"] and ch["removed"][0]["id"].startswith("p-")
    assert listed() == ["Ana Demo"]
    vault_before = (gate / "vault.bin").read_bytes()
    r = maskgate("roster", "import", tmp_path / "v1.roster", *g, env=gt)
    assert r.returncode == 2 and "not newer than version 2" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert listed() == ["Ana Demo"] and (gate / "vault.bin").read_bytes() == vault_before

    log = [json.loads(line) for line in (gate / "audit.log").read_text().splitlines()]
    removed = [e for e in log if e["event"] == "roster.remove"]
    assert [(e["name"], e["version"]) for e in removed] == [("Ben Glasses", 2)]
    assert removed[0]["person"] == ch["removed"][0]["id"]
    assert sorted(e["name"] for e in log if e["event"] == "roster.add") == ["Ana Demo", "Ben Glasses"]
    [refused] = [e for e in log if e["event"] == "roster.refused"]
    assert refused["version"] == 1 and "not newer" in refused["reason"]
    assert maskgate("audit", "verify", *g, env=gt).returncode == 0
