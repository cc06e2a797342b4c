"""The many-image attack on pixel-based encryption (pe): every value its own inversion bit and every pixel
its own colour order, the same in every image; grown pixel by pixel from correlations with decided
neighbours over the images."""

from __future__ import annotations

import heapq
from typing import List, Tuple

import numpy as np

from ...errors import PatchcryptError
from .jigsaw import COLOUR_ORDERS
from .result import ManyImageResult, WorkMap
from .statistics import choose_global, global_transform, inversion


def _neighbours(h: int, w: int):
    """Pairs of 4-adjacent pixel indices (a, b), row-major flat pixel numbering."""
    idx = np.arange(h * w).reshape(h, w)
    return np.concatenate([np.stack([idx[:, :-1].ravel(), idx[:, 1:].ravel()], 1),
                           np.stack([idx[:-1].ravel(), idx[1:].ravel()], 1)])


def attack_pe(y: np.ndarray, public: np.ndarray, scheme: str, plain_shape, say) -> ManyImageResult:
    """Pixel-based schemes (pe): every value its own inversion bit and every pixel its own colour order, the same in every image.

    Across the N images, a value correlates with the values of the neighbouring pixels: strongly and
    positively with the same colour channel when neither is inverted. Growing from one pixel in a fixed
    frame, each next pixel takes the colour order and inversion bits that best agree (by correlation over
    the images) with its already decided neighbours; the one global colour order and inversion left is
    settled by public statistics.
    """
    h, w, c = plain_shape
    if y.shape[1:] != (h, w, c) or c != 3:
        raise PatchcryptError(f"{scheme} ciphertexts must have the plain images' shape and 3 channels")
    n = len(y)
    x = y.reshape(n, h * w, 3).astype(np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    # the 48 (order, flips) states of a pixel as signed channel selections: value k = s_k·v[order[k]]
    states = [(o, f) for o in COLOUR_ORDERS for f in range(8)]
    order_of = np.array([s[0] for s in states])          # (48, 3)
    sign_of = np.array([[1 - 2 * ((s[1] >> k) & 1) for k in range(3)] for s in states], dtype=np.float64)
    # decoded pixel under state t: plain channel order[k] ← s_k·v_k, i.e. decode = P·diag(s)
    decoded_index = np.argsort(order_of, axis=1)  # plain channel j comes from cipher slot inv_order[j]
    state = -np.ones(h * w, dtype=np.int64)
    dec = np.zeros((n, h * w, 3))
    start = (h // 2) * w + w // 2
    state[start] = 0
    dec[:, start] = _decode(x[:, start], order_of[0], sign_of[0])
    nbr = [[] for _ in range(h * w)]
    for a, b in _neighbours(h, w):
        nbr[a].append(b)
        nbr[b].append(a)
    heap: List[Tuple[float, int]] = []
    for b in nbr[start]:
        heapq.heappush(heap, (0.0, b))
    while heap:
        _, p = heapq.heappop(heap)
        if state[p] >= 0:
            continue
        done = [q for q in nbr[p] if state[q] >= 0]
        ref = dec[:, done].mean(1)                          # (n, 3) plain-frame neighbours
        corr = x[:, p].T @ ref / n                          # corr[slot, plain channel]
        # score of a state: Σ_j s·corr[inv_order[j], j]
        score = (sign_of[np.arange(48)[:, None], decoded_index] * corr[decoded_index, np.arange(3)[None, :]]).sum(1)
        t = int(np.argmax(score))
        state[p] = t
        dec[:, p] = _decode(x[:, p], order_of[t], sign_of[t])
        for q in nbr[p]:
            if state[q] < 0:
                heapq.heappush(heap, (-float(np.sort(score)[-1] - np.sort(score)[-2]), q))
    work = WorkMap(plain_shape)
    G = work.G.reshape(h * w, 3)
    K = work.K.reshape(h * w, 3)
    inv_order = decoded_index[state]                     # (pixels, 3): plain channel j ← slot inv_order[j]
    flips = sign_of[state] < 0                           # per slot
    work.G = np.take_along_axis(G, inv_order, 1).reshape(plain_shape)
    work.K = (np.take_along_axis(np.where(flips, 255, 0), inv_order, 1).astype(np.uint8) ^ K).reshape(plain_shape)
    inverts = [tuple(bool((b >> k) & 1) for k in range(3)) for b in range(8)]
    best, ranked = choose_global(work, y, public, [0], COLOUR_ORDERS, inverts)
    _, order, inv = best
    work.G = global_transform(work.G, 0, order)
    work.K = global_transform(work.K, 0, order) ^ inversion(inv)
    fwd = work.forward()
    return ManyImageResult(scheme, 1, plain_shape, plain_shape, "byte", fwd.g, fwd.m,
                           {"global_margin": float(ranked[1][0] - ranked[0][0])})


def _decode(v: np.ndarray, order: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """(n, 3) cipher slots → (n, 3) plain channels: plain channel order[k] = sign_k · slot k."""
    out = np.empty_like(v)
    out[:, order] = v * sign[None, :]
    return out


__all__ = ["attack_pe"]
