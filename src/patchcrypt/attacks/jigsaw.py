"""Jigsaw-puzzle attack (Chuman, Kurihara, Kiya; extended solver): reassemble the blocks of one image.

Blocks are pieces; a piece may have been rotated/flipped (8 states), negative-positive transformed (2) and
colour-shuffled (6), as the scheme allows: up to 96 states. For every piece in every state the four edges
and their first-order predictions (2·edge − next row) are precomputed, so the dissimilarity of two pieces
side by side is a prediction error in both directions (in the spirit of Gallagher's MGC, with a squared
error). A greedy placer grows one connected assembly from the most confident matches, keeping it inside the
image's block grid. Vectorised over all pieces and states; 196 pieces × 96 states at 224×224 in seconds.

The result is determined up to one global state (the whole image rotated, flipped, negated or
colour-shuffled). An attacker resolves it by looking at the few candidates; for scoring, the candidate
closest to the plain image is taken, as the literature scores jigsaw attacks.
"""

from __future__ import annotations

import time
from typing import AbstractSet, Dict, List, Optional, Tuple, Union

import numpy as np

from ..errors import PatchcryptError
from ..metrics import ssim
from .base import AttackResult, require, scheme_steps
from .metrics import jigsaw_scores

COLOUR_ORDERS = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]


# The per-block states the solver models; any other keyed step changes values inside a block.
STATE_STEPS = frozenset({"BS", "RF", "NP", "CS"})


def states_for(scheme: Union[str, AbstractSet[str]]) -> List[Tuple[int, bool, Tuple[int, int, int]]]:
    """(dihedral state 0..7, negated, colour order) combinations the scheme (a name or its step symbols) can
    produce per block."""
    steps = scheme_steps(scheme) if isinstance(scheme, str) else set(scheme)
    rf = range(8) if "RF" in steps else [0]
    neg = [False, True] if "NP" in steps else [False]
    cs = COLOUR_ORDERS if "CS" in steps else [(0, 1, 2)]
    return [(r, n, c) for r in rf for n in neg for c in cs]


def _transform(blocks: np.ndarray, state) -> np.ndarray:
    """Apply one state to (n, M, M, C) blocks (axes 1, 2 spatial)."""
    r, neg, order = state
    out = np.rot90(blocks, r % 4, axes=(1, 2))
    if r >= 4:
        out = out[:, :, ::-1]
    if neg:
        out = 255.0 - out
    return out[..., list(order)] if out.shape[-1] == 3 else out


def _edges(variants: np.ndarray) -> Dict[str, np.ndarray]:
    """Edges and predictions of (V, M, M, C) blocks, each flattened to (V, M·C)."""
    v = variants
    flat = lambda a: a.reshape(len(v), -1)  # noqa: E731
    return {"top": flat(v[:, 0]), "top_pred": flat(2 * v[:, 0] - v[:, 1]),
            "bottom": flat(v[:, -1]), "bottom_pred": flat(2 * v[:, -1] - v[:, -2]),
            "left": flat(v[:, :, 0]), "left_pred": flat(2 * v[:, :, 0] - v[:, :, 1]),
            "right": flat(v[:, :, -1]), "right_pred": flat(2 * v[:, :, -1] - v[:, :, -2])}


