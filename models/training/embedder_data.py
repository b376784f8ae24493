"""Training data for the eye embedder: splits, synthetic masks, gate-camera augmentation, crops.

Pure numpy + OpenCV so both the training venv and the runtime venv can import it. Everything is
deterministic given a seed: ``masked_image(img, lm, seed)`` always draws the same mask.

Masks are the MaskTheFace photographs (MIT) warped with a homography from their six anchor points
(masks.cfg) onto face-mesh points: the cheek contour at nose height, the nose bridge, the jaw and
the chin. The top anchor is drawn anywhere from the lower nose bridge to between the eyes, so some
masks ride up into the bottom rows of the eye crop, as badly worn masks do at a real gate.
"""

from __future__ import annotations

import configparser
import zlib
from pathlib import Path

import cv2
import numpy as np


from edge.vision import eyecrop

MASK_TYPES = ("surgical", "surgical_blue", "surgical_green", "N95", "KN95", "cloth", "gas")
# Mesh points for MaskTheFace's anchors a..f (image-left cheek, nose bridge, image-right cheek,
# image-left jaw, chin, image-right jaw). Bridge: 195 low, 197 usual, 6 high, 168 very high.
CHEEK_L, CHEEK_R, JAW_L, JAW_R, CHIN = (93, 234), (323, 454), 172, 397, 152
BRIDGE = (195, 197, 6, 168)
TINTS = np.array([[255, 255, 255], [235, 240, 250], [60, 60, 70], [20, 20, 25], [120, 160, 220],
                  [230, 170, 190], [150, 150, 150], [90, 120, 80], [200, 180, 140], [160, 40, 50]],
                 np.float32)


def seed_of(*parts: object) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


