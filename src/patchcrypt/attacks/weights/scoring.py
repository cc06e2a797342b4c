"""Scoring a recovery from weights up to the one global symmetry the weights cannot fix (a grid symmetry of
the block order, one in-block rotation/flip × colour order × negation); for scoring only (reads the key)."""

from __future__ import annotations

import numpy as np

from ...keys import Key
from ..keymaps import block_map_to_image, dihedral_colour_states, grid_symmetries, map_fraction
from .pieces import RecoveredBlocks, masks


def global_candidates(sigma: np.ndarray, g: np.ndarray, s: np.ndarray, gh: int, gw: int, block_size: int,
                      channels: int, sigma_known: bool = False):
    """Every key consistent with a recovery up to one global symmetry: (grid symmetry, in-block state).

    ``g``, ``s`` (n, L) are in-block maps relative to an unknown reference state (g = g₀[g_rel]); ``sigma`` is
    the block permutation up to a grid symmetry (unless ``sigma_known``). Yields (sigma, g, mask).
    """
    gathers, signs = dihedral_colour_states(block_size, channels)
    sym = grid_symmetries(gh, gw) if not sigma_known else np.arange(gh * gw)[None]
    for h in sym:
        sig = h[sigma]
        for q_g, q_s in zip(gathers, signs):
            yield sig, q_g[g], masks(s * q_s[g])


def score_up_to(rec: RecoveredBlocks, truth, shape, block_size: int, sigma_known: bool):
    """Best exact share over the global candidates, and the block-permutation share up to a grid symmetry."""
    h, w, c = shape
    gh, gw = h // block_size, w // block_size
    s = np.where(rec.mask == 255, -1.0, 1.0)
    best = 0.0
    for sig, g, msk in global_candidates(rec.sigma, rec.g, s, gh, gw, block_size, c, sigma_known):
        best = max(best, map_fraction(block_map_to_image(sig, g, msk, shape, block_size), truth))
    return best


def inblock_up_to_global(rec: RecoveredBlocks, scheme: str, key: Key, block_size: int, shape) -> float:
    """Share of (block, element) in-block maps right, up to the best single global in-block state."""
    from ...models.keyed import block_maps

    true = block_maps(scheme, key, block_size, shape[0], shape[2])
    gathers, signs = dihedral_colour_states(block_size, shape[2])
    s = np.where(rec.mask == 255, -1.0, 1.0)
    return max(float(np.mean((q_g[rec.g] == true.g) & (s * q_s[rec.g] == true.s)))
               for q_g, q_s in zip(gathers, signs))


def true_blocks(truth, shape, block_size: int) -> np.ndarray:
    from ...blocks import block_layout, locate_in_blocks

    layout = block_layout(*shape, block_size)
    block_of, _ = locate_in_blocks(layout)
    return block_of[truth.g[layout[:, 0]]]


__all__ = ["global_candidates", "score_up_to", "inblock_up_to_global", "true_blocks"]
