"""The eye-region embedder at run time: eye crop -> 128-D unit vector, on the TFLite runtime.

The model file is checked against ``models/manifest.toml`` before it is loaded: a file whose sha256
differs (corrupted SD card, a swapped model) is refused, because a different model silently changes
who the gate lets in. The manifest also carries the input size and normalisation, the output
dimension and the cosine threshold calibrated for that file (see models/MODEL_CARD.md).

With ``mirror_average`` in the manifest's ``[input]``, the embedding is the normalised sum of the
network's embeddings of the crop and of its mirror image (the crop is symmetric about its centre).
For the same weights this raised the masked LFW TAR at FAR 1e-2 from 0.67 to 0.70, at the cost of
a second 0.3 ms inference; the manifest's thresholds were calibrated on such embeddings.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.config import EmbedConfig, tomllib
from edge.errors import ModelError
from edge.files import sha256_file
from edge.native import quiet_stderr
from edge.vision import eyecrop, facecrop
from edge.vision.landmarks import detect_padded

log = logging.getLogger(__name__)

MANIFEST = "manifest.toml"


def models_dir() -> Path:
    """$MASKGATE_MODELS, else the ``models/`` folder next to the ``edge`` package."""
    env = os.environ.get("MASKGATE_MODELS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "models"


@dataclass(frozen=True)
class ModelSpec:
    """One model file as the manifest describes it."""

    path: Path
    sha256: str
    height: int
    width: int
    mean: float
    std: float
    dim: int
    threshold: float
    mirror_average: bool = False
    space: str = ""   # which embedding function: templates only compare within one (see ``space_of``)
    # (false-accept rate of one comparison, threshold) on development data: how the gate raises its
    # threshold as more people are enrolled (edge.match.threshold_for); empty: the threshold only.
    tail: tuple[tuple[float, float], ...] = ()


def space_of(manifest: dict) -> str:
    """A short id of the embedding function a manifest describes: every model file it lists (float
    and int8 of one release agree to cosine 0.999, so they share it) and how the embedding is made.
    The vault stores it with the templates; a new model means new templates."""
    files = sorted(str(v["sha256"]).lower() for v in manifest["models"].values())
    how = f"mirror_average={bool(manifest['input'].get('mirror_average', False))}"
    return hashlib.sha256(",".join(files + [how]).encode()).hexdigest()[:16]


def load_spec(name: str = "", directory: Path | None = None, section: str = "") -> ModelSpec:
    """The manifest's entry for ``name`` (a kind such as ``int8``, or a file name); "" = its default.

    ``section``: a table of the manifest laid out like the manifest itself (``face``: the whole-face
    embedder), so that each embedding function has its own files, input, calibration and space."""
    d = directory or models_dir()
    mpath = d / MANIFEST
    try:
        m = tomllib.loads(mpath.read_text(encoding="utf-8"))
        if section:
            if section not in m:
                raise ModelError(f"{mpath} has no [{section}] model (reinstall maskgate)")
            m = m[section]
        models = m["models"]
        kind = name or m["default"]
        by_file = {v["file"]: k for k, v in models.items()}
        kind = by_file.get(Path(kind).name, kind)
        if kind not in models:
            raise ModelError(f"embed.model = {name!r} is not in {mpath} (known: {', '.join(models)})")
        e = models[kind]
        _check_calibration(mpath, kind, e)
        return ModelSpec(d / e["file"], str(e["sha256"]).lower(), int(m["input"]["height"]),
                         int(m["input"]["width"]), float(m["input"]["mean"]), float(m["input"]["std"]),
                         int(m["output"]["dim"]), float(e["threshold"]),
                         bool(m["input"].get("mirror_average", False)), space_of(m),
                         tuple(zip(map(float, e.get("tail_far", [])), map(float, e.get("tail_threshold", [])),
                                   strict=True)))
    except FileNotFoundError:
        raise ModelError(f"model manifest {mpath} is missing (reinstall maskgate or set MASKGATE_MODELS)") from None
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as e:
        raise ModelError(f"model manifest {mpath} is damaged ({type(e).__name__}: {e}); reinstall maskgate") from None


def _check_calibration(mpath: Path, kind: str, e: dict) -> None:
    """A threshold is a cosine strictly between 0 and 1, and a stranger-rate tail holds rates in
    (0, 1) with thresholds in (0, 1): anything else is a damaged or edited manifest, and a gate
    on it could let anyone in (a threshold of -1 grants every score)."""
    t = float(e["threshold"])
    if not 0 < t < 1 or not math.isfinite(t):
        raise ModelError(f"model manifest {mpath}: models.{kind}.threshold = {t!r} is not between 0 and 1; "
                         f"the model is refused (reinstall maskgate)")
    for key in ("tail_far", "tail_threshold"):
        for v in e.get(key, []):
            if not (isinstance(v, (int, float)) and 0 < float(v) < 1):
                raise ModelError(f"model manifest {mpath}: models.{kind}.{key} holds {v!r}, not a value "
                                 f"between 0 and 1; the model is refused (reinstall maskgate)")


def installed_space(name: str = "") -> str | None:
    """The installed model's embedding space (``space_of``), or None when its manifest cannot be
    read: callers comparing templates against it then skip the check (``diag models`` says why)."""
    try:
        return load_spec(name).space
    except ModelError:
        return None


def _interpreter(path: Path, threads: int) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        except ImportError:
            raise ModelError("no TFLite runtime: install ai-edge-litert (or tflite-runtime); run scripts/setup.sh") from None
    try:
        with quiet_stderr():  # the runtime announces its XNNPACK delegate on fd 2
            it = Interpreter(model_path=str(path), num_threads=threads)
            it.allocate_tensors()
            it.invoke()  # the delegate is applied on the first run: pay for it (and its chatter) here
    except (ValueError, RuntimeError) as e:
        raise ModelError(f"{path} cannot be loaded by the TFLite runtime ({e})") from None
    return it


class _CheckedModel:
    """A manifest-checked TFLite embedding model: sha256, input shape and crop size verified at load."""

    SECTION = ""
    CROP_HW = (0, 0)
    WHAT = "embedder"

    def __init__(self, model: str, threads: int, directory: Path | None = None) -> None:
        spec = load_spec(model, directory, self.SECTION)
        if not spec.path.is_file():
            raise ModelError(f"model file {spec.path} is missing (reinstall maskgate or set MASKGATE_MODELS)")
        digest = sha256_file(spec.path)
        if digest != spec.sha256:
            raise ModelError(f"model file {spec.path} does not match {spec.path.parent / MANIFEST} "
                             f"(sha256 {digest[:12]}..., expected {spec.sha256[:12]}...): it is damaged or "
                             "replaced; restore the original file or reinstall maskgate")
        self.spec = spec
        self.dim = spec.dim
        self.threshold = spec.threshold
        self.tail = spec.tail
        self.space = spec.space
        self._it = _interpreter(spec.path, threads)
        inp = self._it.get_input_details()[0]
        self._in, self._out = inp["index"], self._it.get_output_details()[0]["index"]
        if tuple(inp["shape"]) != (1, spec.height, spec.width, 3):
            raise ModelError(f"{spec.path} takes input {tuple(inp['shape'])}, the manifest says "
                             f"{spec.height}x{spec.width}x3; reinstall maskgate")
        if (spec.height, spec.width) != self.CROP_HW:
            raise ModelError(f"{spec.path} expects {spec.height}x{spec.width} crops but the {self.WHAT} crop is "
                             f"{self.CROP_HW[0]}x{self.CROP_HW[1]}; model and code are from different versions")
        log.info("%s %s (%d-D, threshold %.3f)", self.WHAT, spec.path.name, self.dim, self.threshold)

    def embed_crop(self, crop: np.ndarray) -> np.ndarray:
        """The unit embedding of one aligned eye crop (RGB or grey uint8, CROP_H x CROP_W)."""
        if crop.ndim == 2:
            crop = np.repeat(crop[:, :, None], 3, axis=2)
        if crop.shape != (self.spec.height, self.spec.width, 3):
            raise ValueError(f"expected a {self.spec.height}x{self.spec.width}x3 crop, got {crop.shape}")
        x = (crop.astype(np.float32)[None] - self.spec.mean) / self.spec.std
        e = self._run(x)
        if self.spec.mirror_average:
            e = e + self._run(np.ascontiguousarray(x[:, :, ::-1]))
        return e / max(float(np.linalg.norm(e)), 1e-12)

    def _run(self, x: np.ndarray) -> np.ndarray:
        """The network's unit embedding of one normalised crop batch of 1."""
        self._it.set_tensor(self._in, x)
        self._it.invoke()
        e = self._it.get_tensor(self._out)[0].astype(np.float32)
        return e / max(float(np.linalg.norm(e)), 1e-12)

    def embed_face(self, image: np.ndarray, face: Any) -> np.ndarray | None:
        """The embedding of ``face`` (a ``Face``) in an RGB frame; None when its pose is unusable."""
        crop = self.crop(image, face.landmarks)
        return None if crop is None else self.embed_crop(crop)

    def crop(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError


class Embedder(_CheckedModel):
    """The eye-region embedding of a face: checked model, fixed preprocessing, L2-normalised output."""

    CROP_HW = (eyecrop.CROP_H, eyecrop.CROP_W)
    WHAT = "eye embedder"

    def __init__(self, cfg: EmbedConfig, directory: Path | None = None) -> None:
        super().__init__(cfg.model, cfg.threads, directory)

    def crop(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
        return eyecrop.eye_crop(image, landmarks)


class FaceEmbedder(_CheckedModel):
    """The whole-face embedding (dlib's face network, CC0, exported by models/training/face_export.py) of an
    uncovered face: what the eye region alone cannot tell apart. Its scores are fused with the eye
    embedder's (``edge.fusion``) only when the lower face is visible (``edge.vision.mask``)."""

    SECTION = "face"
    CROP_HW = (facecrop.CHIP, facecrop.CHIP)
    WHAT = "face embedder"

    def __init__(self, cfg: EmbedConfig, directory: Path | None = None) -> None:
        super().__init__("", cfg.threads, directory)

    def crop(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
        return facecrop.face_crop(image, landmarks)


def find_face(lm: Any, image: np.ndarray, centre: bool = False) -> tuple[np.ndarray, Any]:
    """(image, its largest face) from a ``Landmarker``; a tight face crop is retried with a border
    (the detector needs context), and the bordered image is returned with the face found in it.
    ``centre``: the face nearest the image centre instead (photo collections with bystanders)."""
    image, faces = detect_padded(lm, image)
    if not faces:
        return image, None
    if centre:
        h, w = image.shape[:2]
        return image, min(faces, key=lambda f: np.hypot(f.center[0] - w / 2, f.center[1] - h / 2))
    return image, faces[0]