class MaskBank:
    """The mask photographs with their anchor points, loaded once."""

    def __init__(self, data: Path) -> None:
        cfg = configparser.ConfigParser()
        cfg.read(data / "masks" / "masks" / "masks.cfg")
        self.masks = {}
        for name in MASK_TYPES:
            sec = cfg[name]
            img = cv2.imread(str(data / "masks" / "masks" / "templates" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
            pts = np.array([[float(v) for v in sec[f"mask_{k}"].split(",")] for k in "abcdef"], np.float32)
            self.masks[name] = (img, pts)

    def paint(self, image: np.ndarray, lm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``image`` (RGB uint8) with a randomly chosen, coloured and placed mask drawn on."""
        name = MASK_TYPES[rng.integers(len(MASK_TYPES))]
        tmpl, src = self.masks[name]
        p = lm[:, :2].astype(np.float32)
        up = rng.uniform(0.0, 1.0) ** 1.5 * 2.6      # 0 (low) .. 2.6 (between the eyes); mostly usual
        i = int(np.floor(min(up, 2.99)))
        bridge = p[BRIDGE[i]] * (1 - (up - i)) + p[BRIDGE[i + 1]] * (up - i)
        t = rng.uniform(0.0, 0.6)
        cheek_l = p[CHEEK_L[0]] * (1 - t) + p[CHEEK_L[1]] * t
        cheek_r = p[CHEEK_R[0]] * (1 - t) + p[CHEEK_R[1]] * t
        chin = p[CHIN] + (p[CHIN] - bridge) * rng.uniform(0.0, 0.12)
        dst = np.stack([cheek_l, bridge, cheek_r, p[JAW_L], chin, p[JAW_R]]).astype(np.float32)
        dst += rng.normal(0, 0.01, dst.shape).astype(np.float32) * np.linalg.norm(p[CHIN] - bridge)
        hom, _ = cv2.findHomography(src, dst, 0)
        if hom is None:
            return image
        h, w = image.shape[:2]
        warped = cv2.warpPerspective(tmpl, hom, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))
        rgb = warped[:, :, :3].astype(np.float32)
        alpha = warped[:, :, 3:].astype(np.float32) / 255.0
        if name.startswith("surgical") or name == "cloth" or rng.random() < 0.3:
            if rng.random() < 0.7:  # recolour: keep the photo's shading, change its colour
                lum = rgb.mean(axis=2, keepdims=True) / max(rgb[alpha[:, :, 0] > 0.5].mean(), 1.0)
                rgb = np.clip(lum * TINTS[rng.integers(len(TINTS))], 0, 255)
        out = image.astype(np.float32) * (1 - alpha) + rgb * alpha
        return out.astype(np.uint8)


def jittered_pupils(lm: np.ndarray, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
    """The two pupils, moved a little (landmark noise, small scale/roll changes) when ``rng`` is given."""
    r = lm[468, :2].astype(np.float64)
    l = lm[473, :2].astype(np.float64)
    if rng is None:
        return r, l
    ipd = np.linalg.norm(l - r)
    c = (r + l) / 2 + rng.normal(0, 0.03 * ipd, 2)
    s = rng.uniform(0.93, 1.07)
    a = np.radians(rng.normal(0, 3.0))
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    r2 = c + rot @ ((r - (r + l) / 2) * s)
    l2 = c + rot @ ((l - (r + l) / 2) * s)
    return r2 + rng.normal(0, 0.015 * ipd, 2), l2 + rng.normal(0, 0.015 * ipd, 2)


def camera(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gate-camera effects on an RGB uint8 crop: exposure, colour cast, low resolution, blur, noise,
    JPEG, greyscale or near-infrared look, side light."""
    x = crop.astype(np.float32)
    h, w = x.shape[:2]
    if rng.random() < 0.2:   # near-infrared-like: skin bright and flat, from the red channel
        g = 0.7 * x[:, :, 0] + 0.3 * x[:, :, 1]
        x = np.repeat(np.clip(g * rng.uniform(1.0, 1.3) + rng.uniform(0, 30), 0, 255)[:, :, None], 3, 2)
    elif rng.random() < 0.2:
        x = np.repeat((x @ np.array([0.299, 0.587, 0.114], np.float32))[:, :, None], 3, 2)
    else:
        x *= rng.uniform(0.85, 1.15, 3).astype(np.float32)          # white balance
    if rng.random() < 0.3:   # side light: a horizontal gain ramp
        ramp = np.linspace(1 - (g := rng.uniform(0, 0.5)), 1 + g, w, dtype=np.float32)
        x *= ramp[None, ::-1 if rng.random() < 0.5 else 1, None]
    gamma = rng.uniform(0.6, 1.6)
    x = 255.0 * (np.clip(x, 0, 255) / 255.0) ** gamma * rng.uniform(0.6, 1.3) + rng.uniform(-20, 20)
    x = np.clip(x, 0, 255).astype(np.uint8)
    if rng.random() < 0.35:  # a far face: fewer pixels
        f = rng.uniform(0.3, 0.7)
        x = cv2.resize(cv2.resize(x, (max(8, int(w * f)), max(4, int(h * f))), interpolation=cv2.INTER_AREA),
                       (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.3:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.4, 1.4))
    if rng.random() < 0.4:
        x = np.clip(x.astype(np.float32) + rng.normal(0, rng.uniform(2, 10), x.shape), 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        ok, buf = cv2.imencode(".jpg", x, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 90))])
        x = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        x = x if x.ndim == 3 else np.repeat(x[:, :, None], 3, 2)
    return x


def read_rgb(path: Path) -> np.ndarray:
    im = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if im is None:
        raise FileNotFoundError(path)
    return np.ascontiguousarray(im[:, :, ::-1])


def crop_variants(path: Path, lm: np.ndarray, bank: MaskBank, seed: int, n_aug: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clean unmasked crop, clean masked crop, n_aug augmented crops with their masked flags).

    The clean pair is for evaluation; the augmented ones (half masked) for training.
    """
    img = read_rgb(path)
    rng = np.random.default_rng(seed)
    masked = bank.paint(img, lm, rng)
    clean = eyecrop.warp(img, *jittered_pupils(lm, None))
    clean_m = eyecrop.warp(masked, *jittered_pupils(lm, None))
    augs, flags = [], []
    for k in range(n_aug):
        m = k % 2 == 1
        src = bank.paint(img, lm, rng) if m else img
        augs.append(camera(eyecrop.warp(src, *jittered_pupils(lm, rng)), rng))
        flags.append(m)
    return clean, clean_m, np.stack(augs) if augs else np.zeros((0,) + clean.shape, np.uint8), np.array(flags)


def masked_image(data: Path, path: Path, lm: np.ndarray, seed: int, bank: MaskBank | None = None) -> np.ndarray:
    """The full image with the evaluation mask (same draw as ``crop_variants``' clean masked crop)."""
    bank = bank or MaskBank(data)
    return bank.paint(read_rgb(path), lm, np.random.default_rng(seed))


def lfw_folds(data: Path) -> list[list[tuple[str, int, str, int]]]:
    """LFW View 2: ten folds of (name1, n1, name2, n2) pairs, first half of each fold genuine."""
    lines = (data / "lfw" / "pairs.txt").read_text().split("\n")
    nf, n = map(int, lines[0].split())
    rows = [ln.split("\t") for ln in lines[1:] if ln.strip()]
    folds = []
    for f in range(nf):
        fold = []
        for r in rows[f * 2 * n:(f + 1) * 2 * n]:
            fold.append((r[0], int(r[1]), r[0], int(r[2])) if len(r) == 3 else (r[0], int(r[1]), r[2], int(r[3])))
        folds.append(fold)
    return folds


def lfw_rel(name: str, n: int) -> str:
    return f"lfw/images_deepfunneled/{name}/{name}_{n:04d}.jpg"


def identity_of(rel: str) -> str:
    """Person label from a relative path: LFW name, att/sN, gt/sNN."""
    parts = rel.split("/")
    return {"lfw": parts[-2], "att_faces": "att_" + parts[1], "gt_faces": "gt_" + parts[1]}[parts[0]]
