"""Image quality metrics: PSNR and SSIM (scikit-image) on uint8 images, per image and batch means."""

from __future__ import annotations

import math
from typing import Dict

import numpy as np
from .errors import PatchcryptError


def _pair(a: np.ndarray, b: np.ndarray):
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise PatchcryptError(f"images differ in shape: {a.shape} vs {b.shape}")
    return a, b


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR in dB of two same-shape images (any layout); ``inf`` when identical."""
    a, b = _pair(a, b)
    if np.array_equal(a, b):
        return math.inf
    from skimage.metrics import peak_signal_noise_ratio  # imported on use: scipy is slow to import

    return float(peak_signal_noise_ratio(a.astype(np.float64), b.astype(np.float64), data_range=data_range))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Mean SSIM (Wang et al. 2004, 7×7 uniform window as scikit-image's default) of two (H, W, C) images.

    Colour images are compared channel by channel and averaged. Images smaller than 7 pixels use the
    largest odd window that fits.
    """
    a, b = _pair(a, b)
    if a.ndim == 2:
        a, b = a[:, :, None], b[:, :, None]
    if a.ndim != 3:
        raise PatchcryptError(f"ssim expects (H, W, C) images, got shape {a.shape}")
    win = min(7, a.shape[0], a.shape[1])
    win -= 1 - win % 2
    if win < 3:
        raise PatchcryptError(f"images of {a.shape[0]}x{a.shape[1]} are too small for SSIM")
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a.astype(np.float64), b.astype(np.float64), data_range=data_range,
                                       channel_axis=2, win_size=win))


def batch_quality(reference: np.ndarray, images: np.ndarray) -> Dict[str, float]:
    """Mean and std of SSIM and PSNR over a batch (N, H, W, C); PSNR of identical pairs is capped at 100 dB."""
    reference, images = _pair(reference, images)
    if reference.ndim != 4 or len(reference) == 0:
        raise PatchcryptError(f"expected a non-empty batch (N, H, W, C), got shape {reference.shape}")
    s = np.array([ssim(r, x) for r, x in zip(reference, images)])
    p = np.array([min(psnr(r, x), 100.0) for r, x in zip(reference, images)])
    return {"ssim_mean": float(s.mean()), "ssim_std": float(s.std()),
            "psnr_mean": float(p.mean()), "psnr_std": float(p.std()), "n_images": int(len(s))}
