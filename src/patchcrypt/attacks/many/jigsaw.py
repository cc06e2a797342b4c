"""A jigsaw over many images at once: one block order and one state per block, shared by every image.

The pieces are block positions of the ciphertext, each holding the same plain block position of every
image (after the in-block stage, if any). A piece has a state: dihedral (rotation/flip), inversion and a
colour order, as the scheme allows. The dissimilarity of two pieces side by side is a first-order
prediction error across their common edge (2·edge − inner row against the other edge, both ways), summed
over all K images, so with tens of images the right neighbour stands out far more clearly than in a
single-image jigsaw.

Costs are tabulated once per pair of piece *sides* rather than per pair of piece states: side p of piece
i against side q of piece j under a relative colour order, relative inversion and relative reading
direction (squared errors do not change when both pieces get the same colour order or inversion). A state
then only says which side faces which way. A greedy placer grows the assembly from the most confident
matches (as in attacks/jigsaw.py), from a few seeds, keeping the one with the lowest total cost.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from ...errors import PatchcryptError
from ..placement import COLOUR_ORDERS, State, grow, seed_order, state_list, transform

FACES = ("top", "right", "bottom", "left")
# Images used for the jigsaw's edge costs: its cost grows with them, and a few hundred leave no doubt.
JIGSAW_FLOP_BUDGET = 6e10


def _sides(block: np.ndarray) -> List[Tuple[np.ndarray, np.ndarray]]:
    """The four sides (edge, inner row) of (..., M, M, C) blocks, each read clockwise: top, right, bottom, left."""
    b = block
    return [(b[..., 0, :, :], b[..., 1, :, :]),
            (b[..., :, -1, :], b[..., :, -2, :]),
            (b[..., -1, ::-1, :], b[..., -2, ::-1, :]),
            (b[..., ::-1, 0, :], b[..., ::-1, 1, :])]


def _face_tables(m: int, states: List[State]) -> Dict[str, np.ndarray]:
    """For every state and face, which original side (0..3) lies there and whether it reads reversed.

    Faces are read top→bottom (left, right) or left→right (top, bottom); sides clockwise.
    """
    idx = np.arange(m * m).reshape(m, m, 1)
    sides = [s[0][:, 0] for s in _sides(idx)]
    out = {f: np.zeros((len(states), 2), dtype=np.int64) for f in FACES}
    for k, st in enumerate(states):
        t = transform(idx, State(st.rot))[:, :, 0]
        faces = {"top": t[0], "bottom": t[-1], "left": t[:, 0], "right": t[:, -1]}
        for f, seq in faces.items():
            for p, side in enumerate(sides):
                if np.array_equal(seq, side):
                    out[f][k] = (p, 0)
                elif np.array_equal(seq, side[::-1]):
                    out[f][k] = (p, 1)
    return out


class SideCosts:
    """Dissimilarities of every pair of piece sides over K images.

    Args:
        pieces: (n, K, M, M, C) float — piece k of every image.
        colour / negate: whether relative colour orders / inversions occur between pieces.
    """

    def __init__(self, pieces: np.ndarray, colour: bool, negate: bool):
        n, k, m, _, c = pieces.shape
        self.n = n
        x = pieces.astype(np.float32) - 127.5           # centred: an inversion is a sign change
        edge = np.stack([s[0] for s in _sides(x)], axis=1)   # (n, 4, K, M, C)
        inner = np.stack([s[1] for s in _sides(x)], axis=1)
        pred = 2 * edge - inner
        self.orders = COLOUR_ORDERS if (colour and c == 3) else [(0, 1, 2)]
        self.negs = [False, True] if negate else [False]
        fe, fp = edge.reshape(4 * n, -1), pred.reshape(4 * n, -1)
        fe2, fp2 = (fe * fe).sum(1), (fp * fp).sum(1)
        table = np.empty((len(self.orders), len(self.negs), 2, 4 * n, 4 * n), dtype=np.float32)
        for ci, order in enumerate(self.orders):
            for ni, neg in enumerate(self.negs):
                for rev in (0, 1):
                    ge, gp = (edge[..., list(order)], pred[..., list(order)]) if c == 3 else (edge, pred)
                    if rev:
                        ge, gp = ge[..., ::-1, :], gp[..., ::-1, :]
                    if neg:
                        ge, gp = -ge, -gp
                    ge, gp = ge.reshape(4 * n, -1), gp.reshape(4 * n, -1)
                    # ||pred_i − edge_j||² + ||pred_j − edge_i||², as Gram matrices
                    t = fp2[:, None] + (ge * ge).sum(1)[None, :] - 2 * (fp @ ge.T)
                    t += (gp * gp).sum(1)[None, :] + fe2[:, None] - 2 * (fe @ gp.T)
                    table[ci, ni, rev] = t
        self.table = table


class Assembler:
    """Costs between placed variants (piece·S + state) for a set of allowed states."""

    def __init__(self, costs: SideCosts, states: List[State], m: int):
        self.c = costs
        self.states = states
        self.s = len(states)
        self.faces = _face_tables(m, states)
        order_index = {o: i for i, o in enumerate(costs.orders)}
        s = self.s
        self.rel_colour = np.zeros((s, s), dtype=np.int64)
        self.rel_neg = np.zeros((s, s), dtype=np.int64)
        for a, sa in enumerate(states):
            inv = np.argsort(sa.order)
            for b, sb in enumerate(states):
                rel = tuple(int(sb.order[inv[q]]) for q in range(3))
                self.rel_colour[a, b] = order_index.get(rel, 0)
                self.rel_neg[a, b] = int(sa.neg != sb.neg) if len(costs.negs) == 2 else 0

    def pair(self, u: np.ndarray, w: np.ndarray, horizontal: bool) -> np.ndarray:
        """Cost of variant u left of (or above) variant w; broadcasting arrays of variant indices."""
        s = self.s
        iu, su, iw, sw = u // s, u % s, w // s, w % s
        fu = self.faces["right" if horizontal else "bottom"][su]
        fw = self.faces["left" if horizontal else "top"][sw]
        return self.c.table[self.rel_colour[su, sw], self.rel_neg[su, sw], fu[..., 1] ^ fw[..., 1],
                            4 * iu + fu[..., 0], 4 * iw + fw[..., 0]]

    def cost_to(self, placed: int, side: str) -> np.ndarray:
        """Cost of every variant put on ``side`` ('right', 'left', 'below', 'above') of a placed variant."""
        allv = np.arange(self.c.n * self.s)
        if side == "right":
            return self.pair(np.int64(placed), allv, True)
        if side == "left":
            return self.pair(allv, np.int64(placed), True)
        if side == "below":
            return self.pair(np.int64(placed), allv, False)
        return self.pair(allv, np.int64(placed), False)

    def total(self, grid: np.ndarray) -> float:
        """Sum of neighbour costs of a (gh, gw) grid of variants."""
        t = float(self.pair(grid[:, :-1], grid[:, 1:], True).sum()) if grid.shape[1] > 1 else 0.0
        if grid.shape[0] > 1:
            t += float(self.pair(grid[:-1], grid[1:], False).sum())
        return t


def solve(asm: Assembler, gh: int, gw: int, fixed: bool, seeds: int = 4,
          seed_states: Optional[List[int]] = None) -> np.ndarray:
    """(gh, gw) grid of variants (piece·S + state).

    ``fixed``: pieces stay in their own grid cells (no block scrambling) and only states are chosen.
    Free positions: greedy growth from the ``seeds`` most confident pieces in state 0 (which fixes the
    global frame); fixed: growth from the centre piece in each of ``seed_states``. Lowest total cost wins.
    """
    n, s = asm.c.n, asm.s
    if n != gh * gw:
        raise PatchcryptError(f"{n} pieces do not tile a {gh}x{gw} grid")
    home = None
    if fixed:
        home = (gh // 2, gw // 2)
        starts = [(home[0] * gw + home[1]) * s + st for st in (seed_states or [0])]
    else:
        starts = [int(p) * s for p in seed_order(asm.cost_to, n, s)[:seeds]]
    best = None
    for v in starts:
        grid = grow(asm.cost_to, v, n, s, gh, gw, home=home)
        t = asm.total(grid)
        if best is None or t < best[0]:
            best = (t, grid)
    return best[1]


__all__ = ["JIGSAW_FLOP_BUDGET", "SideCosts", "Assembler", "solve", "State", "state_list", "transform", "COLOUR_ORDERS"]
