"""In-block key recovery from many ciphertexts: a pixel shuffle and flip mask shared by every block.

When every block of every image goes through the same in-block map (value l of an encrypted block is
value σ(l) of the plain block, inverted when flip bit l is set), the L×L correlation matrix of in-block
positions pooled over all blocks of all images is the plain one, rows and columns permuted by σ and signs
changed by the flips. Natural-image positions in a block are all positively correlated, so

* the flips are the signs of the leading eigenvector (up to one global inversion), and
* σ is the permutation that best matches the unflipped matrix to one computed from public plain images:
  a quadratic assignment problem, solved by the Frank–Wolfe "FAQ" method from several starts and polished
  by the pairwise-swap search of :mod:`patchcrypt.attacks.qap`.

The answer is exact up to the symmetries of the plain correlation matrix (the block's dihedral group,
colour orders), which the later stages settle.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..qap import climb, objective

# Rows of pooled blocks used for a correlation matrix: more changes nothing but the time.
MAX_ROWS = 30_000


def block_rows(images: np.ndarray, block_size: int, max_rows: int = MAX_ROWS, seed: int = 0) -> np.ndarray:
    """Every block of every image as one row: (N, H, W, C) uint8 → (rows, M·M·C) float64, subsampled."""
    n, h, w, c = images.shape
    m = block_size
    per_image = (h // m) * (w // m)
    take = max(1, min(n, -(-max_rows // per_image)))
    if take < n:
        images = images[np.sort(np.random.default_rng(seed).choice(n, take, replace=False))]
    x = images.reshape(len(images), h // m, m, w // m, m, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, m * m * c).astype(np.float64)


def correlation(rows: np.ndarray) -> np.ndarray:
    """Pearson correlation of the columns of (rows, L) data: (L, L) float64 (constant columns → 0)."""
    x = rows - rows.mean(0)
    cov = x.T @ x
    d = np.sqrt(np.clip(np.diag(cov), 1e-12, None))
    return cov / d[:, None] / d[None, :]


def recover_flips(corr: np.ndarray) -> np.ndarray:
    """Flip bits (L,) bool from a ciphertext correlation matrix, up to one global inversion."""
    _, vec = np.linalg.eigh(corr)
    lead = vec[:, -1]
    lead = lead if lead.sum() >= 0 else -lead   # the sign convention: most positions unflipped
    return lead < 0


def recover_permutation(corr_enc: np.ndarray, corr_plain: np.ndarray, starts: int = 8,
                        seed: int = 0) -> Tuple[np.ndarray, float]:
    """σ (L,) with encrypted position i holding plain position σ[i], maximising Σ A[i,j]·B[σi,σj].

    FAQ from ``starts`` random doubly-stochastic starts, then pairwise-swap polishing of the best.
    Returns (σ, objective).
    """
    import warnings

    from scipy.optimize import quadratic_assignment

    a = corr_enc - corr_enc.mean()
    b = corr_plain - corr_plain.mean()
    rng = np.random.default_rng(seed)
    best: Optional[Tuple[np.ndarray, float]] = None
    agree = 0
    for start in range(starts):
        init = "barycenter" if start == 0 else "randomized"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = quadratic_assignment(a, b, method="faq",
                                       options=dict(maximize=True, rng=np.random.default_rng(rng.integers(2**31)),
                                                    P0=init))
        sigma = np.asarray(res.col_ind, dtype=np.int64)
        val = objective(a, b, sigma)
        if best is not None and abs(val - best[1]) <= 1e-4 * abs(best[1]):
            agree += 1          # the same optimum again (up to the symmetries): enough starts
            if agree >= 1 and start >= 2:
                break
        if best is None or val > best[1] + 1e-9:
            best = (sigma, val)
            agree = 0
    return climb(a, b, best[0], max_swaps=400, tol=1e-9)
