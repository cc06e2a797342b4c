"""The many-image attack on learnable encryption with one key for every block (le): one map of the 2L 4-bit
halves of a block. The upper halves carry the image's correlations and are recovered; the lower halves
mostly are not."""

from __future__ import annotations

from typing import Tuple

import numpy as np

from ...blocks import block_layout
from ...ciphers.program import Map
from ...ciphers.steps import colour_tables, dihedral_tables
from ..keymaps import to_units, unit_indices
from .inblock import block_rows, correlation, recover_flips, recover_permutation
from .result import ManyImageResult
from .statistics import FEATURES, summary


def attack_le(y: np.ndarray, public: np.ndarray, scheme: str, m: int, plain_shape, say) -> ManyImageResult:
    """One 4-bit map for every block (le): one map of 2L 4-bit halves per block. The upper halves carry the image's correlations.

    The halves are split into the L that correlate strongly with others (upper halves) and the rest;
    the upper halves' flips and permutation come from the in-block stage against the upper halves of
    public images. The lower halves are matched the same way against the public lower halves (their
    correlations are weak: expect them largely wrong), and to the leftover values.
    """
    h, w, c = plain_shape
    L = m * m * c
    lay = block_layout(h, w, c, m)

    def nibble_rows(img: np.ndarray) -> np.ndarray:
        return to_units(block_rows(img, m).astype(np.uint8), True).astype(np.float64)   # (r, 2L) halves

    ce = correlation(nibble_rows(y))
    strength = np.sort(np.abs(ce - np.eye(2 * L)), axis=1)[:, -3:].mean(1)
    upper = np.sort(np.argsort(-strength)[:L])
    lower = np.setdiff1d(np.arange(2 * L), upper)
    pub = nibble_rows(public)
    cp_u, cp_l = correlation(pub[:, 0::2]), correlation(pub[:, 1::2])
    flips = np.zeros(2 * L, dtype=bool)
    target = np.zeros(2 * L, dtype=np.int64)                 # cipher half → plain half (2·value + h)
    for sel, cp, half in ((upper, cp_u, 0), (lower, cp_l, 1)):
        sub = ce[np.ix_(sel, sel)]
        f = recover_flips(sub)
        s = np.where(f, -1.0, 1.0)
        sigma, _ = recover_permutation(sub * s[:, None] * s[None, :], cp, starts=6)
        flips[sel] = f
        target[sel] = 2 * sigma + half
    # stage 3 by public statistics is left to the upper halves' global inversion; the dihedral/colour
    # symmetry of the block is settled by the mean-statistics choice below on whole decryptions
    n_blocks = lay.shape[0]
    half_lay = unit_indices(lay, True)                       # (n, 2L) halves of every block
    G = np.arange(2 * h * w * c, dtype=np.int64)
    K = np.zeros(2 * h * w * c, dtype=np.uint8)
    newg, newk = G.copy(), K.copy()
    for k in range(n_blocks):
        newg[half_lay[k][target]] = G[half_lay[k]]
        newk[half_lay[k][target]] = np.where(flips, 15, 0)
    dec = Map(newg, newk)                                   # x̂_half = y_half[g] ^ k
    best = None
    syms = [(d, o) for d in range(8) for o in (range(6) if c == 3 else [0])]
    tabs_d, tabs_c = dihedral_tables(m, c), (colour_tables(m) if c == 3 else None)
    pub_sum = summary(public)
    ysub = y[:2000]
    for d, o in syms:
        for inv in (False, True):
            local = tabs_d[d] if tabs_c is None else tabs_d[d][tabs_c[o]]
            perm = np.empty(h * w * c, dtype=np.int64)
            perm[lay.reshape(-1)] = lay[:, local].reshape(-1)   # plain value ← value perm[...]
            hp = unit_indices(perm, True)
            g2, k2 = dec.g[hp], dec.m[hp] ^ (np.tile([15, 0], h * w * c).astype(np.uint8) if inv else 0)
            res = ManyImageResult(scheme, m, plain_shape, plain_shape, "nibble", *_nibble_forward(g2, k2), {})
            f = summary(res.decrypt(ysub))
            score = sum(float((((f[k] - pub_sum[k]) ** 2) / (pub_sum[k + "_var"] + 1e-6)).mean())
                        for k in FEATURES)
            if best is None or score < best[0]:
                best = (score, res)
    res = best[1]
    res.info["upper_halves_found"] = L
    return res


def _nibble_forward(g: np.ndarray, k: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    fwd = Map(g, k).inverse()
    return fwd.g, fwd.m


__all__ = ["attack_le"]
