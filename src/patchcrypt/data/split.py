"""Which images a run trains, validates and tests on: pure functions of the labels and a seed.

Every split and subset of the project is one of these, whatever holds the images (an :class:`ImageSet` in
RAM, a :class:`~patchcrypt.data.stream.FileSet` on disk): the same labels and seed pick the same positions.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ..errors import PatchcryptError


def stratified_mask(labels: np.ndarray, rng: np.random.Generator, count: Callable[[int], int]) -> np.ndarray:
    """A bool mask (N,) marking ``count(n)`` images of each class of n, drawn class by class (in sorted label
    order) from a permutation of the class's positions; ``count(n) == 0`` marks none (the draw is still made,
    so later classes see the same stream)."""
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        mask[idx[:count(len(idx))]] = True
    return mask


def split_test_mask(labels: np.ndarray, seed: int) -> np.ndarray:
    """The test mask of a tree without train/test folders: a seeded stratified 10% of each class (at least one
    image of every class)."""
    return stratified_mask(labels, np.random.default_rng(seed), lambda n: max(1, n // 10))


def hold_out(labels: np.ndarray, share: float, seed: int) -> np.ndarray:
    """A stratified, seeded mask of ``share`` of each class (at least one image of a class with two or more),
    drawn with its own stream so that it never follows the train/test split's draw."""
    return stratified_mask(labels, np.random.default_rng([seed, 31]),
                           lambda n: max(1, int(round(n * share))) if n > 1 else 0)


def val_fraction(val_split: str) -> Optional[float]:
    """The share of ``train/`` that ``--val-split`` holds out (``"0.1"`` → 0.1), or None for a name
    (auto, none, a folder). A number outside (0, 0.5] is one line."""
    try:
        share = float(val_split)
    except ValueError:
        return None
    if not 0 < share <= 0.5:
        raise PatchcryptError(f"--val-split {val_split}: a share of train/ to hold out must be in (0, 0.5], "
                              "e.g. 0.1; or give auto, none or a folder name")
    return share


def subset_positions(labels: np.ndarray, n: Optional[int], seed: int = 0) -> np.ndarray:
    """Sorted positions of a class-balanced deterministic subset of ``n`` images (all when ``n`` is None or
    ≥ len): classes taken round-robin in a seeded order, so a subset is balanced and a prefix of a larger
    one."""
    if n is None or n >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    if n < 1:
        raise PatchcryptError(f"subset size must be positive, got {n}")
    order = np.random.default_rng(seed).permutation(len(labels))
    by_class = [order[labels[order] == c] for c in np.unique(labels)]
    picked = []
    depth = 0
    while len(picked) < n:
        for idx in by_class:
            if depth < len(idx) and len(picked) < n:
                picked.append(idx[depth])
        depth += 1
    return np.sort(np.array(picked, dtype=np.int64))


__all__ = ["stratified_mask", "split_test_mask", "val_fraction", "hold_out", "subset_positions"]
