"""The general method of the many-image attack: block moves, in-block shuffles and flips over bytes.

1. **In-block stage** (block-pixel, block-pixel-cs, step-ps, step-bf): the shared pixel shuffle and flip
   mask from the correlations of in-block positions over every block of every image (:mod:`.inblock`);
   step-ps-perblock: the same per block position, pooled over the images.
2. **Jigsaw stage** (block scrambling, per-block states): one block order and one state per block for all
   images, with edge costs summed over the images (:mod:`.jigsaw`).
3. **Global stage**: one rotation/flip of the whole image, colour order and inversion, by public
   statistics (:mod:`.statistics`).

Which stages run, and over which states, is read off the flags of the scheme's steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

import numpy as np

from ...blocks import block_layout
from ...ciphers.base import SchemeSpec
from ...errors import PatchcryptError
from .inblock import block_rows, correlation, recover_flips, recover_permutation
from .jigsaw import COLOUR_ORDERS, JIGSAW_FLOP_BUDGET, Assembler, SideCosts, State, solve, state_list, transform
from .result import ManyImageResult, WorkMap
from .statistics import choose_global, global_transform, inversion, public_sample


def _last_shared(spec: SchemeSpec, flag: str) -> Optional[bool]:
    """Whether the last step with ``flag`` set shares its key among blocks; None when no step has it."""
    shared = None
    for s in spec.steps:
        if getattr(s, flag):
            shared = s.shared
    return shared


@dataclass(frozen=True)
class BlockSteps:
    """What the block method reads of a scheme's steps (each ``Optional[bool]``: absent, or its key shared)."""

    moves: bool                 # BS
    rotate: Optional[bool]      # RF
    negate: bool                # NP
    flips: bool                 # BF
    colour: Optional[bool]      # CS
    shuffle: Optional[bool]     # PS
    inverts: bool               # NP, BF or NPV

    @classmethod
    def of(cls, spec: SchemeSpec) -> "BlockSteps":
        return cls(moves=any(s.moves_blocks for s in spec.steps), rotate=_last_shared(spec, "rotates_blocks"),
                   negate=any(s.inverts_blocks for s in spec.steps), flips=any(s.flip_mask for s in spec.steps),
                   colour=_last_shared(spec, "shuffles_colours"), shuffle=_last_shared(spec, "shuffles_pixels"),
                   inverts=any(s.inverts for s in spec.steps))


def attack_blocks(y: np.ndarray, public: np.ndarray, scheme: str, spec: SchemeSpec, m: int, plain_shape,
                  say: Callable[..., None]) -> ManyImageResult:
    """The key map of a block scheme from ciphertexts ``y`` (N, H, W, C) uint8 and public images of the same
    shape; ``m`` the block size."""
    steps = BlockSteps.of(spec)
    keyed_shape = tuple(int(v) for v in y.shape[1:])
    if public.shape[1:] != keyed_shape:
        raise PatchcryptError(f"ciphertexts of shape {keyed_shape} do not fit plain images {plain_shape} "
                              f"under {scheme!r}")
    h, w, c = keyed_shape
    if h % m or w % m:
        raise PatchcryptError(f"image size {h}x{w} is not a multiple of the block size {m}")
    work = WorkMap(keyed_shape)
    info: Dict[str, Any] = {}
    if steps.shuffle is not None or steps.flips:
        t = time.perf_counter()
        _inblock_stage(work, y, public, steps, m)
        info["inblock_seconds"] = time.perf_counter() - t
        say(f"in-block map in {info['inblock_seconds']:.1f} s")
    jigsaw_stage(work, y, steps, m, info, say)
    global_stage(work, y, public, steps, info)
    fwd = work.forward()
    return ManyImageResult(scheme, m, plain_shape, keyed_shape, "byte", fwd.g, fwd.m, info)


def _inblock_stage(work: WorkMap, y: np.ndarray, public: np.ndarray, steps: BlockSteps, m: int) -> None:
    """1. The shared shuffle/flip mask (or one per block position for a per-block shuffle), into ``work``."""
    keyed_shape = work.shape
    h, w, c = keyed_shape
    lay = block_layout(h, w, c, m)
    corr_plain = _blur_plain(correlation(block_rows(public, m)), steps, m, c)
    if steps.shuffle is False:
        groups = [[k] for k in range(lay.shape[0])]
    else:
        groups = [list(range(lay.shape[0]))]
    gflat, kflat = work.G.reshape(-1), work.K.reshape(-1)
    newg, newk = gflat.copy(), kflat.copy()
    yb = y.reshape(len(y), -1)
    for grp in groups:
        if len(groups) == 1:
            rows = block_rows(y, m)
        else:
            rows = yb[:, lay[grp[0]]].astype(np.float64)
        ce = correlation(rows)
        flips = recover_flips(ce) if steps.flips else np.zeros(lay.shape[1], bool)
        sgn = np.where(flips, -1.0, 1.0)
        if steps.shuffle is not None:
            sigma, _ = recover_permutation(ce * sgn[:, None] * sgn[None, :], corr_plain,
                                           starts=(8 if lay.shape[1] <= 256 else 6) if len(groups) == 1 else 3)
        else:
            sigma = np.arange(lay.shape[1])
        for k in grp:
            newg[lay[k][sigma]] = gflat[lay[k]]
            newk[lay[k][sigma]] = kflat[lay[k]] ^ np.where(flips, 255, 0).astype(np.uint8)
    work.G, work.K = newg.reshape(keyed_shape), newk.reshape(keyed_shape)


