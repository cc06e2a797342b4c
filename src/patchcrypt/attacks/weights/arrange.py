"""Attack (b) from the keyed weights alone: items (position-embedding rows, patch-embedding columns) arranged on
cells (the block grid, the M×M×C block) so that similar items sit close, a quadratic assignment solved by
spectral and eigenvector-matched starts, the pairwise-swap search of :mod:`..qap` and kicks."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ...errors import PatchcryptError
from ..qap import climb
from .pieces import unit_columns


def _spectral_starts(sim: np.ndarray, coords: np.ndarray, kernel: np.ndarray, keep: int = 4) -> list:
    """Starting orders from a spectral embedding of ``sim``, matched to the cells by assignment.

    The embedding is unique only up to a rotation/reflection of its first two axes (exactly so on a square
    grid, whose two lowest modes have one eigenvalue), so the axes are scanned over angles and both
    handednesses; the ``keep`` best by the objective are returned as ``order[cell] = item``.
    """
    from scipy.optimize import linear_sum_assignment

    k = coords.shape[1]
    a = np.maximum(sim, 0)
    np.fill_diagonal(a, 0)
    deg = np.maximum(a.sum(1), 1e-12)
    lap = np.eye(len(a)) - a / np.sqrt(deg[:, None] * deg[None])   # normalised Laplacian
    _, vec = np.linalg.eigh(lap)
    emb = vec[:, 1:1 + k] / np.sqrt(deg)[:, None]
    emb = (emb - emb.mean(0)) / np.maximum(emb.std(0), 1e-12)
    cc = (coords - coords.mean(0)) / np.maximum(coords.std(0), 1e-12)
    found = []
    for flip in (1.0, -1.0):
        for theta in np.linspace(0, np.pi, 12, endpoint=False):
            e = emb.copy()
            if k >= 2:
                c_, s_ = np.cos(theta), np.sin(theta)
                e[:, :2] = emb[:, :2] @ np.array([[c_, -s_], [s_, c_]])
                e[:, 1] *= flip
            cost = ((cc[:, None, :] - e[None, :, :]) ** 2).sum(-1)   # cell × item
            _, order = linear_sum_assignment(cost)
            found.append(((sim[np.ix_(order, order)] * kernel).sum(), order))
            if k < 2:
                break
    found.sort(key=lambda t: -t[0])
    return [o for _, o in found[:keep]]


def _matched_starts(sim: np.ndarray, kernel: np.ndarray, k: int = 4) -> list:
    """Starting orders from matching eigenvectors of ``sim`` to those of the template ``kernel``.

    Umeyama's match of absolute eigenvector entries over all modes, plus the leading ``k`` modes with every
    choice of their signs matched by assignment. Returns orders ``order[cell] = item``.
    """
    from scipy.optimize import linear_sum_assignment

    _, u = np.linalg.eigh(sim)
    _, v = np.linalg.eigh(kernel)
    u, v = u[:, ::-1], v[:, ::-1]                              # leading modes first
    out = [linear_sum_assignment(-(np.abs(v) @ np.abs(u).T))[1]]
    for signs in np.array(np.meshgrid(*[[1.0, -1.0]] * k)).reshape(k, -1).T:
        cost = ((v[:, None, :k] - (u[:, :k] * signs)[None]) ** 2).sum(-1)   # cell × item
        out.append(linear_sum_assignment(cost)[1])
    return out


def _climb(sim: np.ndarray, kernel: np.ndarray, order: np.ndarray, scale: float) -> Tuple[np.ndarray, float]:
    """Pairwise swaps for max Σ sim[order[a], order[b]] · kernel[a, b] (the QAP of :mod:`..qap`, kernel as A)."""
    return climb(kernel, sim, order, max_swaps=5000, tol=1e-12, scale=scale)


def arrange(sim: np.ndarray, coords: np.ndarray, width: float = 1.0, restarts: int = 8,
            seed: int = 0, kernel: Optional[np.ndarray] = None, kicks: int = 1000) -> np.ndarray:
    """Put n items on n cells (coordinates ``coords`` (n, k)) so that similar items sit close together.

    Maximises Σ sim[item(a), item(b)] · exp(−|a − b|² / 2 width²) over cells a ≠ b: a spectral start and
    ``restarts`` random ones, each improved by pairwise swaps; the best is then kicked (three random swaps)
    and re-improved ``kicks`` times, keeping improvements. Returns ``cell_of[item]``.
    """
    n = len(sim)
    if kernel is None:
        d2 = ((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1)
        kernel = np.exp(-d2 / (2 * width ** 2))
    np.fill_diagonal(kernel, 0)
    sim = (sim + sim.T) / 2
    rng = np.random.default_rng(seed)
    best = None
    starts = (_spectral_starts(sim, coords, kernel) + _matched_starts(sim, kernel)
              + [rng.permutation(n) for _ in range(restarts)])
    scale = float(np.abs(sim).max())   # the swaps stop at gains below 1e-12 of the largest similarity
    for start in starts:
        order, value = _climb(sim, kernel, start, scale)
        if best is None or value > best[1]:
            best = (order, value)
    # iterated local search: kick the best order with a few random swaps, re-climb, keep improvements
    for _ in range(kicks):
        order = best[0].copy()
        for _ in range(3):
            a, b = rng.choice(n, 2, replace=False)
            order[[a, b]] = order[[b, a]]
        order, value = _climb(sim, kernel, order, scale)
        if value > best[1] + 1e-12:
            best = (order, value)
    cell_of = np.empty(n, np.int64)
    cell_of[best[0]] = np.arange(n)
    return cell_of


def _row_similarity(pos: np.ndarray) -> np.ndarray:
    u = pos - pos.mean(0)
    u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-30)
    return u @ u.T


def grid_from_pos_embed(pos: np.ndarray, gh: int, gw: int, width: float = 1.0, restarts: int = 8,
                        seed: int = 0, reference: Optional[np.ndarray] = None) -> np.ndarray:
    """Attack (b): σ estimate from the keyed position embedding alone (up to the grid's symmetries).

    pos: (n, D) patch rows of the keyed model's position embedding (encrypted block order). Without
    ``reference`` the template is a Gaussian of grid distance (``width``); with ``reference`` (n, D), the
    position embedding of any model of the same architecture trained on public images (not the victim's
    plain model), its row similarities in grid order are the template. Returns (n,) the plain grid cell of
    every encrypted block.
    """
    yy, xx = np.divmod(np.arange(gh * gw), gw)
    kernel = _row_similarity(reference) if reference is not None else None
    return arrange(_row_similarity(pos), np.stack([yy, xx], 1).astype(float), width, restarts, seed, kernel)


def _column_correlation(w: np.ndarray) -> np.ndarray:
    u = unit_columns(w - w.mean(1, keepdims=True))
    return u.T @ u


def inblock_from_embedding(w: np.ndarray, block_size: int, channels: int, width: float = 1.0,
                           colour_weight: float = 0.8, restarts: int = 20, seed: int = 0,
                           reference: Optional[np.ndarray] = None, kicks: int = 3000
                           ) -> Tuple[np.ndarray, np.ndarray]:
    """Attack (b), shared models: the in-block shuffle and flips from a trained embedding W′ (D, L) alone.

    Columns of a trained patch embedding are similar (in absolute correlation) for neighbouring pixels and
    for the colours of one pixel; they are arranged on the M×M×C block accordingly. Flips follow from the
    signs of the correlations compared with the template's (relative to column 0). With ``reference``
    (D', L), the folded embedding of a model of the same architecture trained on public images, its
    absolute column correlations are the template instead of the generic kernel. Returns g (L,) with
    W′[:, i] ≈ ±W₀[:, g[i]] up to the block's symmetries, and signs (L,) up to one global negation.
    """
    m, c = block_size, channels
    L = m * m * c
    if w.shape[1] != L:
        raise PatchcryptError(f"embedding has {w.shape[1]} columns; a {m}x{m}x{c} block has {L}")
    corr = _column_correlation(w)
    r, col, ch = np.unravel_index(np.arange(L), (m, m, c))
    d2 = (r[:, None] - r[None]) ** 2 + (col[:, None] - col[None]) ** 2
    kernel = np.exp(-d2 / (2 * width ** 2)) * np.where(ch[:, None] == ch[None], 1.0, colour_weight)
    if reference is not None:
        kernel = np.abs(_column_correlation(reference))
    # the spectral start places columns by their pixel only; the swaps then sort out the colours
    cell_of = arrange(np.abs(corr), np.stack([r, col], 1).astype(float), restarts=restarts, seed=seed,
                      kernel=kernel, kicks=kicks)
    # signs: s_i s_j corr[i, j] should agree in sign with the template's correlation of the cells they sit
    # on (the reference's signed correlations; else the positive smoothness kernel), so s is the sign
    # pattern of the leading eigenvector of corr ∘ template (up to one global negation)
    template = _column_correlation(reference) if reference is not None else kernel
    lead = np.linalg.eigh(corr * template[np.ix_(cell_of, cell_of)])[1][:, -1]
    s = np.where(lead < 0, -1.0, 1.0)
    s = s * s[0]
    return cell_of, s


__all__ = ["arrange", "grid_from_pos_embed", "inblock_from_embedding"]
