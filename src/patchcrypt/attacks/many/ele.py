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
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from ...blocks import block_layout
from ...ciphers.program import Map
from ...errors import PatchcryptError
from ..keymaps import from_units, to_units, unit_indices
from .blocks import BlockSteps, global_stage, jigsaw_stage
from .inblock import (FAQ_MAXITER, LARGE_SWAPS, block_rows, correlation, one_blas_thread, recover_flips,
                      recover_permutation)
from .result import ManyImageResult, WorkMap, lift_to_nibbles

# FAQ starts per block position for the upper halves (their QAP has near-optimal wrong answers; four starts
# miss the best one at some positions)
UPPER_STARTS = 16
# Large blocks (M·M·C values above LARGE_BLOCK, e.g. M = 16: 768 upper halves a position): every FAQ step is a
# (768, 768) linear assignment and product, so the first round takes the barycenter start alone, at most
# LARGE_STEPS steps (the random starts rarely beat it there; the later rounds mend what it misses).
LARGE_BLOCK = 192
LARGE_STARTS = 1
LARGE_STEPS = 10
# Pairwise swaps after the lower halves' FAQ at large blocks: none. Their correlations are weak, the swaps
# never stop gaining a little (400 a position were most of the attack's time at M = 16) and place next to
# nothing right.
LARGE_LOWER_SWAPS = 0
# Rounds (at most): the first matches each position's upper halves to the public images' correlations; the
# next to the correlations of the victims themselves, read off the round before's decryptions (closer to the
# victims' own statistics, whatever the public images are); they stop when a round changes nothing.
ROUNDS = 3
MAX_REFERENCE = 5000       # decrypted images the next round's reference correlations are read from
# What the jigsaw and global stages see after the per-position stage: blocks moved, each with a rotation/flip,
# colour order and inversion of its own (the symmetries the in-block correlations cannot tell).
_AFTER_INBLOCK = BlockSteps(moves=True, rotate=False, negate=True, flips=False, colour=False, shuffle=None,
                            inverts=True)


def split_halves(corr: np.ndarray, L: int) -> Tuple[np.ndarray, np.ndarray]:
    """(upper, lower): the L halves of a (2L, 2L) correlation matrix that correlate most strongly with
    others (mean of each one's three strongest), sorted, and the rest."""
    strength = np.sort(np.partition(np.abs(corr - np.eye(len(corr))), -3, axis=1)[:, -3:], axis=1).mean(1)
    upper = np.sort(np.argsort(-strength)[:L])
    return upper, np.setdiff1d(np.arange(len(corr)), upper)


