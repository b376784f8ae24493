"""``diag models``: the model files against the manifest (sha256), then a known-answer inference
on the bundled demo photos, for the eye embedder and the whole-face model the gate fuses with it.

A model that loads but answers wrong (a different TFLite runtime, a damaged file the manifest was
edited to match) is caught by the known answer, not by the checksum.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge import embed
from edge.camera.replay import read_image
from edge.config import tomllib
from edge.diag.base import Context, Finding, _face_model, _fail, _ok, _warn
from edge.errors import ModelError
from edge.files import sha256_file
from edge.vision import landmarks

KNOWN_ANSWER = ("d10_005.jpg", "d10_130.jpg")  # the demo person, frames 5 and 130 of one recording


def _known_answer(embedder: Any, entry: dict[str, Any]) -> tuple[bool, str]:
    """Run the embedder on bundled photos and compare with what it must give.

    With a reference vector in the manifest (``known_answer``, for ``known_answer_image``) the
    photo's embedding must reproduce it; without one, the demo person's two photos must match each
    other at the model's own threshold, and the same photo twice must give the same vector.
    """
    demo = Path(__file__).parent.parent / "demo" / "enroll"
    names = [entry.get("known_answer_image", KNOWN_ANSWER[0]), KNOWN_ANSWER[1]]
    vecs = []
    with landmarks.for_images(max_faces=1) as lm:
        for name in names:
            image = read_image(demo / Path(name).name)
            faces = lm.detect(image)
            vec = embedder.embed_face(image, faces[0]) if faces else None
            if vec is None:
                return False, f"no embedding for the bundled photo {name}"
            vecs.append(np.asarray(vec, np.float32).ravel())
        image = read_image(demo / Path(names[0]).name)
        again = np.asarray(embedder.embed_face(image, lm.detect(image)[0]), np.float32).ravel()
    if float(np.dot(vecs[0], again)) < 0.9999:
        return False, "the same photo gave two different embeddings (the runtime is not deterministic)"
    ref = entry.get("known_answer")
    if ref is not None:
        ref = np.asarray(ref, np.float32)
        cos = float(np.dot(vecs[0], ref / (np.linalg.norm(ref) + 1e-12))) if ref.shape == vecs[0].shape else -1.0
        return cos >= 0.98, f"known answer {cos:.4f} against the stored reference (needs 0.98)"
    cos = float(np.dot(vecs[0], vecs[1]))
    return cos >= embedder.threshold, (f"known answer: the demo person's two photos score {cos:.3f} "
                                       f"(threshold {embedder.threshold:.3f})")


def check_models(ctx: Context) -> Finding:
    """Model files present, sha256 against the manifest, a known-answer inference."""
    reinstall = ("reinstall the models from the release (`bash scripts/setup.sh`, or copy models/ from the "
                 "installer); never edit a model file or its manifest by hand")
    mdir = Path(embed.models_dir())
    manifest_path = mdir / "manifest.toml"
    try:
        manifest = tomllib.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return _fail(f"{manifest_path} is missing", reinstall)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        return _fail(f"{manifest_path} is unreadable: {e}", reinstall)
    entries = manifest.get("models") or {}
    missing, altered = [], []
    for kind, entry in entries.items():
        path = mdir / str(entry.get("file", ""))
        if not path.is_file():
            missing.append(path.name or kind)
        elif sha256_file(path) != entry.get("sha256"):
            altered.append(path.name)
    if not entries:
        return _fail(f"{manifest_path} lists no models", reinstall)
    if missing or altered:
        what = ", ".join([f"{m} missing" for m in missing] + [f"{a} sha256 differs from the manifest"
                                                                for a in altered])
        return _fail(f"{mdir}: {what}", reinstall)
    try:
        embedder = embed.Embedder(ctx.cfg.embed)
    except ModelError as e:
        return _fail(str(e), reinstall)
    kind = ctx.cfg.embed.model or manifest.get("default", "")
    passed, answer = _known_answer(embedder, entries.get(kind, {}))
    detail = (f"{len(entries)} model files match the manifest; {kind or 'default'} loaded "
              f"({embedder.dim}-d); {answer}")
    if not passed:
        return _fail(detail, "the model runs but gives wrong answers: check the TFLite runtime "
                             "(ai-edge-litert / tflite-runtime version) and " + reinstall)
    face = _face_model(ctx.cfg)
    if isinstance(face, str):   # the gate still works on the eye region alone
        return _warn(f"{detail}; whole-face model not used: {face}", reinstall)
    passed, answer = _known_answer(face.embedder, {})
    if not passed:
        return _warn(f"{detail}; whole-face model: {answer}", "the gate uses the eye region alone; " + reinstall)
    return _ok(f"{detail}; whole-face model {face.embedder.spec.path.name}: {answer}")
