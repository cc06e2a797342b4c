"""The 96 global states of a decrypted image set: what they are, how to apply, undo and compose them.

A many-image attack on a shared-key block scheme recovers every image only up to ONE state of the whole
image set that no statistic between neighbouring pixels can tell: a dihedral transform of the whole image
(8: ``k = dihedral % 4`` counter-clockwise quarter turns as ``numpy.rot90``, then a left–right flip when
``dihedral >= 4``, the convention of the RF step in ciphers/steps.py and DESIGN.md §3), an order of the
three colour channels (6, numbered as ``ciphers.steps.COLOUR_ORDERS``: output channel j = input channel
``order[j]``) and an inversion ``v -> 255 - v`` (2).

Convention: a state is what you *apply to the attacker's output* to get the plain images:
``apply_state(output, s) == plain`` for the right ``s``. On one-channel images the colour order does
nothing: only the 16 combinations of dihedral transform and inversion differ (the 96 states remain valid
descriptors; the 6 colour orders of each are the same state). On non-square images an odd number of
quarter turns swaps H and W, so only the 48 states with an even number keep the shape.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from ...errors import PatchcryptError

COLOUR_ORDERS: Tuple[Tuple[int, int, int], ...] = tuple(itertools.permutations(range(3)))  # as ciphers.steps
_TURNS = ("", "rot90", "rot180", "rot270")


@dataclass(frozen=True)
class GlobalState:
    """One of the 96 global states: ``dihedral`` 0..7, ``colour`` 0..5 (index into COLOUR_ORDERS), ``invert``.

    Applied in that order (they commute: the dihedral part moves pixels, the colour part moves channels,
    the inversion changes values). ``str`` reads e.g. ``rot180+mirror BGR inverted``; the identity reads
    ``identity``.
    """

    dihedral: int = 0
    colour: int = 0
    invert: bool = False

    @property
    def index(self) -> int:
        """Position in :data:`GLOBAL_STATES` (0 = identity)."""
        return (self.dihedral * 6 + self.colour) * 2 + int(self.invert)

    @property
    def order(self) -> Tuple[int, int, int]:
        return COLOUR_ORDERS[self.colour]

    def __str__(self) -> str:
        parts = [_TURNS[self.dihedral % 4] + ("+mirror" if self.dihedral >= 4 else "")]
        parts[0] = parts[0].lstrip("+")
        if self.colour:
            parts.append("".join("RGB"[i] for i in self.order))
        if self.invert:
            parts.append("inverted")
        text = " ".join(p for p in parts if p)
        return text or "identity"


GLOBAL_STATES: List[GlobalState] = [GlobalState(d, c, bool(i)) for d in range(8) for c in range(6) for i in (0, 1)]
StateLike = Union[GlobalState, int]


def as_state(state: StateLike) -> GlobalState:
    """A :class:`GlobalState` from itself or its index 0..95; anything else is a one-line error."""
    if isinstance(state, GlobalState):
        return state
    if isinstance(state, (int, np.integer)) and 0 <= int(state) < len(GLOBAL_STATES):
        return GLOBAL_STATES[int(state)]
    raise PatchcryptError(f"not a global state: {state!r} (a GlobalState or an index 0..95)")


def check_images(images: np.ndarray, name: str = "images") -> np.ndarray:
    """``images`` as an array when it is (N, H, W, C) uint8 with C = 1 or 3, else a one-line error naming ``name``."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
        raise PatchcryptError(f"{name} must be (N, H, W, C) uint8 with C = 1 or 3, got "
                              f"{images.dtype} {images.shape}")
    return images


def dihedral(x: np.ndarray, d: int) -> np.ndarray:
    """Dihedral transform ``d`` (0..7) of (N, H, W, ...) arrays, as a view: ``d % 4`` quarter turns, then a mirror."""
    out = np.rot90(x, d % 4, axes=(1, 2))
    return out[:, :, ::-1] if d >= 4 else out


