"""Measures of the attack suite: the scores of a jigsaw reassembly and SSIM over a batch.

Jigsaw (Chuman, Kurihara, Kiya): direct, neighbour and largest-component comparison.

A reassembly is given as ``placed[k]`` = the index of the original block now at position k (row-major on
a gh × gw grid). Dc: share of positions holding their own block. Nc: share of the original horizontal and
vertical neighbour pairs that are neighbours in the same relation in the result. Lc: share of blocks in the
largest 4-connected group whose members are placed consistently with one another (a correct sub-image,
possibly shifted).
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from ..errors import PatchcryptError


def jigsaw_scores(placed: np.ndarray, gh: int, gw: int) -> Dict[str, float]:
    placed = np.asarray(placed).reshape(gh, gw)
    n = gh * gw
    dc = float((placed.reshape(-1) == np.arange(n)).mean())
    right_ok = placed[:, 1:] == placed[:, :-1] + 1
    right_ok &= (placed[:, :-1] % gw) != gw - 1          # original right neighbour exists on the same row
    down_ok = placed[1:, :] == placed[:-1, :] + gw
    total_pairs = gh * (gw - 1) + (gh - 1) * gw
    nc = float((right_ok.sum() + down_ok.sum()) / total_pairs) if total_pairs else 1.0
    # largest component joined by correct neighbour relations (union-find over the grid)
    parent = np.arange(n)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for r, c in zip(*np.nonzero(right_ok)):
        parent[find(r * gw + c)] = find(r * gw + c + 1)
    for r, c in zip(*np.nonzero(down_ok)):
        parent[find(r * gw + c)] = find((r + 1) * gw + c)
    roots = np.array([find(i) for i in range(n)])
    lc = float(np.bincount(roots).max() / n)
    return {"dc": dc, "nc": nc, "lc": lc}


def ssim_batch(a: np.ndarray, b: np.ndarray, data_range: float = 255.0, chunk: int = 16) -> np.ndarray:
    """Per-image SSIM of two (N, H, W, C) batches, equal (to float rounding) to :func:`patchcrypt.metrics.ssim`
    image by image — scikit-image's 7×7 uniform window, sample covariance, channels averaged — but vectorised
    over the batch (the filter runs over H and W only). Returns (N,) float64."""
    from scipy.ndimage import uniform_filter

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 4:
        raise PatchcryptError(f"ssim_batch expects two (N, H, W, C) batches of one shape: {a.shape} vs {b.shape}")
    win = min(7, a.shape[1], a.shape[2])
    win -= 1 - win % 2
    if win < 3:
        raise PatchcryptError(f"images of {a.shape[1]}x{a.shape[2]} are too small for SSIM")
    size, pad, cov_norm = (1, win, win, 1), (win - 1) // 2, win * win / (win * win - 1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    out = np.empty(len(a), dtype=np.float64)
    for i in range(0, len(a), chunk):
        x, y = a[i:i + chunk].astype(np.float64), b[i:i + chunk].astype(np.float64)
        ux, uy = uniform_filter(x, size), uniform_filter(y, size)
        vx = cov_norm * (uniform_filter(x * x, size) - ux * ux)
        vy = cov_norm * (uniform_filter(y * y, size) - uy * uy)
        vxy = cov_norm * (uniform_filter(x * y, size) - ux * uy)
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
        out[i:i + chunk] = s[:, pad:s.shape[1] - pad, pad:s.shape[2] - pad].mean(axis=(1, 2, 3), dtype=np.float64)
    return out