def block_halves_map(rows: np.ndarray, cp_upper: np.ndarray, cp_lower: np.ndarray, upper_starts: int = UPPER_STARTS,
                     lower_starts: int = 2, previous: Optional[np.ndarray] = None,
                     steps: int = FAQ_MAXITER, large: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """One block position's 4-bit map from its samples.

    Args:
        rows: (N, 2L) float64, the 2L halves of one ciphertext block position over N images.
        cp_upper, cp_lower: (L, L) reference correlations of plain upper and lower halves.
        upper_starts, lower_starts: FAQ starts for the upper and the lower halves; 0 leaves those halves in
            their order, unflipped.
        previous: (2L,) int64, this position's ``target`` from an earlier round: the upper halves' FAQ then
            starts from it alone (the samples, hence the split and the flips, are the same).
        steps: FAQ steps per start at most.
        large: one FAQ start by :func:`.inblock.faq_large` (float32, stops when a step gains next to nothing).
    Returns:
        (target (2L,) int64: cipher half i holds plain half target[i] = 2·value + h; flips (2L,) bool).
    """
    L = len(cp_upper)
    ce = correlation(rows)
    upper, lower = split_halves(ce, L)
    flips = np.zeros(2 * L, dtype=bool)
    target = np.zeros(2 * L, dtype=np.int64)
    warm = _upper_start(previous, upper, L)
    for sel, cp, half, starts in ((upper, cp_upper, 0, upper_starts), (lower, cp_lower, 1, lower_starts)):
        if not starts:
            target[sel] = 2 * np.arange(L) + half
            continue
        sub = ce[np.ix_(sel, sel)]
        f = recover_flips(sub)
        s = np.where(f, -1.0, 1.0)
        sigma, _ = recover_permutation(sub * s[:, None] * s[None, :], cp, starts=starts, maxiter=steps,
                                       start=warm if half == 0 else None, large=large,
                                       max_swaps=LARGE_SWAPS if half == 0 else LARGE_LOWER_SWAPS)
        flips[sel] = f
        target[sel] = 2 * sigma + half
    return target, flips


def _upper_start(previous: Optional[np.ndarray], upper: np.ndarray, L: int) -> Optional[np.ndarray]:
    """The upper halves' permutation in an earlier round's ``target``, or None where it placed them otherwise."""
    if previous is None:
        return None
    t = previous[upper]
    if (t % 2).any() or len(np.unique(t)) != L:
        return None
    return t // 2


def half_correlations(images: np.ndarray, m: int) -> Tuple[np.ndarray, np.ndarray]:
    """(upper, lower): (L, L) correlations of the upper and of the lower 4-bit halves of the in-block values,
    pooled over every block of (N, H, W, C) uint8 images."""
    rows = to_units(block_rows(images, m).astype(np.uint8), True).astype(np.float64)
    return correlation(rows[:, 0::2]), correlation(rows[:, 1::2])


def per_position_map(y: np.ndarray, cp_u: np.ndarray, cp_l: np.ndarray, m: int,
                     upper_starts: int = UPPER_STARTS, lower_starts: int = 2,
                     previous: Optional[Map] = None) -> Map:
    """1. The decryption map over 4-bit halves, one in-block map per block position, block order untouched:
    z_half[i] = y_half[g[i]] ^ xor[i] for (N, H, W, C) uint8 ciphertexts ``y``; ``cp_u``/``cp_l`` the
    reference correlations of plain upper/lower halves (:func:`half_correlations`); ``previous`` this
    function's answer on the same ``y`` in an earlier round: for large blocks its upper halves' permutations
    are then the only FAQ starts (small blocks ignore it)."""
    n, h, w, c = y.shape
    lay = block_layout(h, w, c, m)
    half_lay = unit_indices(lay, True)                                   # (blocks, 2L)
    yh = to_units(y.reshape(n, -1), True)
    steps, large = FAQ_MAXITER, len(cp_u) > LARGE_BLOCK
    if large:       # large blocks: each FAQ step costs far more
        upper_starts = min(upper_starts, LARGE_STARTS) if upper_starts else 0
        lower_starts = min(lower_starts, LARGE_STARTS) if lower_starts else 0
        steps = LARGE_STEPS
    else:                             # small blocks: every round tries all its starts afresh
        previous = None
    g = np.arange(yh.shape[1], dtype=np.int64)
    k = np.zeros(yh.shape[1], dtype=np.uint8)
    with one_blas_thread():       # (2L, 2L) products and eigenvectors: faster on one thread
        for q in range(len(lay)):
            before = None if previous is None else _position_target(previous, half_lay[q])
            target, flips = block_halves_map(yh[:, half_lay[q]].astype(np.float64), cp_u, cp_l, upper_starts,
                                             lower_starts, before, steps, large)
            g[half_lay[q][target]] = half_lay[q]
            k[half_lay[q][target]] = np.where(flips, 15, 0)
    return Map(g, k)


def _position_target(dec: Map, halves: np.ndarray) -> np.ndarray:
    """The ``target`` (2L,) that :func:`per_position_map` wrote into ``dec`` for the block position whose
    halves are ``halves`` (2L,): cipher half i went to plain slot target[i]."""
    local = np.argsort(halves)
    inv = local[np.searchsorted(halves, dec.g[halves], sorter=local)]    # slot j holds cipher half inv[j]
    target = np.empty(len(halves), dtype=np.int64)
    target[inv] = np.arange(len(halves))
    return target


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
    steps = _AFTER_INBLOCK if c == 3 else BlockSteps(True, False, True, False, None, None, True)
    cp_u, cp_l = half_correlations(public, m)
    last = None
    for rnd in range(ROUNDS):
        t = time.perf_counter()
        # the lower halves: no help to the next round; a later round starts from the round before's answer
        dec = per_position_map(y, cp_u, cp_l, m, lower_starts=0, previous=last)
        info["rounds"] = rnd + 1
        info["inblock_seconds"] = info.get("inblock_seconds", 0.0) + time.perf_counter() - t
        say(f"round {rnd + 1}: per-position 4-bit maps of {(h // m) * (w // m)} blocks in "
            f"{time.perf_counter() - t:.1f} s")
        if last is not None and np.array_equal(dec.g, last.g) and np.array_equal(dec.m, last.m):
            break      # the same map as the round before: the jigsaw's answer too
        z = _decrypt_halves(dec, y)
        work, last = WorkMap((h, w, c)), dec
        jigsaw_stage(work, z, steps, m, info, say)
        if rnd + 1 < ROUNDS:   # the victims' own upper-half correlations, from blocks put in order
            cp_u = half_correlations(work.apply(z[:MAX_REFERENCE]), m)[0]
    t = time.perf_counter()
    dec = _with_lower_halves(dec, per_position_map(y, cp_u, cp_l, m, upper_starts=0))
    info["lower_seconds"] = time.perf_counter() - t
    z = _decrypt_halves(dec, y)
    global_stage(work, z, public, steps, info)
    whole = dec.then(lift_to_nibbles(Map(work.G.reshape(-1), work.K.reshape(-1)))).inverse()
    info["upper_halves_found"] = m * m * c
    return ManyImageResult(scheme, m, (h, w, c), (h, w, c), "nibble", whole.g, whole.m, info)


def _with_lower_halves(upper: Map, lower: Map) -> Map:
    """``upper``'s upper halves with ``lower``'s lower halves (both maps split every block position's halves
    alike, so the odd, lower-half slots hold the same cipher halves in both)."""
    g, k = upper.g.copy(), upper.m.copy()
    g[1::2], k[1::2] = lower.g[1::2], lower.m[1::2]
    return Map(g, k)


def _decrypt_halves(dec: Map, y: np.ndarray, chunk: int = 1024) -> np.ndarray:
    out = np.empty_like(y)
    for a in range(0, len(y), chunk):
        yh = to_units(y[a:a + chunk].reshape(len(y[a:a + chunk]), -1), True)
        out[a:a + chunk] = from_units(yh[:, dec.g] ^ dec.m, True).reshape(out[a:a + chunk].shape)
    return out


__all__ = ["attack_ele", "per_position_map", "half_correlations", "block_halves_map", "split_halves"]
