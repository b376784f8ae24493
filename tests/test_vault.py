"""The sealed template vault: device binding, renewable templates, faults, durability, bundles."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, maskgate
from edge.config import VaultConfig
from edge.errors import VaultError
from edge.vault import (DAY_S, KEY_FILE, VAULT_FILE, Keys, Vault, decode_records, device_identity, open_bundle,
                        parse)

DIM = 128
BOARD = "board-a"


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture
def vault(state: Path, rng: np.random.Generator) -> Vault:
    v = Vault.open(state, VaultConfig(), device_id=BOARD)
    v.add("alice", list(unit(rng, 3)), "form 2024-17 signed", operator="olga")
    v.add("bob", list(unit(rng, 2)), "verbal, witnessed by olga")
    return v


def keys_of(state: Path, board: str = BOARD) -> Keys:
    return Keys.derive((state / KEY_FILE).read_bytes(), device_identity(board))


# ---------------------------------------------------------------- basics

def test_round_trip_keeps_records_and_cosines(state: Path, rng: np.random.Generator) -> None:
    v = Vault.open(state, device_id=BOARD)
    x = unit(rng, 4)
    pid = v.add("carol", list(x), "signed form 9", operator="ops", expires=time.time() + 3600)
    again = Vault.open(state, device_id=BOARD)
    [p] = again.people()
    assert (p.id, p.name, p.templates, p.consent.text, p.consent.operator) == (pid, "carol", 4, "signed form 9", "ops")
    assert p.expires is not None and p.last_seen is None
    ids, rows = again.gallery()
    assert ids == [pid] * 4 and rows.dtype == np.float32 and rows.shape == (4, DIM)
    # Stored rows are not the embeddings, but every cosine is kept (no accuracy lost).
    assert np.max(np.abs(rows - x)) > 0.1
    np.testing.assert_allclose(rows @ again.protect(x).T, x @ x.T, atol=1e-5)
    assert "embedding" not in json.dumps(p.to_dict()) and again.name_of(pid) == "carol"


def test_device_key_made_once_private(state: Path) -> None:
    Vault.open(state, device_id=BOARD)
    key = state / KEY_FILE
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes()) == 32
    before = key.read_bytes()
    Vault.open(state, device_id=BOARD)
    assert key.read_bytes() == before


def test_add_refuses_without_consent_or_twice(vault: Vault, rng: np.random.Generator) -> None:
    with pytest.raises(VaultError, match="consent"):
        vault.add("dan", list(unit(rng, 2)), "   ")
    with pytest.raises(VaultError, match="already enrolled"):
        vault.add("alice", list(unit(rng, 2)), "ok")
    with pytest.raises(VaultError, match="values"):
        vault.add("erin", list(unit(rng, 2, dim=64)), "ok")
    assert [p.name for p in vault.people()] == ["alice", "bob"]


# ---------------------------------------------------------------- binding to the board

def test_copied_to_another_board_opens_nothing(vault: Vault, state: Path, tmp_path: Path) -> None:
    sd_card = tmp_path / "sd-card-copy"
    shutil.copytree(state, sd_card)
    before = (sd_card / VAULT_FILE).read_bytes()
    assert len(Vault.open(sd_card, device_id=BOARD).people()) == 2   # same board: the copy is fine
    with pytest.raises(VaultError, match=rf"{VAULT_FILE}.*another board"):
        Vault.open(sd_card, device_id="board-b")
    assert (sd_card / VAULT_FILE).read_bytes() == before


def test_vault_without_its_key_is_refused_not_replaced(vault: Vault, state: Path) -> None:
    (state / KEY_FILE).unlink()
    before = (state / VAULT_FILE).read_bytes()
    with pytest.raises(VaultError, match="device key is missing"):
        Vault.open(state, device_id=BOARD)
    assert (state / VAULT_FILE).read_bytes() == before and not (state / KEY_FILE).exists()


def test_device_identity_sources(tmp_path: Path) -> None:
    serial = tmp_path / "serial-number"
    cpuinfo = tmp_path / "cpuinfo"
    machine_id = tmp_path / "machine-id"
    cpuinfo.write_text("processor\t: 0\nHardware\t: BCM2835\nSerial\t\t: 0000000000000000\n")
    machine_id.write_text("4c4c4544004b3510\n")
    srcs = (str(serial), str(cpuinfo), str(machine_id))
    assert device_identity(None, srcs).endswith(b"machine-id:4c4c4544004b3510")   # a zero serial is no serial
    cpuinfo.write_text("processor\t: 0\nSerial\t\t: 10000000abcdef01\n")
    assert device_identity(None, srcs).endswith(b"cpuinfo:10000000abcdef01")
    serial.write_bytes(b"10000000abcdef01\x00")
    assert device_identity(None, srcs).endswith(b"serial-number:10000000abcdef01")
    with pytest.raises(VaultError, match="no device identity"):
        device_identity(None, (str(tmp_path / "none"),))
    assert device_identity("x", srcs) != device_identity("y", srcs) != device_identity(None, srcs)


# ---------------------------------------------------------------- bad files

def test_truncated_flipped_and_foreign_files(vault: Vault, state: Path) -> None:
    path = state / VAULT_FILE
    good = path.read_bytes()
    keys = keys_of(state)
    cases = {"truncated": [good[:n] for n in (0, 5, 17, 18, 40, 58, len(good) // 2, len(good) - 1)],
             "flipped": [good[:i] + bytes([good[i] ^ 1 << (i % 8)]) + good[i + 1:] for i in range(len(good))],
             "foreign": [b"\xff\xd8\xff\xe0" + bytes(200), b"MGVAULT\x00" + bytes(100), os.urandom(300)]}
    for kind, blobs in cases.items():
        for blob in blobs:
            with pytest.raises(VaultError) as e:
                parse(blob, keys, str(path))
            assert str(path) in str(e.value), kind
    # Through open(): the message names the file and the fault, the file stays as it was.
    for blob, fault in ((good[:-7], "altered or truncated"), (b"PK\x03\x04" + bytes(64), "not a maskgate vault"),
                        (good[:30] + bytes([good[30] ^ 4]) + good[31:], "altered")):
        path.write_bytes(blob)
        with pytest.raises(VaultError, match=fault) as e:
            Vault.open(state, device_id=BOARD)
        assert str(path) in str(e.value) and "\n" not in str(e.value)
        assert path.read_bytes() == blob


def test_gate_grants_nobody_when_the_file_goes_bad(vault: Vault, state: Path) -> None:
    assert len(vault.gallery()[0]) == 5
    path = state / VAULT_FILE
    bad = path.read_bytes()[:-1]
    path.write_bytes(bad)
    ids, rows = vault.gallery()
    assert ids == [] and rows.shape == (0, DIM) and "altered or truncated" in vault.fault
    assert path.read_bytes() == bad


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=600))
def test_fuzz_parser_random_bytes(data: bytes) -> None:
    keys = Keys.derive(bytes(32), b"fuzz")
    for blob in (data, b"MGVAULT\x00\x00\x01" + keys.key_id + data):
        with pytest.raises(VaultError):
            parse(blob, keys)
    with pytest.raises(VaultError):
        open_bundle(b"MGBUNDL\x00\x00\x01" + data, keys, [])


_json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                            lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                            max_leaves=20)
_person = st.fixed_dictionaries({"id": st.sampled_from(["p-0123456789abcdef", "p-x", 5]),
                                 "name": st.text(max_size=5) | st.integers(), "n": st.integers(-2, 3),
                                 "created": st.floats() | st.integers(), "last_seen": st.none() | st.floats(),
                                 "expires": _json_values, "consent": _json_values |
                                 st.fixed_dictionaries({"text": st.text(max_size=5), "time": st.floats(),
                                                        "operator": st.text(max_size=3)})})


@settings(max_examples=200, deadline=None)
@given(meta=st.fixed_dictionaries({"dim": st.integers(-1, 5) | _json_values,
                                   "transform": st.sampled_from(["shake256-gauss-qr-v1", "x"]),
                                   "embedder": st.text(max_size=16) | _json_values,
                                   "people": st.lists(_person, max_size=3) | _json_values}) | _json_values,
       blob=st.binary(max_size=64), cut=st.integers(0, 3))
def test_fuzz_body_decoder(meta: object, blob: bytes, cut: int) -> None:
    """Inside the seal: a well-sealed but nonsensical body is still only ever a VaultError."""
    raw = json.dumps(meta).encode()
    data = len(raw).to_bytes(4, "big") + raw + blob
    try:
        records, dim, space = decode_records(data[:len(data) - cut])
    except VaultError:
        return
    assert sum(len(r.rows) for r in records) * dim * 4 <= len(blob) and isinstance(space, str)


# ---------------------------------------------------------------- renewable templates

def test_rekey_makes_old_copies_and_old_templates_useless(vault: Vault, state: Path, rng: np.random.Generator) -> None:
    x = unit(rng, 3)
    pid = vault.add("frank", list(x), "form 3")
    old_file, old_key = (state / VAULT_FILE).read_bytes(), vault.key_id
    old_rows = vault.gallery()[1][vault.gallery()[0].index(pid):][:3].copy()
    new_key = vault.rekey()
    assert new_key != old_key and not (state / "device.key.next").exists()
    # A copy of the file from before the rekey opens nothing now.
    saved = state.parent / "old.bin"
    saved.write_bytes(old_file)
    with pytest.raises(VaultError, match="another board, from before a rekey"):
        parse(saved.read_bytes(), keys_of(state), str(saved))
    # The person still matches after the rekey (templates were moved, not lost) ...
    reopened = Vault.open(state, device_id=BOARD)
    ids, rows = reopened.gallery()
    mine = rows[[i for i, p in enumerate(ids) if p == pid]]
    assert np.min(np.max(mine @ reopened.protect(x).T, axis=0)) > 0.9999
    # ... while templates kept from before the rekey score like strangers (|cos| ~ N(0, 1/dim)).
    stale = old_rows @ reopened.protect(x).T
    assert np.max(np.abs(stale)) < 0.45
    assert [p.name for p in reopened.people()] == ["alice", "bob", "frank"]


def test_two_gates_templates_of_one_person_are_unlinkable(tmp_path: Path, rng: np.random.Generator) -> None:
    x = unit(rng, 20)
    a = Vault.open(tmp_path / "a", device_id="board-a")
    b = Vault.open(tmp_path / "b", device_id="board-b")
    a.add("same person", list(x), "ok")
    b.add("same person", list(x), "ok")
    ra, rb = a.gallery()[1], b.gallery()[1]
    np.testing.assert_allclose(ra @ ra.T, rb @ rb.T, atol=1e-5)   # each gate works the same
    cross = np.diag(ra @ rb.T)                                     # but rows cannot be linked
    assert np.max(np.abs(cross)) < 0.45 and abs(float(np.mean(cross))) < 0.1


def test_running_gate_follows_a_rekey_made_by_the_cli(vault: Vault, state: Path) -> None:
    cli = Vault.open(state, device_id=BOARD)
    cli.rekey()
    ids, _ = vault.gallery()
    assert len(ids) == 5 and vault.fault is None and vault.key_id == cli.key_id


# ---------------------------------------------------------------- remove, retention, last seen

def test_remove_leaves_no_trace_in_the_state_dir(vault: Vault, state: Path) -> None:
    alice = vault.find("alice")
    vault.remove("alice")
    assert [p.name for p in vault.people()] == ["bob"]
    assert sorted(os.listdir(state)) == ["device.key", "vault.bin", "vault.lock"]   # no .bak, no temp files
    records, _, _ = parse((state / VAULT_FILE).read_bytes(), keys_of(state))
    assert [r.person.id for r in records] == [vault.find("bob").id]
    assert alice.id not in vault.gallery()[0]
    with pytest.raises(VaultError, match="nobody called"):
        vault.remove(alice.id)


def test_retention_and_expiry(state: Path, rng: np.random.Generator) -> None:
    v = Vault.open(state, VaultConfig(retention_days=30), device_id=BOARD)
    now = time.time()
    old = v.add("old", list(unit(rng, 2)), "ok")
    soon = v.add("leaving", list(unit(rng, 2)), "ok", expires=now + 10)
    keep = v.add("regular", list(unit(rng, 2)), "ok")
    v.touch(keep, now=now + 40 * DAY_S)
    assert set(v.gallery()[0]) == {old, soon, keep}
    assert v.purge(now=now + 5) == []
    gone = v.purge(now=now + 41 * DAY_S)
    assert {p.id for p in gone} == {old, soon}
    assert [p.id for p in Vault.open(state, VaultConfig(retention_days=30), device_id=BOARD).people()] == [keep]


def test_running_gate_stops_letting_in_at_expiry(state: Path, rng: np.random.Generator) -> None:
    v = Vault.open(state, device_id=BOARD)
    pid = v.add("temp worker", list(unit(rng, 2)), "contract 12", expires=time.time() + 0.5)
    first = v.gallery()
    assert first[0] == [pid, pid] and v.gallery() is first     # cached while nothing changes
    time.sleep(0.6)
    assert v.gallery()[0] == []


def test_touch_writes_at_most_twice_a_day(vault: Vault, state: Path) -> None:
    pid = vault.find("bob").id
    t0 = time.time()
    vault.touch(pid, now=t0)
    stamp = (state / VAULT_FILE).stat().st_mtime_ns
    assert Vault.open(state, device_id=BOARD).find("bob").last_seen == pytest.approx(t0)
    time.sleep(0.01)
    vault.touch(pid, now=t0 + 3600)
    assert (state / VAULT_FILE).stat().st_mtime_ns == stamp
    assert vault.find("bob").last_seen == pytest.approx(t0)
    assert [p.last_seen for p in vault.people() if p.id == pid] == [pytest.approx(t0 + 3600)]


# ---------------------------------------------------------------- bundles between gates

def test_bundle_only_from_trusted_installer_to_its_target(tmp_path: Path, rng: np.random.Generator) -> None:
    from nacl.signing import SigningKey

    installer, mallory = SigningKey.generate(), SigningKey.generate()
    trusted = VaultConfig(trusted_keys=[bytes(installer.verify_key).hex()])
    old = Vault.open(tmp_path / "old", device_id="old-board")
    new = Vault.open(tmp_path / "new", trusted, device_id="new-board")
    other = Vault.open(tmp_path / "other", trusted, device_id="other-board")
    x = unit(rng, 3)
    pid = old.add("gina", list(x), "form 4", operator="olga")
    bundle = old.export_bundle(new.public_key(), bytes(installer))
    with pytest.raises(VaultError, match="not to this one"):
        other.import_bundle(bundle)
    with pytest.raises(VaultError, match="not in vault.trusted_keys"):
        Vault.open(tmp_path / "new", device_id="new-board").import_bundle(bundle)
    with pytest.raises(VaultError, match="not in vault.trusted_keys"):
        new.import_bundle(old.export_bundle(new.public_key(), bytes(mallory)))
    for i in (12, 50, 90, len(bundle) - 1):
        with pytest.raises(VaultError):
            new.import_bundle(bundle[:i] + bytes([bundle[i] ^ 0x10]) + bundle[i + 1:])
    # Mallory claims the installer's name but cannot sign as them.
    m_bundle = old.export_bundle(new.public_key(), bytes(mallory))
    forged = m_bundle[:10] + bytes(installer.verify_key) + m_bundle[42:]          # header: 74 bytes
    forged = forged[:74] + bytes(mallory.sign(forged[:74] + forged[138:]).signature) + forged[138:]
    with pytest.raises(VaultError, match="bad signature"):
        new.import_bundle(forged)
    assert new.people() == []
    [p] = new.import_bundle(bundle)
    assert (p.id, p.name, p.consent.text, p.consent.operator) == (pid, "gina", "form 4", "olga")
    ids, rows = new.gallery()
    assert np.min(np.max(rows @ new.protect(x).T, axis=0)) > 0.9999
    assert np.max(np.abs(rows @ old.gallery()[1].T)) < 0.45


def test_templates_are_bound_to_the_embedder_that_made_them(tmp_path: Path, rng: np.random.Generator) -> None:
    """Another model's embeddings of the same face are unrelated vectors: the vault records which
    embedder made its templates and refuses to mix in another's, until everyone is enrolled again."""
    from nacl.signing import SigningKey

    v = Vault.open(tmp_path / "gate", device_id=BOARD)
    assert v.stale_for("new-model") is None                      # empty: anything may be enrolled
    pid = v.add("hana", list(unit(rng, 2)), "form 5", space="old-model")
    again = Vault.open(tmp_path / "gate", device_id=BOARD)       # recorded in the sealed file
    assert again.stale_for("old-model") is None
    assert "embedder old-model" in again.stale_for("new-model") and "enrol everyone again" in again.stale_for("new-model")
    with pytest.raises(VaultError, match="embedder old-model.*new-model"):
        again.add("ivan", list(unit(rng, 2)), "form 6", space="new-model")
    assert [p.name for p in Vault.open(tmp_path / "gate", device_id=BOARD).people()] == ["hana"]
    installer = SigningKey.generate()
    other = Vault.open(tmp_path / "other", VaultConfig(trusted_keys=[bytes(installer.verify_key).hex()]),
                       device_id="other-board")
    other.add("jo", list(unit(rng, 2)), "form 7", space="new-model")
    with pytest.raises(VaultError, match="cannot be mixed"):
        other.import_bundle(again.export_bundle(other.public_key(), bytes(installer)))
    empty = Vault.open(tmp_path / "new", VaultConfig(trusted_keys=[bytes(installer.verify_key).hex()]),
                       device_id="new-board")                   # a replacement board on a newer release
    with pytest.raises(VaultError, match="embedder old-model, this gate's model is embedder new-model"):
        empty.import_bundle(again.export_bundle(empty.public_key(), bytes(installer)), model_space="new-model")
    assert empty.people() == []
    again.remove(pid)                                            # emptied: the new model may enrol
    assert again.stale_for("new-model") is None
    again.add("ivan", list(unit(rng, 2)), "form 6", space="new-model")
    assert Vault.open(tmp_path / "gate", device_id=BOARD).stale_for("new-model") is None


