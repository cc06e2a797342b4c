"""FR attack (Chang et al. 2020, basic form): fold every value so negative-positive flips cancel.

Every flip in these schemes maps v to 255 − v, so min(v, 255 − v) is the same whether a value was flipped
or not. Stretched back to 0..255, the folded image keeps the edges of the plain image wherever pixels were
not moved far (pixel-based encryption keeps every pixel in place). No training; vectorised.
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np

from .base import AttackResult
from .registry import AttackOptions, Threat, register_attack
from .target import Target


def fold(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) → uint8: 2·min(v, 255 − v), averaged over channels (so channel shuffles cancel too)
    and repeated to C channels."""
    v = images.astype(np.int16)
    folded = np.clip(2 * np.minimum(v, 255 - v), 0, 255).mean(axis=-1, keepdims=True)
    return np.repeat(np.rint(folded).astype(np.uint8), images.shape[-1], axis=-1)


def fr_attack(plain: np.ndarray, encrypted: np.ndarray, scheme: str) -> AttackResult:
    t0 = time.perf_counter()
    rec = fold(encrypted)
    if rec.shape != plain.shape:  # e.g. etc-gray composites: no pixel correspondence; show the folded image
        from ..codec import as_display

        rec = np.stack([as_display(r, plain.shape[1:]) for r in rec])
    seconds = time.perf_counter() - t0
    return AttackResult("fr", scheme, plain, encrypted, rec,
                        {"seconds": seconds, "ms_per_image": 1000 * seconds / len(plain)})


@register_attack("fr", Threat.CIPHERTEXT_ONLY, "fold values so negative-positive flips cancel (Chang et al. 2020)")
def run_fr(target: Target, test: np.ndarray, train: Optional[np.ndarray], options: AttackOptions) -> AttackResult:
    """FR on the target's ciphertexts of ``test`` (N, H, W, C) uint8."""
    return fr_attack(test, target.encrypt(test), target.name)
