"""The eye embedder runtime: the shipped model, its manifest check, and `maskgate embed` as DESIGN.md says."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import maskgate
from edge import embed
from edge.config import EmbedConfig
from edge.errors import ModelError
from edge.vision import landmarks

ROOT = Path(__file__).resolve().parent.parent
FACES = ROOT / "tests" / "fixtures" / "faces"
D10 = [ROOT / "edge" / "demo" / "enroll" / "d10_005.jpg", ROOT / "edge" / "demo" / "enroll" / "d10_130.jpg"]
PEOPLE = {"d10": D10, "d12": [FACES / "d12_010.jpg", FACES / "d12_060.jpg"],
          "d18": [FACES / "d18_010.jpg"], "d19": [FACES / "d19_010.jpg"]}


def rgb(path: Path) -> np.ndarray:
    return np.ascontiguousarray(cv2.imread(str(path))[:, :, ::-1])


@pytest.fixture(scope="module")
def vectors() -> tuple[embed.Embedder, dict[str, list[np.ndarray]]]:
    e = embed.Embedder(EmbedConfig())
    out: dict[str, list[np.ndarray]] = {}
    with landmarks.for_images(max_faces=1) as lm:
        for who, paths in PEOPLE.items():
            for p in paths:
                im = rgb(p)
                v = e.embed_face(im, lm.detect(im)[0])
                assert v is not None
                out.setdefault(who, []).append(v)
    return e, out


def test_manifest_describes_the_shipped_models():
    for kind in ("float", "int8"):
        spec = embed.load_spec(kind)
        assert spec.path.is_file() and spec.dim == 128 and 0 < spec.threshold < 1
    assert embed.load_spec("int8").path.stat().st_size <= 2 * 1024 * 1024


def test_manifest_calibrates_rarer_false_accepts_for_bigger_galleries(tmp_path):
    """Each model's tail starts at its threshold (FAR 1e-3) and climbs as the rate falls; a tail
    whose two lists differ in length is a damaged manifest, refused like any other."""
    for kind in ("float", "int8"):
        spec = embed.load_spec(kind)
        fars, ts = zip(*spec.tail)
        assert fars[0] == 1e-3 and min(fars) <= 1e-5 and ts[0] == spec.threshold
        assert list(fars) == sorted(fars, reverse=True) and list(ts) == sorted(ts) and ts[-1] < 1
    models = tmp_path / "models"
    shutil.copytree(embed.models_dir(), models)
    manifest = models / embed.MANIFEST
    manifest.write_text(manifest.read_text().replace("tail_far = [0.001, ", "tail_far = ["))
    with pytest.raises(ModelError, match="damaged"):
        embed.load_spec("int8", models)


def test_embeddings_are_unit_vectors_of_the_manifest_dimension(vectors):
    e, out = vectors
    v = out["d10"][0]
    assert v.shape == (e.dim,) and v.dtype == np.float32
    assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-4


def test_same_person_above_threshold_different_people_below(vectors):
    e, out = vectors
    for who in ("d10", "d12"):
        a, b = out[who]
        assert float(a @ b) > e.threshold, (who, float(a @ b), e.threshold)
    for x, y in itertools.combinations(out, 2):
        for a in out[x]:
            for b in out[y]:
                assert float(a @ b) < e.threshold, (x, y, float(a @ b), e.threshold)


def test_masked_probe_matches_the_bare_enrolment(vectors):
    """The gate's case: enrolled bare-faced, seen wearing a mask (drawn on; see fixtures/faces/README)."""
    e, out = vectors
    with landmarks.for_images(max_faces=1) as lm:
        probes = {}
        for who in ("d10", "d12"):
            im = rgb(FACES / f"{PEOPLE[who][1].stem}_masked.jpg")
            faces = lm.detect(im)
            assert faces, "MediaPipe must still find a masked face"
            probes[who] = e.embed_face(im, faces[0])
    for who, v in probes.items():
        assert float(v @ out[who][0]) > e.threshold, who
        for other in out:
            if other != who:
                assert all(float(v @ u) < e.threshold for u in out[other]), (who, other)


def test_mirror_average_follows_the_manifest(tmp_path):
    """The shipped manifest averages each crop with its mirror image (the threshold was calibrated
    so): a crop and its mirror then embed alike. A manifest without the flag embeds them apart."""
    from edge.vision import eyecrop

    im = rgb(D10[0])
    with landmarks.for_images(max_faces=1) as lm:
        crop = eyecrop.eye_crop(im, lm.detect(im)[0].landmarks)
    mirror = np.ascontiguousarray(crop[:, ::-1])
    shipped = embed.Embedder(EmbedConfig())
    assert shipped.spec.mirror_average
    assert float(shipped.embed_crop(crop) @ shipped.embed_crop(mirror)) > 0.9999
    models = tmp_path / "models"
    shutil.copytree(embed.models_dir(), models)
    manifest = models / embed.MANIFEST
    manifest.write_text(manifest.read_text().replace("mirror_average = true", "mirror_average = false"))
    plain = embed.Embedder(EmbedConfig(), models)
    assert not plain.spec.mirror_average
    a, b = plain.embed_crop(crop), plain.embed_crop(mirror)
    assert float(a @ b) < 0.99
    # the mirror-averaged embedding is the normalised sum of the two plain ones
    both = (a + b) / np.linalg.norm(a + b)
    assert float(both @ shipped.embed_crop(crop)) > 0.9999


def test_altered_model_file_is_refused(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(embed.models_dir(), models)
    spec = embed.load_spec("", models)
    data = bytearray(spec.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    spec.path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=spec.path.name):
        embed.Embedder(EmbedConfig(), models)
    r = maskgate("embed", D10[0], "--json", env={"MASKGATE_MODELS": str(models)})
    assert r.returncode == 2 and r.stdout == ""
    assert "does not match" in r.stderr and spec.path.name in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_unknown_model_name_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="not in"):
        embed.Embedder(EmbedConfig(model="fp16"))


def test_embed_command_json_lines(tmp_path, vectors):
    e, out = vectors
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 180, np.uint8))  # test inputs, not gate frames
    tight = tmp_path / "tight.png"  # a face crop with no context around it: embedded all the same
    cv2.imwrite(str(tight), cv2.imread(str(D10[1]))[150:400, 130:390])
    r = maskgate("embed", D10[0], blank, tight, "--json")
    assert r.returncode == 0, r.stderr
    lines = r.json_lines()
    assert [ln["path"] for ln in lines] == [str(D10[0]), str(blank), str(tight)]
    assert set(lines[0]) == {"path", "embedding"} and len(lines[0]["embedding"]) == e.dim
    assert lines[1] == {"path": str(blank), "error": "no face"}
    # The command gives the same vector as the library.
    assert float(np.dot(lines[0]["embedding"], out["d10"][0])) > 0.999
    assert float(np.dot(lines[2]["embedding"], out["d10"][0])) > e.threshold


def test_unreadable_image_exits_2_and_keeps_the_others(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_text("not an image")
    r = maskgate("embed", bad, D10[0], "--json")
    assert r.returncode == 2
    assert "broken.jpg" in r.stderr
    assert [ln["path"] for ln in r.json_lines()] == [str(D10[0])]
