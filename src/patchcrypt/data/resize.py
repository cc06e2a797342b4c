"""Bringing photos of any size to the model's square input, as timm's train script does.

- :func:`centre_crop_resize` (evaluation, and the in-RAM copy of a tree): shorter side resized to
  ``size / crop_pct``, then the centre ``size``×``size`` cut out.
- :func:`random_resized_crop` (training): a random area (``scale`` of the image) and aspect ratio
  (``ratio``), resized to ``size``×``size``, then a horizontal flip with probability 1/2.

Both return exactly ``size``×``size``: the caller picks ``size`` as a multiple of the block size, so every
resized image splits into whole blocks and encryption follows unchanged. An image already ``size``×``size``
passes through :func:`centre_crop_resize` untouched (the same array), so a tree at the model's size is read
exactly as before. Randomness comes only from the ``numpy.random.Generator`` passed in (replayable).
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np
from PIL import Image

CROP_PCT = 0.875          # timm's default evaluation crop: resize to size/0.875, keep the centre
RRC_SCALE = (0.08, 1.0)   # torchvision/timm RandomResizedCrop defaults
RRC_RATIO = (3 / 4, 4 / 3)


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """uint8 (H, W, C) → (h, w, C), bicubic (Pillow; antialiased when shrinking)."""
    im = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
    out = np.asarray(im.resize((w, h), Image.BICUBIC))
    return out[:, :, None] if out.ndim == 2 else out


def centre_crop_resize(img: np.ndarray, size: int, crop_pct: float = CROP_PCT) -> np.ndarray:
    """Evaluation transform: uint8 (H, W, C) → uint8 (size, size, C); ``img`` itself when already that size.

    >>> centre_crop_resize(np.zeros((48, 80, 3), np.uint8), 32).shape
    (32, 32, 3)
    """
    h, w = img.shape[:2]
    if (h, w) == (size, size):
        return img
    short = max(size, int(math.floor(size / crop_pct)))
    nh, nw = (short, max(short, round(w * short / h))) if h <= w else (max(short, round(h * short / w)), short)
    out = _resize(img, nh, nw)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(out[top:top + size, left:left + size])


RESIZE_RULE = "resize the short side to size/0.875, centre crop"  # timm's evaluation rule, in words


def fit_image(img: np.ndarray, size: Tuple[int, int], crop_pct: float = CROP_PCT) -> np.ndarray:
    """The one rule that brings a photo to (h, w) = ``size`` everywhere (encrypt --resize, train, evaluate,
    classify, attack): scaled, keeping its aspect ratio, until it covers (h, w) / ``crop_pct``, then the centre
    (h, w) cut out. Square sizes are :func:`centre_crop_resize` exactly; ``img`` itself when already ``size``.

    >>> fit_image(np.zeros((375, 500, 3), np.uint8), (224, 224)).shape
    (224, 224, 3)
    >>> fit_image(np.zeros((375, 500, 3), np.uint8), (32, 64)).shape
    (32, 64, 3)
    """
    h, w = int(size[0]), int(size[1])
    if h == w:
        return centre_crop_resize(img, h, crop_pct)
    ih, iw = img.shape[:2]
    if (ih, iw) == (h, w):
        return img
    th, tw = max(h, int(math.floor(h / crop_pct))), max(w, int(math.floor(w / crop_pct)))
    scale = max(th / ih, tw / iw)
    nh, nw = max(th, round(ih * scale)), max(tw, round(iw * scale))
    out = _resize(img, nh, nw)
    top, left = (nh - h) // 2, (nw - w) // 2
    return np.ascontiguousarray(out[top:top + h, left:left + w])


def resize_fields(size) -> dict:
    """What a manifest records of ``--resize`` (``{}`` without one): the size and the rule it was made by."""
    if size is None:
        return {}
    return {"preprocessing": {"resize": [int(size[0]), int(size[1])], "rule": RESIZE_RULE, "crop_pct": CROP_PCT}}


def crop_box(h: int, w: int, rng: np.random.Generator, scale: Tuple[float, float] = RRC_SCALE,
             ratio: Tuple[float, float] = RRC_RATIO) -> Tuple[int, int, int, int]:
    """(top, left, height, width) of a random-resized crop of an (h, w) image (torchvision's algorithm:
    ten tries at a random area and log-uniform aspect ratio, else the centre crop at the nearest ratio)."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def random_resized_crop(img: np.ndarray, size: int, rng: np.random.Generator, flip: bool = True) -> np.ndarray:
    """Training transform: uint8 (H, W, C) → uint8 (size, size, C): random area and aspect, resized, and a
    horizontal flip with probability 1/2 (when ``flip``)."""
    top, left, ch, cw = crop_box(img.shape[0], img.shape[1], rng)
    out = _resize(np.ascontiguousarray(img[top:top + ch, left:left + cw]), size, size)
    if flip and rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample's augmentation in one epoch: the same whichever process or worker draws
    it, so a run replays exactly (resume, any number of DataLoader workers)."""
    return np.random.default_rng([int(v) & 0xFFFFFFFFFFFFFFFF for v in (seed, epoch, index, 0x5EED)])


__all__ = ["fit_image", "resize_fields", "RESIZE_RULE", "centre_crop_resize", "random_resized_crop", "crop_box", "sample_rng", "CROP_PCT"]
