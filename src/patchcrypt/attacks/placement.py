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
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

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


class _Slots:
    """The open slots of a growth, in the order the greedy scan visits them (insertion order, as a dict keeps
    it), each with its slot cost reduced per piece: the best state's cost (n,) and that state (n,).

    The best variant of a slot over unused pieces is its cheapest unused piece in that piece's best state
    (ties: the lowest piece, then the lowest state, as ``argmin`` over all n·S variants picks), so the scan
    looks at n values per slot instead of n·S."""

    def __init__(self, n: int, s: int) -> None:
        self.n, self.s = n, s
        self.best: Dict[Tuple[int, int], np.ndarray] = {}    # slot -> (n,) cheapest state's cost per piece
        self.state: Dict[Tuple[int, int], np.ndarray] = {}   # slot -> (n,) that state
        self.count: Dict[Tuple[int, int], int] = {}

    def put(self, slot: Tuple[int, int], cost: np.ndarray, count: int) -> None:
        """Set a slot's cost vector (n·S,) (an existing slot keeps its place in the scan order)."""
        per_piece = cost.reshape(self.n, self.s)
        self.state[slot] = per_piece.argmin(1)
        self.best[slot] = np.take_along_axis(per_piece, self.state[slot][:, None], 1)[:, 0]
        self.count[slot] = count

    def drop(self, slot: Tuple[int, int]) -> None:
        del self.best[slot], self.state[slot], self.count[slot]

    def candidates(self, used: np.ndarray) -> Iterator[Tuple[Tuple[int, int], int, Any, Any, int]]:
        """Per open slot, in scan order: (slot, best variant, its cost, the best other unused piece's cost,
        neighbour count), every open slot reduced at once."""
        slots = list(self.best)
        if not slots:
            return
        costs = np.stack([self.best[k] for k in slots])                     # (slots, n)
        costs[:, used] = np.inf
        piece = costs.argmin(1)
        two = np.partition(costs, 1, axis=1)[:, :2] if self.n > 1 else np.concatenate([costs, costs + np.inf], 1)
        for i, slot in enumerate(slots):
            p = int(piece[i])
            # the runner-up of another piece: the second smallest, unless the best value is shared
            yield slot, p * self.s + int(self.state[slot][p]), costs[i, p], two[i, 1], self.count[slot]


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
    hh, ww = (gh, gw) if fixed else (2 * gh - 1, 2 * gw - 1)
    cy, cx = home if fixed else (gh - 1, gw - 1)
    grid = -np.ones((hh, ww), dtype=np.int64)
    used = np.zeros(n, dtype=bool)
    grid[cy, cx] = seed
    used[seed // s] = True
    box = [cy, cy, cx, cx]                                   # rows and columns the assembly spans
    slots = _Slots(n, s)
    piece_of = np.arange(n * s) // s

    def inside(y: int, x: int) -> bool:
        if not (0 <= y < hh and 0 <= x < ww):
            return False
        return max(box[1], y) - min(box[0], y) < gh and max(box[3], x) - min(box[2], x) < gw

    def refresh(y: int, x: int) -> None:
        total, count = np.zeros(n * s, dtype=dtype), 0
        for (dy, dx), side in _OFFSETS.items():
            ny, nx = y - dy, x - dx          # neighbour such that this slot is on its `side`
            if 0 <= ny < hh and 0 <= nx < ww and grid[ny, nx] >= 0:
                total += cost_to(int(grid[ny, nx]), side)
                count += 1
        if fixed:  # only the piece that belongs here
            total = np.where(piece_of == y * gw + x, total, np.inf)
        slots.put((y, x), total / count, count)

    for dy, dx in _OFFSETS:
        if inside(cy + dy, cx + dx):
            refresh(cy + dy, cx + dx)
    for _ in range(n - 1):
        for slot in [k for k in slots.best if grid[k] >= 0 or not inside(*k)]:
            slots.drop(slot)
        best = None
        for (y, x), k, c_k, c_other, count in slots.candidates(used):
            if fixed:  # fill where most neighbours are known
                score = -float(count) * 1e12 + c_k
            else:  # best match clearly better than the runner-up (another piece); surer with more neighbours
                score = ((c_k + 1.0) / (c_other + 1.0)) ** count
            if best is None or score < best[0]:
                best = (score, y, x, k)
        if best is None:
            raise PatchcryptError("the jigsaw ran out of places")
        _, y, x, k = best
        grid[y, x] = k
        used[k // s] = True
        box[:] = [min(box[0], y), max(box[1], y), min(box[2], x), max(box[3], x)]
        slots.drop((y, x))
        for dy, dx in _OFFSETS:
            ny, nx = y + dy, x + dx
            if inside(ny, nx) and grid[ny, nx] < 0:
                refresh(ny, nx)
    return grid[box[0]:box[0] + gh, box[2]:box[2] + gw]


__all__ = ["State", "state_list", "transform", "COLOUR_ORDERS", "seed_order", "grow"]
