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

import contextlib
from typing import Optional, Tuple

import numpy as np

from ..qap import climb, objective

# Rows of pooled blocks used for a correlation matrix: more changes nothing but the time.
MAX_ROWS = 30_000
FAQ_MAXITER = 30      # Frank–Wolfe steps per FAQ start at most (SciPy's default)
# faq_large stops when a step raises the objective by less than this share of it
GAIN_TOL = 1e-4
# pairwise swaps after faq_large at most (each one an (L, L) product)
LARGE_SWAPS = 100


def one_blas_thread():
    """BLAS on one thread while in-block maps are solved: their products are of (L, L) matrices with L in the
    hundreds, which threads only slow down (on 2 shared cores: 5–8× the wall time, 10× the CPU); the
    products are the same."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


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
    from scipy.linalg import eigh

    n = len(corr)   # the leading eigenvector alone: a quarter of the time of all of them at L = 768
    lead = eigh(corr, subset_by_index=[n - 1, n - 1])[1][:, 0]
    lead = lead if lead.sum() >= 0 else -lead   # the sign convention: most positions unflipped
    return lead < 0


def faq_symmetric(a: np.ndarray, b: np.ndarray, rng: Optional[np.random.Generator] = None,
                  maxiter: int = 30, tol: float = 0.03, start: Optional[np.ndarray] = None) -> np.ndarray:
    """σ (n,) maximising Σ a[i,j]·b[σi,σj] by Frank–Wolfe ("FAQ") for symmetric (n, n) ``a`` and ``b``.

    The steps of ``scipy.optimize.quadratic_assignment(method="faq", maximize=True)`` without seeds, from
    the barycenter (``rng`` None) or from its randomized start drawn from ``rng`` (the same draws), or from
    the permutation ``start`` (n,) int (a warm start: a permutation that is already the linearised optimum
    ends the search after one assignment), with one
    matrix product per iteration instead of six: for symmetric matrices the gradient is 2·(A·P)·B; A·P and
    P·B of the next P are mixtures of this one's and of permuted copies of A and B (the step moves P towards a
    permutation matrix Q), and the line search's A·R and B·Rᵀ (R = P − Q) are those products less the copies.
    """
    from scipy.optimize import linear_sum_assignment

    n = len(a)
    if start is not None:
        p = np.zeros((n, n))
        p[np.arange(n), start] = 1.0
    elif rng is None:
        p = np.full((n, n), 1.0 / n)
    else:
        p = (np.full((n, n), 1.0 / n) + _doubly_stochastic(rng.uniform(size=(n, n)))) / 2
    ap, pb = a @ p, p @ b
    for _ in range(maxiter):
        _, cols = linear_sum_assignment(ap @ b, maximize=True)   # the gradient, halved
        aq, qb = a[:, np.argsort(cols)], b[cols]      # A·Q and Q·B, Q = I[cols]: permuted copies
        ar, br = ap - aq, pb.T - qb.T                 # A·R and B·Rᵀ, R = P − Q
        lin = (ar * qb).sum() + (a * br[cols]).sum()
        quad = (ar.T * br).sum()
        if quad < 0 and 0 <= -lin / (2 * quad) <= 1:
            alpha = -lin / (2 * quad)
        else:
            alpha = 1.0 if lin + quad > 0 else 0.0
        q = np.zeros((n, n))
        q[np.arange(n), cols] = 1.0
        new = alpha * p + (1 - alpha) * q
        done = np.linalg.norm(p - new) / np.sqrt(n) < tol
        p = new
        if done:
            break
        ap, pb = alpha * ap + (1 - alpha) * aq, alpha * pb + (1 - alpha) * qb   # A·P and P·B of the new P
    return np.asarray(linear_sum_assignment(p, maximize=True)[1], dtype=np.int64)


def faq_large(a: np.ndarray, b: np.ndarray, maxiter: int = 30, start: Optional[np.ndarray] = None,
              gain_tol: float = GAIN_TOL) -> Tuple[np.ndarray, int]:
    """σ (n,) maximising Σ a[i,j]·b[σi,σj] for symmetric (n, n) ``a``, ``b``: the FAQ of :func:`faq_symmetric`
    (the barycenter or the permutation ``start``), cheaper for n in the hundreds. Returns (σ, assignments
    solved).

    * Products in float32 (the assignments only rank the gradient's entries).
    * From the barycenter the first gradient is rank one, (A·1)(1ᵀ·B)/n, and its best assignment pairs the
      rows by the order of A's row sums with B's columns by theirs: a sort instead of a linear assignment
      (on photos at n = 768 the most expensive one).
    * Once the iterate is a permutation (the line search mostly takes the whole step), it stops when a step
      raises the objective by less than ``gain_tol`` of its size, and returns that permutation without
      rounding.
    """
    from scipy.optimize import linear_sum_assignment

    n = len(a)
    a, b = a.astype(np.float32), b.astype(np.float32)
    solved = 0
    if start is None:
        p = np.full((n, n), 1.0 / n, dtype=np.float32)
    else:
        p = _permutation_matrix(start, n)
    perm = None if start is None else np.asarray(start, dtype=np.int64)
    value = None if perm is None else float((a * b[np.ix_(perm, perm)]).sum())
    ap, pb = a @ p, p @ b
    for it in range(maxiter):
        if it == 0 and start is None:        # rank-one gradient: rows by A's row sums, columns by B's
            cols = np.empty(n, dtype=np.int64)
            cols[np.argsort(a.sum(1), kind="stable")] = np.argsort(b.sum(0), kind="stable")
        else:
            cols = linear_sum_assignment(ap @ b, maximize=True)[1]
            solved += 1
        aq, qb = a[:, np.argsort(cols)], b[cols]
        ar, br = ap - aq, pb.T - qb.T
        lin = float((ar * qb).sum() + (a * br[cols]).sum())
        quad = float((ar.T * br).sum())
        if quad < 0 and 0 <= -lin / (2 * quad) <= 1:
            alpha = -lin / (2 * quad)
        else:
            alpha = 1.0 if lin + quad > 0 else 0.0
        if alpha == 0.0:                      # the whole step: the iterate is the permutation Q
            new_value = float((aq * qb).sum())
            if perm is not None and value is not None and new_value - value <= gain_tol * abs(value):
                if new_value > value:
                    perm = np.asarray(cols, dtype=np.int64)
                return perm, solved
            p = _permutation_matrix(cols, n)
            ap, pb, perm, value = aq, qb, np.asarray(cols, dtype=np.int64), new_value
            continue
        p = alpha * p + (1 - alpha) * _permutation_matrix(cols, n)
        perm = value = None
        ap, pb = alpha * ap + (1 - alpha) * aq, alpha * pb + (1 - alpha) * qb
    if perm is not None:
        return perm, solved
    return np.asarray(linear_sum_assignment(p, maximize=True)[1], dtype=np.int64), solved + 1


def _permutation_matrix(cols: np.ndarray, n: int) -> np.ndarray:
    q = np.zeros((n, n), dtype=np.float32)
    q[np.arange(n), cols] = 1.0
    return q


def _doubly_stochastic(p: np.ndarray, tol: float = 1e-3) -> np.ndarray:
    """Sinkhorn–Knopp scaling of a positive (n, n) matrix to row and column sums 1 within ``tol`` (as SciPy's
    FAQ scales its randomized start)."""
    c = 1 / p.sum(axis=0)
    r = 1 / (p @ c)
    out = p
    for _ in range(1000):
        if (np.abs(out.sum(axis=1) - 1) < tol).all() and (np.abs(out.sum(axis=0) - 1) < tol).all():
            break
        c = 1 / (r @ p)
        r = 1 / (p @ c)
        out = r[:, None] * p * c
    return out


def recover_permutation(corr_enc: np.ndarray, corr_plain: np.ndarray, starts: int = 8,
                        seed: int = 0, start: Optional[np.ndarray] = None,
                        maxiter: int = FAQ_MAXITER, large: bool = False,
                        max_swaps: int = LARGE_SWAPS) -> Tuple[np.ndarray, float]:
    """σ (L,) with encrypted position i holding plain position σ[i], maximising Σ A[i,j]·B[σi,σj].

    FAQ from the barycenter and ``starts`` − 1 random doubly-stochastic starts (at most ``maxiter`` steps
    each), or from the one permutation ``start`` when given (a warm start: an earlier answer to a nearby
    problem), then pairwise-swap polishing of the best. ``large``: one FAQ by :func:`faq_large` (from
    ``start`` or the barycenter; ``starts`` ignored) and at most ``max_swaps`` swaps. Returns (σ, objective).
    """
    a, b = corr_enc - corr_enc.mean(), corr_plain - corr_plain.mean()
    with one_blas_thread():
        if large:
            return climb(a, b, faq_large(a, b, maxiter=maxiter, start=start)[0], max_swaps=max_swaps, tol=1e-9)
        if start is not None:
            return climb(a, b, faq_symmetric(a, b, maxiter=maxiter, start=start), max_swaps=400, tol=1e-9)
        return _best_of_starts(a, b, starts, seed, maxiter)


def _best_of_starts(a: np.ndarray, b: np.ndarray, starts: int, seed: int,
                    maxiter: int = FAQ_MAXITER) -> Tuple[np.ndarray, float]:
    rng = np.random.default_rng(seed)
    best: Optional[Tuple[np.ndarray, float]] = None
    agree = 0
    for start in range(starts):
        start_rng = np.random.default_rng(rng.integers(2**31))
        kw = {} if maxiter == FAQ_MAXITER else {"maxiter": maxiter}
        sigma = faq_symmetric(a, b, None if start == 0 else start_rng, **kw)
        val = objective(a, b, sigma)
        if best is not None and abs(val - best[1]) <= 1e-4 * abs(best[1]):
            agree += 1          # the same optimum again (up to the symmetries): enough starts
            if agree >= 1 and start >= 2:
                break
        if best is None or val > best[1] + 1e-9:
            best = (sigma, val)
            agree = 0
    return climb(a, b, best[0], max_swaps=400, tol=1e-9)