def solve(image: np.ndarray, block_size: int, states, restarts: int = 6) -> Tuple[np.ndarray, np.ndarray]:
    """Reassemble one (H, W, 3) image. Returns piece (gh, gw) and state index (gh, gw) per grid position.

    The greedy growth is started from ``restarts`` seed pieces (the ones with the most confident best
    match); the assembly with the lowest total dissimilarity between neighbours is kept.
    """
    h, w, c = image.shape
    m = block_size
    if h % m or w % m:
        raise PatchcryptError(f"image size {h}x{w} is not a multiple of the block size {m}")
    gh, gw = h // m, w // m
    n, s = gh * gw, len(states)
    pieces = image.astype(np.float32).reshape(gh, m, gw, m, c).transpose(0, 2, 1, 3, 4).reshape(n, m, m, c)
    variants = np.stack([_transform(pieces, st) for st in states], axis=1).reshape(n * s, m, m, c)
    e = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in _edges(variants).items()}
    sq = {k: (v * v).sum(1) for k, v in e.items()}

    def cost_to(placed_var: int, side: str) -> np.ndarray:
        """Dissimilarity of every variant placed on ``side`` of ``placed_var`` (vector over variants)."""
        a_edge, a_pred, b_edge, b_pred = {
            "right": ("right", "right_pred", "left", "left_pred"),
            "left": ("left", "left_pred", "right", "right_pred"),
            "below": ("bottom", "bottom_pred", "top", "top_pred"),
            "above": ("top", "top_pred", "bottom", "bottom_pred")}[side]
        # ||a_pred - b||² + ||b_pred - a||², expanded so the work is two matrix-vector products
        d1 = (a := e[a_pred][placed_var]) @ a - 2 * e[b_edge] @ a + sq[b_edge]
        d2 = sq[b_pred] - 2 * e[b_pred] @ e[a_edge][placed_var] + sq[a_edge][placed_var]
        return d1 + d2

    # seeds: pieces whose best right/below match is most clearly better than the runner-up
    conf = np.zeros(n)
    for side in ("right", "below"):
        for p in range(n):
            cst = cost_to(p * s, side).reshape(n, s).min(1)
            cst[p] = np.inf
            two = np.partition(cst, 1)[:2]
            conf[p] += (two[0] + 1.0) / (two[1] + 1.0)
    best = None
    for seed in np.argsort(conf)[:restarts]:
        region = _grow(int(seed), n, s, gh, gw, cost_to)
        total = _total_cost(region, cost_to)
        if best is None or total < best[0]:
            best = (total, region)
    region = best[1]
    return region // s, region % s


def _total_cost(region: np.ndarray, cost_to) -> float:
    total = 0.0
    for y in range(region.shape[0]):
        for x in range(region.shape[1]):
            if x + 1 < region.shape[1]:
                total += float(cost_to(int(region[y, x]), "right")[region[y, x + 1]])
            if y + 1 < region.shape[0]:
                total += float(cost_to(int(region[y, x]), "below")[region[y + 1, x]])
    return total