# ---------------------------------------------------------------- durability and concurrency

WRITER = textwrap.dedent("""
    import os, sys, numpy as np
    sys.path.insert(0, {root!r})
    from edge.vault import Vault
    state, mode, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "die":   # fault injection: the k-th fsync / rename / write is where the power fails
        calls = {{"n": 0}}
        def dying(real):
            def f(*a, **kw):
                calls["n"] += 1
                if calls["n"] == k:
                    os._exit(9)
                return real(*a, **kw)
            return f
        os.fsync, os.replace, os.write = dying(os.fsync), dying(os.replace), dying(os.write)
    v = Vault.open(state, device_id="crash-board")
    rng = np.random.default_rng(os.getpid())
    for i in range(10_000):
        if i % 3 == 2:
            v.rekey()
        else:
            v.add(f"{{os.getpid()}}-{{i}}", list(rng.standard_normal((2, 64))), "ok")
        print(len(v.people()), flush=True)
""")


def _check_whole(state: Path, committed: int) -> int:
    v = Vault.open(state, device_id="crash-board")   # never a VaultError: old or new, whole
    n = len(v.people())
    assert n in (committed, committed + 1), (n, committed)
    assert len(v.gallery()[0]) == 2 * n
    assert not list(state.glob(".*.tmp")) and not (state / "device.key.next").exists()
    return n