def jigsaw_stage(work: WorkMap, y: np.ndarray, steps: BlockSteps, m: int, info: Dict[str, Any],
                  say: Callable[..., None]) -> None:
    """2. Block order and per-block states, costs summed over the images, into ``work``."""
    h, w, c = work.shape
    rf_free = steps.rotate is not None or steps.shuffle is not None
    np_free = steps.negate
    cs_free = c == 3 and (steps.colour is False or steps.shuffle is False)
    fixed = not steps.moves
    if not (not fixed or rf_free or np_free or cs_free):
        return
    t = time.perf_counter()
    n_blocks = (h // m) * (w // m)
    gh, gw = h // m, w // m
    states = state_list(rf_free, np_free, cs_free)
    per_image = 4 * n_blocks * 4 * n_blocks * 2 * 4 * m * c * (6 if cs_free else 1) * (2 if np_free else 1)
    k_img = int(max(2, min(len(y), JIGSAW_FLOP_BUDGET // per_image)))
    z = work.apply(y[:k_img])
    pieces = z.reshape(k_img, gh, m, gw, m, c).transpose(1, 3, 0, 2, 4, 5).reshape(n_blocks, k_img, m, m, c)
    asm = Assembler(SideCosts(pieces, cs_free, np_free), states, m)
    seed_states = [k for k, st in enumerate(states) if not st.neg and st.order == (0, 1, 2)]
    grid = solve(asm, gh, gw, fixed, seed_states=seed_states if fixed else None)
    gb = work.G.reshape(gh, m, gw, m, c).transpose(0, 2, 1, 3, 4).reshape(n_blocks, m, m, c)
    kb = work.K.reshape(gh, m, gw, m, c).transpose(0, 2, 1, 3, 4).reshape(n_blocks, m, m, c)
    new_g, new_k = np.empty_like(gb), np.empty_like(kb)
    for cell, v in enumerate(grid.reshape(-1)):
        piece, st = divmod(int(v), len(states))
        state = states[st]
        new_g[cell] = transform(gb[piece], State(state.rot, False, state.order))
        new_k[cell] = transform(kb[piece], State(state.rot, False, state.order)) ^ (255 if state.neg else 0)
    work.G = new_g.reshape(gh, gw, m, m, c).transpose(0, 2, 1, 3, 4).reshape(work.shape)
    work.K = new_k.reshape(gh, gw, m, m, c).transpose(0, 2, 1, 3, 4).reshape(work.shape)
    info.update(jigsaw_images=k_img, jigsaw_seconds=time.perf_counter() - t, jigsaw_states=len(states))
    say(f"jigsaw of {n_blocks} pieces x {len(states)} states over {k_img} images in "
        f"{info['jigsaw_seconds']:.1f} s")


def global_stage(work: WorkMap, y: np.ndarray, public: np.ndarray, steps: BlockSteps, info: Dict[str, Any]) -> None:
    """3. Whole-image rotation/flip (when blocks were scrambled), colour order, inversion, into ``work``."""
    h, w, c = work.shape
    rots = ([0, 1, 2, 3, 4, 5, 6, 7] if h == w else [0, 2, 4, 6]) if steps.moves else [0]
    orders = COLOUR_ORDERS if (c == 3 and (steps.colour is not None or steps.shuffle is not None)) else [(0, 1, 2)]
    inverts = [(False,) * c, (True,) * c] if steps.inverts else [(False,) * c]
    t = time.perf_counter()
    best, ranked = choose_global(work, y, public, rots, orders, inverts)
    info.update(global_seconds=time.perf_counter() - t, global_candidates=len(ranked),
                global_margin=float(ranked[1][0] - ranked[0][0]) if len(ranked) > 1 else float("inf"))
    if len(public_sample(public.shape)) < len(public):
        info["global_public_images"] = f"{len(public_sample(public.shape))} of {len(public)} (GLOBAL_PUBLIC_VALUES)"
    rot, order, inv = best
    work.G = global_transform(work.G, rot, order)
    work.K = global_transform(work.K, rot, order) ^ inversion(inv)


def _blur_plain(corr: np.ndarray, steps: BlockSteps, m: int, c: int) -> np.ndarray:
    """The plain in-block correlation as the shared in-block stage sees it: averaged over the per-block
    rotations/flips and colour orders applied before the shared shuffle (they mix every block's positions)."""
    from ...ciphers.steps import colour_tables, dihedral_tables

    tables = [np.arange(len(corr))]
    if steps.rotate is False:
        tables = list(dihedral_tables(m, c))
    if c == 3 and steps.colour is False:
        tables = [t[ct] for t in tables for ct in colour_tables(m)]
    return np.mean([corr[np.ix_(t, t)] for t in tables], axis=0)


__all__ = ["attack_blocks", "BlockSteps"]
