"""Jigsaw pieces and their greedy placement, shared by the single-image (jigsaw.py) and many-image
(many/jigsaw.py) solvers.

A piece is one block; its *state* is what the per-block steps of ciphers/steps.py may have done to it:
one of the 8 dihedral states (RF), an inversion (NP) and one of the 6 colour orders (CS). A *variant* is a
piece in a state, numbered ``piece * S + state`` for S allowed states. The placer grows one connected
assembly inside the image's block grid, always placing next the variant whose match is most clearly better
than its runner-up (Gallagher-style greedy growth).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..ciphers.steps import COLOUR_ORDERS as _ORDER_TABLE
from ..ciphers.steps import colour_tables, dihedral_tables
from ..errors import PatchcryptError

COLOUR_ORDERS: List[Tuple[int, ...]] = [tuple(int(v) for v in o) for o in _ORDER_TABLE]
_ORDER_INDEX = {o: i for i, o in enumerate(COLOUR_ORDERS)}


@dataclass(frozen=True)
class State:
    """A piece state: ``rot`` dihedral 0..7 (as ciphers.steps.dihedral_tables), ``neg``, colour ``order``."""

    rot: int = 0
    neg: bool = False
    order: Tuple[int, ...] = (0, 1, 2)


def state_list(dihedral: bool, negate: bool, colour: bool) -> List[State]:
    """Every combination of the allowed dihedral states, inversions and colour orders (rot-major)."""
    rots = range(8) if dihedral else [0]
    negs = [False, True] if negate else [False]
    orders = COLOUR_ORDERS if colour else [(0, 1, 2)]
    return [State(r, n, o) for r in rots for n in negs for o in orders]


def transform(block: np.ndarray, state: State) -> np.ndarray:
    """Apply a state to (..., M, M, C) blocks (the last three axes are row, column, channel), by the in-block
    gathers of the RF and CS steps; an inversion is v → 255 − v. Any dtype (index maps too, without ``neg``)."""
    m, c = block.shape[-2], block.shape[-1]
    gather = dihedral_tables(m, c)[state.rot]
    if c == 3:
        gather = gather[colour_tables(m)[_ORDER_INDEX[tuple(state.order)]]]
    flat = block.reshape(*block.shape[:-3], m * m * c)
    out = flat[..., gather].reshape(block.shape)
    return 255 - out if state.neg else out


CostTo = Callable[[int, str], np.ndarray]
_OFFSETS = {(0, 1): "right", (0, -1): "left", (1, 0): "below", (-1, 0): "above"}


def seed_order(cost_to: CostTo, n: int, s: int) -> np.ndarray:
    """Pieces ordered by how clearly their best right and below matches beat the runner-up (surest first).

    ``cost_to(variant, side)``: the cost of every variant put on ``side`` of ``variant`` ((n·S,) vector).
    """
    conf = np.zeros(n)
    for side in ("right", "below"):
        for p in range(n):
            cst = cost_to(p * s, side).reshape(n, s).min(1)
            cst[p] = np.inf
            two = np.partition(cst, 1)[:2]
            conf[p] += (two[0] + 1.0) / (two[1] + 1.0)
    return np.argsort(conf)


def grow(cost_to: CostTo, seed: int, n: int, s: int, gh: int, gw: int,
         home: Optional[Tuple[int, int]] = None, dtype=np.float64) -> np.ndarray:
    """Greedy growth from variant ``seed``; the (gh, gw) grid of placed variants.

    Free placement (``home`` None): the assembly may grow in any direction as long as it fits a gh×gw
    box; the next variant is the one whose cost beats the best other piece's by the largest ratio, raised
    to the number of placed neighbours of its slot. Fixed placement (``home`` the seed's own cell): every
    piece stays in its own grid cell, slots with the most placed neighbours are filled first, and only the
    state is chosen. ``dtype``: the accumulation type of the slot costs.
    """
    fixed = home is not None
    if fixed:
        hh, ww = gh, gw
        cy, cx = home
    else:
        hh, ww = 2 * gh - 1, 2 * gw - 1
        cy, cx = gh - 1, gw - 1
    grid = -np.ones((hh, ww), dtype=np.int64)
    used = np.zeros(n, dtype=bool)
    grid[cy, cx] = seed
    used[seed // s] = True
    rows, cols = [cy], [cx]
    slot_cost: Dict[Tuple[int, int], np.ndarray] = {}
    slot_count: Dict[Tuple[int, int], int] = {}
    piece_of = np.arange(n * s) // s

    def inside(y: int, x: int) -> bool:
        if not (0 <= y < hh and 0 <= x < ww):
            return False
        return (max(rows + [y]) - min(rows + [y]) < gh) and (max(cols + [x]) - min(cols + [x]) < gw)

    def refresh(y: int, x: int) -> None:
        total, count = np.zeros(n * s, dtype=dtype), 0
        for (dy, dx), side in _OFFSETS.items():
            ny, nx = y - dy, x - dx          # neighbour such that this slot is on its `side`
            if 0 <= ny < hh and 0 <= nx < ww and grid[ny, nx] >= 0:
                total += cost_to(int(grid[ny, nx]), side)
                count += 1
        if fixed:  # only the piece that belongs here
            total = np.where(piece_of == y * gw + x, total, np.inf)
        slot_cost[(y, x)] = total / count
        slot_count[(y, x)] = count

    for dy, dx in _OFFSETS:
        if inside(cy + dy, cx + dx):
            refresh(cy + dy, cx + dx)
    for _ in range(n - 1):
        best = None
        mask = np.repeat(used, s)
        for (y, x), cost in list(slot_cost.items()):
            if grid[y, x] >= 0 or not inside(y, x):
                del slot_cost[(y, x)]
                continue
            cc = np.where(mask, np.inf, cost)
            k = int(np.argmin(cc))
            if fixed:  # fill where most neighbours are known
                score = -float(slot_count[(y, x)]) * 1e12 + cc[k]
            else:  # best match clearly better than the runner-up (another piece); surer with more neighbours
                others = np.where(piece_of == piece_of[k], np.inf, cc)
                score = ((cc[k] + 1.0) / (others.min() + 1.0)) ** slot_count[(y, x)]
            if best is None or score < best[0]:
                best = (score, y, x, k)
        if best is None:
            raise PatchcryptError("the jigsaw ran out of places")
        _, y, x, k = best
        grid[y, x] = k
        used[k // s] = True
        rows.append(y)
        cols.append(x)
        del slot_cost[(y, x)]
        for dy, dx in _OFFSETS:
            ny, nx = y + dy, x + dx
            if inside(ny, nx) and grid[ny, nx] < 0:
                refresh(ny, nx)
    y0, x0 = min(rows), min(cols)
    return grid[y0:y0 + gh, x0:x0 + gw]


__all__ = ["State", "state_list", "transform", "COLOUR_ORDERS", "seed_order", "grow"]
