"""One vocabulary for every attack's figures: what the attacker output, compared with the plain images.

Scoring never reads the key. It compares the attacker's chosen output with the plain images, and the same
*up to the global state*: the 96 whole-image states (8 rotations/flips x 6 colour orders x inversion) that
no statistic of one image pins down but a person resolves at a glance. A registered scheme may add the
share of its key map recovered (``key_map_fraction``). The keys of :func:`score` are the schema every
attack emits (documented in docs/rate-your-scheme.md):

    exact_images, ssim, ssim_std, psnr, psnr_std               of the chosen output
    exact_images_global, ssim_global, psnr_global              of the best global state of the output
    global_state, global_state_rank                            that state; its rank in the attacker's order
    key_map_fraction                                           share of the key map right, or None
    n_images

The global states come from :mod:`patchcrypt.attacks.globalstate` (``GLOBAL_STATES``, ``apply_state``,
``up_to_global``, ``rank_states``).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import PatchcryptError
from .globalstate import GLOBAL_STATES, apply_state, invert_state, rank_states, ssim_batch, up_to_global  # noqa: F401


# -- fast batch metrics (the same values as scikit-image's SSIM with its defaults) -------------------------
def batch_ssim(a: np.ndarray, b: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Per-image SSIM of two uint8 batches (N, H, W, C): (N,) float64.

    Equal to :func:`patchcrypt.metrics.ssim` (scikit-image: 7x7 uniform window, sample covariance,
    border of 3 cropped, channels averaged), computed for the whole batch at once
    (:func:`patchcrypt.attacks.globalstate.ssim_batch`).
    """
    return ssim_batch(a, b, 255.0, chunk)


def batch_psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB of two uint8 batches (N, ...): (N,), identical pairs capped at 100 dB."""
    d = a.reshape(len(a), -1).astype(np.float64) - b.reshape(len(b), -1).astype(np.float64)
    mse = (d * d).mean(1)
    with np.errstate(divide="ignore"):
        p = 10 * np.log10(255.0 ** 2 / mse)
    return np.minimum(p, 100.0)


def exact(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) bool: image i of ``a`` equals image i of ``b``."""
    return (a.reshape(len(a), -1) == b.reshape(len(b), -1)).all(1)




def state_index(state) -> int:
    """Index of a state descriptor in ``GLOBAL_STATES``."""
    return GLOBAL_STATES.index(state)


def state_label(state) -> str:
    """A state descriptor as a short string for JSON."""
    return str(state)


def state_as_map(state, shape: Tuple[int, int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """A global state as a gather over the flat (H, W, C) image: ``out[p] = x[perm[p]] ^ mask[p]``.

    Read off ``apply_state`` by applying it to images that spell every position's index, so it holds
    whatever form the state descriptors take. Returns (perm (D,) int64, mask (D,) uint8 0/255).
    """
    h, w, c = shape
    d = h * w * c
    digits = max(1, math.ceil(math.log(d, 256)))
    idx = np.arange(d, dtype=np.int64)
    probe = np.stack([((idx >> (8 * j)) & 255).astype(np.uint8).reshape(h, w, c) for j in range(digits)]
                     + [np.zeros((h, w, c), np.uint8)])
    out = apply_state(probe, state)
    if out.shape[1:] != (h, w, c):
        raise PatchcryptError(f"global state {state} changes the image shape {shape}")
    mask = out[-1].reshape(-1)
    perm = np.zeros(d, np.int64)
    for j in range(digits):
        perm |= (out[j].reshape(-1) ^ mask).astype(np.int64) << (8 * j)
    return perm, mask


# -- the schema ------------------------------------------------------------------------------------------------
SCHEMA = ("n_images", "exact_images", "ssim", "ssim_std", "psnr", "psnr_std", "exact_images_global", "ssim_global",
          "psnr_global", "global_state", "global_state_rank", "key_map_fraction")


def score(plain: np.ndarray, output: np.ndarray, candidates: Optional[np.ndarray] = None,
          state_order: Optional[Sequence[int]] = None, key_map_fraction: Optional[float] = None) -> Dict[str, Any]:
    """The figures of one attack (keys: ``SCHEMA``).

    Args:
        plain: (N, H, W, C) uint8, the truth.
        output: (N, H, W, C) uint8, the attacker's chosen output.
        candidates, state_order: the attacker's candidates are ``apply_state(candidates, GLOBAL_STATES[i])``
            for i in ``state_order`` (best first; ``output`` is the first). Without them, ``output`` is the
            only candidate.
        key_map_fraction: share of the key map recovered (registered schemes), else None.
    """
    if output.shape != plain.shape:
        raise PatchcryptError(f"the attack output has shape {output.shape}, the plain images {plain.shape}")
    s, p = batch_ssim(output, plain), batch_psnr(output, plain)
    base = output if candidates is None else candidates
    order = list(state_order) if state_order is not None else [0]
    g = up_to_global(base, plain, always=(0, order[0]))   # never below the output the attacker chose
    idx = int(g["best_state_index"])
    best = GLOBAL_STATES[idx]
    rank = order.index(idx) + 1 if idx in order else None
    return {"n_images": int(len(plain)), "exact_images": float(exact(output, plain).mean()),
            "ssim": float(s.mean()), "ssim_std": float(s.std()), "psnr": float(p.mean()), "psnr_std": float(p.std()),
            "exact_images_global": float(g["exact_images_global"]), "ssim_global": float(g["ssim_global"]),
            "psnr_global": float(g["psnr_global"]), "global_state": state_label(best), "global_state_rank": rank,
            "key_map_fraction": None if key_map_fraction is None else float(key_map_fraction)}


__all__ = ["GLOBAL_STATES", "apply_state", "invert_state", "up_to_global", "rank_states", "state_index",
           "state_as_map", "score", "SCHEMA", "batch_ssim", "batch_psnr", "exact"]
