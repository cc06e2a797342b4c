"""Hierarchical jigsaw: solve every patch's sub-blocks, then the patches (nested schemes, ciphers/nested.py).

``etc-nested`` moves M×M patches and, inside every patch, moves its m×m sub-blocks and gives each its own
rotation/flip, polarity and colour order. Patch edges then no longer continue each other, so the ordinary
jigsaw (whole blocks as pieces) has nothing to match. The pieces are the sub-blocks, and they stay inside
their patch: the puzzle splits into levels.

1. Every patch alone: its q = (M/m)² sub-blocks are pieces in every state the scheme allows (96 for
   etc-nested), reassembled by the jigsaw solver on the k×k grid of the patch. A solved patch is the plain
   patch up to one state of the whole patch (a dihedral state, a polarity, a colour order: the same group
   again, now at M).
2. The image of solved patches is an EtC puzzle at M: the ordinary solver places the patches, each in any of
   those states, and the global state is chosen as every jigsaw result is (the candidate closest to the plain
   image, the 96 public states).

The attack runs on each ciphertext alone, so per-image keys change nothing. Scored by the readable fraction
(:mod:`.scoring`) like every attack.
"""

from __future__ import annotations

import sys
import time
from typing import AbstractSet, Optional, Tuple

import numpy as np

from ..blocks import merge_blocks, split_blocks
from ..ciphers.nested import SUB_CS, SUB_NP, SUB_ORDER, SUB_RF
from .base import AttackResult
from .jigsaw import assemble, jigsaw_attack, solve, states_for
from .registry import AttackOptions, Threat, register_attack
from .target import Target

# the sub-block steps, read as the ordinary jigsaw's per-block states one level down
_AS_BLOCK_STATE = {SUB_RF: "RF", SUB_NP: "NP", SUB_CS: "CS"}
NESTED_MODELLED = frozenset({"BS", SUB_ORDER, *_AS_BLOCK_STATE})


def level_states(steps: AbstractSet[str]) -> Tuple[frozenset, frozenset]:
    """(sub-block level, patch level) step symbols as the ordinary solver names them.

    The patch level gets the same states as the sub-block level: a patch solved from its sub-blocks is known
    up to one state of the whole patch.
    """
    inner = frozenset(_AS_BLOCK_STATE[s] for s in steps if s in _AS_BLOCK_STATE)
    return inner, frozenset({"BS"}) | inner


def why_not_hierarchical(steps: Optional[AbstractSet[str]]) -> Optional[str]:
    """None when the attack models every step (patch order plus sub-block order and states), else why not."""
    if steps is None:
        return "the scheme declares no steps, so there is no sub-block level to solve"
    if SUB_ORDER not in steps:
        return "no sub-blocks are moved inside the blocks (the ordinary jigsaw is the attack)"
    others = sorted(set(steps) - NESTED_MODELLED)
    if others:
        return f"steps the solver does not model: {', '.join(others)}"
    return None


def solve_patches(image: np.ndarray, block_size: int, sub_block: int, inner: AbstractSet[str],
                  restarts: int = 3) -> np.ndarray:
    """(H, W, C) uint8 ciphertext → the same image with every M×M patch reassembled from its sub-blocks
    (each patch in the frame of its own first piece)."""
    h, w, _ = image.shape
    if sub_block == block_size:   # one sub-block per patch: nothing to solve at this level
        return image.copy()
    states = states_for(set(inner) | {"BS"})
    patches = split_blocks(image[None], block_size)[0]                                 # (n, M, M, C)
    solved = np.empty_like(patches)
    for i, patch in enumerate(patches):
        piece, state = solve(patch, sub_block, states, restarts=restarts)
        solved[i] = assemble(patch, sub_block, states, piece, state)
    return merge_blocks(solved[None], h, w)[0]


def hierarchical_attack(plain: np.ndarray, encrypted: np.ndarray, scheme: str, block_size: int, sub_block: int,
                        steps: AbstractSet[str], progress: Optional[bool] = None) -> AttackResult:
    """Both levels on every image of ``encrypted`` (N, H, W, C) uint8, each alone; scored against ``plain``."""
    inner, outer = level_states(steps)
    t0 = time.perf_counter()
    stage = []
    for done, img in enumerate(encrypted, 1):
        stage.append(solve_patches(img, block_size, sub_block, inner))
        if progress:
            print(f"  hjigsaw: patches of {done}/{len(encrypted)} images solved", file=sys.stderr, flush=True)
    first = time.perf_counter() - t0
    res = jigsaw_attack(plain, np.stack(stage), scheme, block_size, steps=outer, progress=progress)
    seconds = time.perf_counter() - t0
    extra = dict(res.extra, sub_block=sub_block, states=len(states_for(set(inner) | {"BS"})),
                 patch_states=len(states_for(outer)), seconds_patches=first, seconds=seconds,
                 seconds_per_image=seconds / len(plain))
    return AttackResult("hjigsaw", scheme, plain, encrypted, res.reconstructed, extra)


def _applies(t: Target) -> Optional[str]:
    return why_not_hierarchical(t.steps)


@register_attack("hjigsaw", Threat.CIPHERTEXT_ONLY, "hierarchical jigsaw: every patch's sub-blocks in every "
                 "allowed state, then the patches (nested schemes), each image alone",
                 applies=_applies, single=True)
def run_hierarchical(t: Target, test: np.ndarray, train: Optional[np.ndarray], o: AttackOptions) -> AttackResult:
    """Each image of ``test`` solved alone from its ciphertext (per-image keys change nothing)."""
    sub = int(getattr(t.cipher, "sub_block", 0) or o.extra.get("sub_block", 0) or 4)
    enc = t.encrypt(test)
    return hierarchical_attack(test, enc, t.name, t.block_size, sub, t.steps, progress=o.progress)


