"""The many-image attack on learnable encryption with a key per block (ele: block scrambling, then one map of
the 2L 4-bit halves for every block position).

Under one key, ciphertext block position q always holds the plain block from position π⁻¹(q) under the same
map T_q. The N images give N samples of position q's 2L halves; their correlations are the plain upper
halves' correlations permuted and sign-changed by T_q, so T_q's upper halves are recovered as le's are
(:mod:`.nibble`), but from N samples instead of N × blocks:

1. **Per-position stage**: for every q, split the halves into the L strongly correlated (upper) and the rest,
   the flips from the leading eigenvector, the permutation by QAP against public images' upper halves (the
   lower halves matched the same way against public lower halves; weak, expect them largely wrong).
   Each block is then known up to the symmetries of a block's correlations: a rotation/flip, a colour order
   and an inversion of its own.
2. **Jigsaw stage**: block order and those per-block states, over the partially decrypted images
   (:mod:`.jigsaw`, costs summed over the images).
3. **Global stage**: one whole-image rotation/flip, colour order and inversion (:mod:`.statistics`).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Tuple

import numpy as np

from ...blocks import block_layout
from ...ciphers.program import Map
from ...errors import PatchcryptError
from ..keymaps import from_units, to_units, unit_indices
from .blocks import BlockSteps, _global_stage, _jigsaw_stage
from .inblock import block_rows, correlation, recover_flips, recover_permutation
from .result import ManyImageResult, WorkMap, lift_to_nibbles

# What the jigsaw and global stages see after the per-position stage: blocks moved, each with a rotation/flip,
# colour order and inversion of its own (the symmetries the in-block correlations cannot tell).
_AFTER_INBLOCK = BlockSteps(moves=True, rotate=False, negate=True, flips=False, colour=False, shuffle=None,
                            inverts=True)


def split_halves(corr: np.ndarray, L: int) -> Tuple[np.ndarray, np.ndarray]:
    """(upper, lower): the L halves of a (2L, 2L) correlation matrix that correlate most strongly with
    others (mean of each one's three strongest), sorted, and the rest."""
    strength = np.sort(np.abs(corr - np.eye(len(corr))), axis=1)[:, -3:].mean(1)
    upper = np.sort(np.argsort(-strength)[:L])
    return upper, np.setdiff1d(np.arange(len(corr)), upper)


def block_halves_map(rows: np.ndarray, cp_upper: np.ndarray, cp_lower: np.ndarray,
                     lower_starts: int = 2) -> Tuple[np.ndarray, np.ndarray]:
    """One block position's 4-bit map from its samples.

    Args:
        rows: (N, 2L) float64, the 2L halves of one ciphertext block position over N images.
        cp_upper, cp_lower: (L, L) correlations of the public images' upper and lower halves.
    Returns:
        (target (2L,) int64: cipher half i holds plain half target[i] = 2·value + h; flips (2L,) bool).
    """
    L = len(cp_upper)
    ce = correlation(rows)
    upper, lower = split_halves(ce, L)
    flips = np.zeros(2 * L, dtype=bool)
    target = np.zeros(2 * L, dtype=np.int64)
    for sel, cp, half, starts in ((upper, cp_upper, 0, 4), (lower, cp_lower, 1, lower_starts)):
        sub = ce[np.ix_(sel, sel)]
        f = recover_flips(sub)
        s = np.where(f, -1.0, 1.0)
        sigma, _ = recover_permutation(sub * s[:, None] * s[None, :], cp, starts=starts)
        flips[sel] = f
        target[sel] = 2 * sigma + half
    return target, flips


def per_position_map(y: np.ndarray, public: np.ndarray, m: int) -> Map:
    """1. The decryption map over 4-bit halves, one in-block map per block position, block order untouched:
    z_half[i] = y_half[g[i]] ^ xor[i] for (N, H, W, C) uint8 ciphertexts ``y``."""
    n, h, w, c = y.shape
    lay = block_layout(h, w, c, m)
    half_lay = unit_indices(lay, True)                                   # (blocks, 2L)
    pub = to_units(block_rows(public, m).astype(np.uint8), True).astype(np.float64)
    cp_u, cp_l = correlation(pub[:, 0::2]), correlation(pub[:, 1::2])
    yh = to_units(y.reshape(n, -1), True)
    g = np.arange(yh.shape[1], dtype=np.int64)
    k = np.zeros(yh.shape[1], dtype=np.uint8)
    for q in range(len(lay)):
        target, flips = block_halves_map(yh[:, half_lay[q]].astype(np.float64), cp_u, cp_l)
        g[half_lay[q][target]] = half_lay[q]
        k[half_lay[q][target]] = np.where(flips, 15, 0)
    return Map(g, k)


def attack_ele(y: np.ndarray, public: np.ndarray, scheme: str, m: int, plain_shape,
               say: Callable[..., None]) -> ManyImageResult:
    """The key map of ``ele`` (BS + a 4-bit map per block) from ciphertexts ``y`` (N, H, W, C) uint8 under
    one key and public plain images of the same shape; ``m`` the block size. The upper halves are recovered
    (up to the global state); the lower halves are as best matched."""
    h, w, c = (int(v) for v in plain_shape)
    if y.shape[1:] != (h, w, c) or public.shape[1:] != (h, w, c):
        raise PatchcryptError(f"ciphertexts of shape {y.shape[1:]} do not fit plain images {plain_shape}")
    if h % m or w % m:
        raise PatchcryptError(f"image size {h}x{w} is not a multiple of the block size {m}")
    info: Dict[str, Any] = {}
    t = time.perf_counter()
    dec = per_position_map(y, public, m)
    info["inblock_seconds"] = time.perf_counter() - t
    say(f"per-position 4-bit maps of {(h // m) * (w // m)} blocks in {info['inblock_seconds']:.1f} s")
    z = _decrypt_halves(dec, y)
    work = WorkMap((h, w, c))
    steps = _AFTER_INBLOCK if c == 3 else BlockSteps(True, False, True, False, None, None, True)
    _jigsaw_stage(work, z, steps, m, info, say)
    _global_stage(work, z, public, steps, info)
    whole = dec.then(lift_to_nibbles(Map(work.G.reshape(-1), work.K.reshape(-1)))).inverse()
    info["upper_halves_found"] = m * m * c
    return ManyImageResult(scheme, m, (h, w, c), (h, w, c), "nibble", whole.g, whole.m, info)


def _decrypt_halves(dec: Map, y: np.ndarray, chunk: int = 1024) -> np.ndarray:
    out = np.empty_like(y)
    for a in range(0, len(y), chunk):
        yh = to_units(y[a:a + chunk].reshape(len(y[a:a + chunk]), -1), True)
        out[a:a + chunk] = from_units(yh[:, dec.g] ^ dec.m, True).reshape(out[a:a + chunk].shape)
    return out


__all__ = ["attack_ele", "per_position_map", "block_halves_map", "split_halves"]
