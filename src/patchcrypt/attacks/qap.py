"""One local search for quadratic assignment problems: maximise Σ A[i, j] · B[σ(i), σ(j)] over permutations σ.

Two attacks meet this problem: the many-image in-block stage (A, B: correlations of in-block positions in the
ciphertexts and in public images; :mod:`.many.inblock`) and the weights attack (A: closeness of grid cells or
block positions, B: similarity of embedding rows or columns; :mod:`.weights.arrange`). Both start from
their own guesses and improve them here by best-improvement pairwise swaps; the gain of every swap is one
matrix product.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


def objective(a: np.ndarray, b: np.ndarray, sigma: np.ndarray) -> float:
    """Σ_ij a[i, j] · b[σ(i), σ(j)] for (n, n) float arrays and a permutation ``sigma`` (n,) int."""
    return float((a * b[np.ix_(sigma, sigma)]).sum())


def swap_gains(a: np.ndarray, b: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """(n, n) objective change of swapping σ(i) and σ(j), for every pair at once (A, B symmetric).

    Δ(i,j) = 2 Σ_{k∉{i,j}} (a[i,k]−a[j,k]) (bs[j,k]−bs[i,k]) + (a[i,i]−a[j,j]) (bs[j,j]−bs[i,i]),
    bs = B[σ][:, σ]; the sum over all k is one matrix product, the two excluded terms are subtracted.
    """
    bs = b[np.ix_(sigma, sigma)]
    p = a @ bs
    d = np.diag(p)
    full = p + p.T - d[:, None] - d[None, :]
    ad, bd = np.diag(a), np.diag(bs)
    t_i = (ad[:, None] - a) * (bs - bd[:, None])
    t_j = (a - ad[None, :]) * (bd[None, :] - bs)
    gain = 2 * (full - t_i - t_j) + (ad[:, None] - ad[None, :]) * (bd[None, :] - bd[:, None])
    np.fill_diagonal(gain, 0.0)
    return gain


def climb(a: np.ndarray, b: np.ndarray, sigma: np.ndarray, max_swaps: int = 400, tol: float = 1e-9,
          scale: Optional[float] = None) -> Tuple[np.ndarray, float]:
    """Best-improvement pairwise swaps of σ while the best gain exceeds ``tol`` · max(1, scale).

    Args:
        a, b: (n, n) symmetric float arrays; sigma: (n,) int start (not changed).
        max_swaps: at most this many swaps.
        tol, scale: the stopping threshold; ``scale`` None uses |objective| of the current σ.
    Returns:
        (σ, objective of σ).
    """
    sigma = np.array(sigma, copy=True)
    for _ in range(max_swaps):
        gain = swap_gains(a, b, sigma)
        i, j = np.unravel_index(int(np.argmax(gain)), gain.shape)
        size = abs(objective(a, b, sigma)) if scale is None else scale
        if gain[i, j] <= tol * max(1.0, size):
            break
        sigma[i], sigma[j] = sigma[j], sigma[i]
    return sigma, objective(a, b, sigma)


__all__ = ["objective", "swap_gains", "climb"]