def undihedral(x: np.ndarray, d: int) -> np.ndarray:
    """The inverse of :func:`dihedral`."""
    if d >= 4:
        x = x[:, :, ::-1]
    return np.rot90(x, -(d % 4), axes=(1, 2))


def apply_state(images: np.ndarray, state: StateLike) -> np.ndarray:
    """Apply a global state to (N, H, W, C) uint8 images; (N, W, H, C) after an odd number of quarter turns.

    Returns a new contiguous uint8 array (the input is not changed). C = 1: the colour order is a no-op.
    """
    s, x = as_state(state), check_images(images)
    out = np.ascontiguousarray(dihedral(x, s.dihedral))
    if x.shape[3] == 3 and s.colour:  # on a contiguous array: a gather over a strided view is far slower
        out = np.take(out, s.order, axis=3)
    if not s.invert:
        return out
    return np.bitwise_not(out) if np.may_share_memory(out, x) else np.bitwise_not(out, out=out)  # 255-v == ~v


def invert_state(images: np.ndarray, state: StateLike) -> np.ndarray:
    """The exact inverse of :func:`apply_state`: ``invert_state(apply_state(x, s), s) == x``."""
    s, x = as_state(state), check_images(images)
    if s.invert:
        x = np.bitwise_not(x)
    if x.shape[3] == 3 and s.colour:
        x = np.take(x, np.argsort(s.order), axis=3)
    return np.ascontiguousarray(undihedral(x, s.dihedral))


def distinct_states(channels: int = 3, shape: Optional[Tuple[int, int]] = None) -> List[int]:
    """Indices of the states that differ on images with ``channels`` channels (96 for 3, 16 for 1 — colour
    order 0 only) and, when ``shape`` = (H, W) is not square, keep that shape (even quarter turns only)."""
    square = shape is None or shape[0] == shape[1]
    return [s.index for s in GLOBAL_STATES
            if (channels == 3 or s.colour == 0) and (square or s.dihedral % 2 == 0)]


def compose(a: StateLike, b: StateLike) -> GlobalState:
    """The state c with ``apply_state(x, c) == apply_state(apply_state(x, b), a)`` (b first, then a)."""
    a, b = as_state(a), as_state(b)
    d = DIHEDRAL_COMPOSE[a.dihedral][b.dihedral]
    c = COLOUR_ORDERS.index(tuple(b.order[i] for i in a.order))
    return GlobalState(d, c, a.invert != b.invert)


def inverse(state: StateLike) -> GlobalState:
    """The state that undoes ``state``."""
    s = as_state(state)
    d = next(e for e in range(8) if DIHEDRAL_COMPOSE[e][s.dihedral] == 0)
    return GlobalState(d, COLOUR_ORDERS.index(tuple(int(v) for v in np.argsort(s.order))), s.invert)


def _dihedral_table() -> List[List[int]]:
    probe = np.arange(9).reshape(1, 3, 3, 1)
    outs = [dihedral(probe, d) for d in range(8)]
    return [[next(c for c in range(8) if np.array_equal(outs[c], dihedral(outs[b], a))) for b in range(8)]
            for a in range(8)]


# DIHEDRAL_COMPOSE[a][b]: the dihedral transform "b, then a"; MIRRORED[i]: the index of state i after a mirror
DIHEDRAL_COMPOSE = _dihedral_table()
MIRRORED = np.array([DIHEDRAL_COMPOSE[4][s.dihedral] * 12 + s.colour * 2 + int(s.invert) for s in GLOBAL_STATES])


def shape_after(hw: Sequence[int], s: GlobalState) -> Tuple[int, int]:
    """(H, W) of an image of ``hw`` after state ``s`` (odd quarter turns swap them)."""
    return (int(hw[1]), int(hw[0])) if s.dihedral % 2 else (int(hw[0]), int(hw[1]))


__all__ = ["COLOUR_ORDERS", "GlobalState", "GLOBAL_STATES", "StateLike", "as_state", "check_images", "dihedral",
           "undihedral", "apply_state", "invert_state", "distinct_states", "compose", "inverse",
           "DIHEDRAL_COMPOSE", "MIRRORED", "shape_after"]