def test_killed_writers_leave_the_old_or_the_new_vault(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(root=str(ROOT)))
    state = tmp_path / "state"
    committed = 0
    rnd = random.Random(5)
    runs = 0
    # Deterministic: die at each of the first 24 fsync/rename/write calls (add, add, rekey steps).
    for k in range(1, 25):
        p = subprocess.run([sys.executable, str(script), str(state), "die", str(k)], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 9, p.stderr
        lines = p.stdout.split()
        committed = _check_whole(state, int(lines[-1]) if lines else committed)
        runs += 1
    # Random: SIGKILL a free-running writer at a random moment.
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        p = subprocess.Popen([sys.executable, str(script), str(state), "run", "0"], stdout=subprocess.PIPE, text=True)
        first = p.stdout.readline()   # it is writing now
        time.sleep(rnd.uniform(0, 0.15))
        p.send_signal(signal.SIGKILL)
        rest = p.stdout.read()
        p.wait()
        lines = (first + rest).split()
        committed = _check_whole(state, int(lines[-1]) if lines else committed)
        runs += 1
    assert runs >= 30 and committed > 20


def test_two_writers_lose_nothing(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys, numpy as np
        sys.path.insert(0, {str(ROOT)!r})
        from edge.vault import Vault
        v = Vault.open(sys.argv[1], device_id="b")
        for i in range(15):
            v.add(sys.argv[2] + str(i), [np.ones(8)], "ok")
    """)
    state = tmp_path / "s"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(state), tag]) for tag in ("cli", "daemon")]
    assert [p.wait(60) for p in procs] == [0, 0]
    assert len(Vault.open(state, device_id="b").people()) == 30


# ---------------------------------------------------------------- the command line

def test_templates_cli(tmp_path: Path, rng: np.random.Generator) -> None:
    old_state, new_state = tmp_path / "old", tmp_path / "new"
    from edge.embed import load_spec

    Vault.open(old_state, device_id="old-board").add("hana", list(unit(rng, 2)), "form 5",
                                                     space=load_spec().space)   # the installed model's
    old_env, new_env = {"MASKGATE_DEVICE_ID": "old-board"}, {"MASKGATE_DEVICE_ID": "new-board"}

    r = maskgate("templates", "list", "--json", "--state", old_state, env=old_env)
    assert r.returncode == 0 and [p["name"] for p in r.json_lines()] == ["hana"]
    assert "embedding" not in r.stdout and "rows" not in r.stdout
    signing = tmp_path / "installer.key"
    r = maskgate("templates", "keygen", "--out", signing, "--json", env=old_env)
    installer_pub = r.json_lines()[0]["public_key"]
    assert r.returncode == 0 and signing.stat().st_mode & 0o777 == 0o600
    target = maskgate("templates", "pubkey", "--state", new_state, env=new_env).stdout.strip()
    bundle = tmp_path / "residents.bundle"
    r = maskgate("templates", "export", "--to", target, "--sign-key", signing, "--out", bundle,
                 "--state", old_state, env=old_env)
    assert r.returncode == 0, r.stderr
    r = maskgate("templates", "import", bundle, "--state", new_state, env=new_env)
    assert r.returncode == 2 and "not in vault.trusted_keys" in r.stderr
    config = tmp_path / "maskgate.toml"
    config.write_text(f'[vault]\ntrusted_keys = ["{installer_pub}"]\n')
    r = maskgate("templates", "import", bundle, "--state", new_state, "--config", config, env=new_env)
    assert r.returncode == 0, r.stderr
    r = maskgate("templates", "rekey", "--state", new_state, env=new_env)
    assert r.returncode == 0 and "match nobody" in r.stdout
    r = maskgate("templates", "remove", "hana", "--state", new_state, env=new_env)
    assert r.returncode == 0
    r = maskgate("templates", "list", "--json", "--state", new_state, env=new_env)
    assert r.returncode == 0 and r.json_lines() == []
    (old_state / VAULT_FILE).write_bytes(b"garbage")
    r = maskgate("templates", "list", "--state", old_state, env=old_env)
    assert r.returncode == 2 and str(old_state / VAULT_FILE) in r.stderr and "not a maskgate vault" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