def _grow(seed: int, n: int, s: int, gh: int, gw: int, cost_to) -> np.ndarray:
    """Greedy growth from ``seed`` (in state 0, which fixes the global frame); variant index per grid cell."""
    size = 2 * max(gh, gw) + 1
    grid_var = -np.ones((size, size), dtype=np.int64)
    cy = cx = size // 2
    used = np.zeros(n, dtype=bool)
    grid_var[cy, cx] = seed * s
    used[seed] = True
    rows, cols = [cy], [cx]
    slot_cost: Dict[Tuple[int, int], np.ndarray] = {}
    slot_count: Dict[Tuple[int, int], int] = {}
    offsets = {(0, 1): "right", (0, -1): "left", (1, 0): "below", (-1, 0): "above"}

    def refresh(y: int, x: int) -> None:
        total, count = np.zeros(n * s, dtype=np.float32), 0
        for (dy, dx), side in offsets.items():
            ny, nx = y - dy, x - dx          # neighbour such that this slot is on its `side`
            if 0 <= ny < size and 0 <= nx < size and grid_var[ny, nx] >= 0:
                total += cost_to(int(grid_var[ny, nx]), side)
                count += 1
        slot_cost[(y, x)] = total / count
        slot_count[(y, x)] = count

    def inside(y: int, x: int) -> bool:
        return (max(rows + [y]) - min(rows + [y]) < gh) and (max(cols + [x]) - min(cols + [x]) < gw)

    for (dy, dx) in offsets:
        if inside(cy + dy, cx + dx):
            refresh(cy + dy, cx + dx)
    for _ in range(n - 1):
        best = None
        mask = np.repeat(used, s)
        for (y, x), cost in list(slot_cost.items()):
            if grid_var[y, x] >= 0 or not inside(y, x):
                del slot_cost[(y, x)]
                continue
            cc = np.where(mask, np.inf, cost)
            two = np.partition(cc, 1)[:2] if len(cc) > 1 else np.array([cc.min(), np.inf])
            # confidence: best match clearly better than the runner-up (another piece, or another state)
            k = int(np.argmin(cc))
            others = np.where(np.arange(n * s) // s == k // s, np.inf, cc)
            # slots with more placed neighbours are surer: their ratio counts once per neighbour
            score = ((cc[k] + 1.0) / (others.min() + 1.0)) ** slot_count[(y, x)]
            if best is None or score < best[0]:
                best = (score, y, x, k)
            del two
        if best is None:
            raise PatchcryptError("jigsaw solver ran out of slots")
        _, y, x, k = best
        grid_var[y, x] = k
        used[k // s] = True
        rows.append(y)
        cols.append(x)
        del slot_cost[(y, x)]
        for (dy, dx) in offsets:
            ny, nx = y + dy, x + dx
            if 0 <= ny < size and 0 <= nx < size and grid_var[ny, nx] < 0 and inside(ny, nx):
                refresh(ny, nx)
    y0, x0 = min(rows), min(cols)
    return grid_var[y0:y0 + gh, x0:x0 + gw]


def assemble(image: np.ndarray, block_size: int, states, piece: np.ndarray, state: np.ndarray) -> np.ndarray:
    h, w, c = image.shape
    m = block_size
    gh, gw = piece.shape
    pieces = image.reshape(gh, m, gw, m, c).transpose(0, 2, 1, 3, 4).reshape(-1, m, m, c)
    out = np.empty((gh, gw, m, m, c), dtype=np.uint8)
    for y in range(gh):
        for x in range(gw):
            out[y, x] = _transform(pieces[piece[y, x]][None].astype(np.float32), states[state[y, x]])[0]
    return out.transpose(0, 2, 1, 3, 4).reshape(h, w, c)


def _global_candidates(img: np.ndarray, piece: np.ndarray, states):
    """The image and placement under every global state (all 8 dihedral states on square grids, the 4 that
    keep the shape otherwise; colour orders on colour images)."""
    for r in (range(8) if img.shape[0] == img.shape[1] else (0, 2, 4, 6)):
        g_img = np.rot90(img, r % 4)
        g_piece = np.rot90(piece, r % 4)
        if r >= 4:
            g_img, g_piece = g_img[:, ::-1], g_piece[:, ::-1]
        for neg in (False, True):
            for order in (COLOUR_ORDERS if img.shape[2] == 3 else [(0,)]):
                v = 255 - g_img if neg else g_img
                yield np.ascontiguousarray(v[..., list(order)]), np.ascontiguousarray(g_piece)


def why_not_jigsaw(steps: AbstractSet[str]) -> Optional[str]:
    """None when the solver models every step in ``steps``, else the reason it does not apply."""
    if "BS" not in steps:
        return "there are no scrambled blocks to reassemble"
    others = sorted(set(steps) - STATE_STEPS)
    if others:
        return (f"values inside each block are shuffled or changed individually ({', '.join(others)}), so block "
                "edges carry no match")
    return None


def jigsaw_attack(plain: np.ndarray, encrypted: np.ndarray, scheme: str, block_size: int,
                  block_source: Optional[np.ndarray] = None, steps: Optional[AbstractSet[str]] = None) -> AttackResult:
    """Solve every encrypted image uint8 (N, H, W, C); ``block_source[k]`` = plain block of encrypted block k
    (for the Dc/Nc/Lc scores; without it only SSIM/PSNR). ``steps``: the scheme's step symbols (default: read
    off the registered scheme ``scheme``)."""
    steps = scheme_steps(scheme) if steps is None else set(steps)
    reason = why_not_jigsaw(steps)
    require(reason is None, "jigsaw", scheme, reason or "")
    states = states_for(steps)
    t0 = time.perf_counter()
    recs, scores = [], []
    for p_img, e_img in zip(plain, encrypted):
        piece, state = solve(e_img, block_size, states)
        img = assemble(e_img, block_size, states, piece, state)
        best = None
        for cand, cand_piece in _global_candidates(img, piece, states):
            s_val = ssim(p_img, cand)
            if best is None or s_val > best[0]:
                best = (s_val, cand, cand_piece)
        _, cand, cand_piece = best
        gh, gw = cand_piece.shape
        if block_source is not None:
            scores.append(jigsaw_scores(block_source[cand_piece.reshape(-1)], gh, gw))
        recs.append(cand)
    seconds = time.perf_counter() - t0
    extra = {k: float(np.mean([s[k] for s in scores])) for k in ("dc", "nc", "lc")} if scores else {}
    extra.update(states=len(states), seconds=seconds, seconds_per_image=seconds / len(plain))
    return AttackResult("jigsaw", scheme, plain, encrypted, np.stack(recs), extra)
