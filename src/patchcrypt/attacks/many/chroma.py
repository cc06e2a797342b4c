"""Chroma of a 4:2:0 composite (etc-gray) placed by the recovered luma.

With 4:2:0 chroma, an M×M chroma block (Cb or Cr) covers the image area of a 2×2 group of luma blocks. Once
the luma is placed, each ciphertext chroma block is matched to the area whose luma it follows: edges of the
chroma and of the luma (2× averaged) co-occur, so the correlation of their gradient magnitudes, averaged over
the N images under the key, is high at the block's true area and dihedral state (a gradient magnitude is
blind to the block's inversion), and so is the squared correlation of the values, image by image. An
assignment puts two blocks on each area. Which of the two is Cb and which Cr, and each one's inversion,
are then read off a Gaussian model of (luma, Cb, Cr) triples fitted on the public images' composites; the
same model also says whether the luma's own inversion should flip.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from .jigsaw import State, transform

# images whose features the matching and the Cb/Cr model look at (their cost grows with them)
CHROMA_IMAGES = 2000
# entries of one per-image correlation table (images × pieces × areas) held at a time
_SCORE_BUFFER = 1 << 24
# (luma, Cb, Cr) triples of public images the Cb/Cr model is fitted on, at most
_MODEL_TRIPLES = 1 << 21


def _grad(x: np.ndarray) -> np.ndarray:
    """Gradient magnitude of (..., M, M) float arrays on the (M-1)×(M-1) interior grid."""
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    return np.sqrt(dx * dx + dy * dy)


def _per_image(x: np.ndarray) -> np.ndarray:
    """(..., N, R, C) float arrays → (N, ..., R·C) float32, each image's block centred and scaled to about unit
    norm (a flat block stays near zero), so a dot product is that image's correlation."""
    f = x.reshape(*x.shape[:-2], -1).astype(np.float32)
    f = f - f.mean(-1, keepdims=True)
    f = f / (np.linalg.norm(f, axis=-1, keepdims=True) + 1.0)
    return np.moveaxis(f, -2, 0)


def luma_areas(luma: np.ndarray, m: int) -> np.ndarray:
    """(N, H, W) luma → (A, N, M, M) float32: each chroma block's area (2M×2M luma pixels, 2×2 means), areas in
    row-major order over the (H/2M)×(W/2M) chroma grid."""
    n, h, w = luma.shape
    half = luma.astype(np.float32).reshape(n, h // 2, 2, w // 2, 2).mean((2, 4))
    gh, gw = h // (2 * m), w // (2 * m)
    return half.reshape(n, gh, m, gw, m).transpose(1, 3, 0, 2, 4).reshape(gh * gw, n, m, m)


def match_areas(pieces: np.ndarray, areas: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Assign 2A chroma pieces (2A, N, M, M) uint8 to A luma areas (A, N, M, M), two per area.

    The score of a piece in a dihedral state at an area, summed over two cues, each one image at a time so
    that no image's contrast outweighs the others: the mean over images of the squared correlation of the
    values (a chroma edge beside a luma edge, whatever its sign or the piece's inversion) and the mean
    correlation of the gradient magnitudes.
    Returns (area per piece (2A,), dihedral state per piece (2A,), score table (2A, 8, A)).
    """
    from scipy.optimize import linear_sum_assignment

    b, a, n = len(pieces), len(areas), pieces.shape[1]
    score = np.zeros((b, 8, a), np.float32)
    step = max(1, _SCORE_BUFFER // (b * a))                  # images at a time: bounded (N, 2A, A) tables
    for i in range(0, n, step):
        ar = areas[:, i:i + step]
        lum, lum_g = _per_image(ar).transpose(0, 2, 1), _per_image(_grad(ar)).transpose(0, 2, 1)  # (n, L, A)
        for rot in range(8):
            cand = transform(pieces[:, i:i + step, :, :, None].astype(np.float32), State(rot))[..., 0]
            r = np.matmul(_per_image(cand), lum)             # (n, 2A, A): per-image correlations
            score[:, rot] += (r * r).sum(0) + np.matmul(_per_image(_grad(cand)), lum_g).sum(0)
    score /= n
    best = score.max(1)                                      # (2A, A)
    rows, cols = linear_sum_assignment(-np.concatenate([best, best], 1))
    area = np.empty(b, np.int64)
    area[rows] = cols % a
    return area, score[np.arange(b), :, area].argmax(1), score


def ycc_model(comp_pub: np.ndarray, w: int) -> Tuple[np.ndarray, np.ndarray]:
    """Mean (3,) and inverse covariance (3, 3) of (2×2-mean luma, Cb, Cr) triples of public composites
    (P, H, W + W/2, 1) uint8."""
    h = comp_pub.shape[1]
    comp_pub = comp_pub[: max(2, _MODEL_TRIPLES // (h * w // 4))]   # enough triples for a 3x3 covariance
    p = len(comp_pub)
    y = comp_pub[:, :, :w, 0].astype(np.float64).reshape(p, h // 2, 2, w // 2, 2).mean((2, 4))
    cb = comp_pub[:, : h // 2, w:, 0].astype(np.float64)
    cr = comp_pub[:, h // 2:, w:, 0].astype(np.float64)
    t = np.stack([y.reshape(-1), cb.reshape(-1), cr.reshape(-1)], 1)
    return t.mean(0), np.linalg.inv(np.cov(t.T) + 1e-3 * np.eye(3))


def _nll(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, mu: np.ndarray, prec: np.ndarray) -> float:
    """Summed Gaussian negative log-likelihood (up to a constant) of triples given as equal-shaped arrays."""
    t = np.stack([y.reshape(-1), cb.reshape(-1), cr.reshape(-1)], 1) - mu
    return float(0.5 * np.einsum("ij,jk,ik->", t, prec, t))


def assign_components(areas: np.ndarray, pair: np.ndarray, mu: np.ndarray, prec: np.ndarray,
                      luma_inverted: bool) -> Tuple[np.ndarray, float]:
    """For each area, the order of its two placed chroma pieces and their inversions.

    Args:
        areas: (A, N, M, M) float luma areas; pair: (A, 2, N, M, M) uint8, the two pieces of each area in
            their dihedral state; luma_inverted: read the luma as 255 − v.
    Returns ((A, 3) int: [index of the Cb piece (0/1), Cb inverted, Cr inverted], summed cost).
    """
    out = np.zeros((len(areas), 3), np.int64)
    total = 0.0
    for a in range(len(areas)):
        y = 255.0 - areas[a] if luma_inverted else areas[a]
        best = None
        for first in (0, 1):
            for inv_b in (0, 1):
                for inv_r in (0, 1):
                    cb = pair[a, first].astype(np.float64)
                    cr = pair[a, 1 - first].astype(np.float64)
                    cost = _nll(y, 255.0 - cb if inv_b else cb, 255.0 - cr if inv_r else cr, mu, prec)
                    if best is None or cost < best[0]:
                        best = (cost, first, inv_b, inv_r)
        total += best[0]
        out[a] = best[1:]
    return out, total


def place_chroma(blocks: np.ndarray, ids: np.ndarray, luma: np.ndarray, comp_pub: np.ndarray, m: int
                 ) -> Tuple[Dict[Tuple[int, int], Tuple[int, State]], bool, Dict[str, float]]:
    """The chroma part of the composite from the placed luma.

    Args:
        blocks: (B_all, N, M, M, 1) uint8 ciphertext blocks; ids: (2A,) the chroma ones.
        luma: (N, H, W) uint8, the luma decrypted so far; comp_pub: (P, H, W + W/2, 1) public composites.
    Returns ({(row, col) chroma cell of the (H, W/2) chroma region, in blocks: (block id, state)}, whether
    the luma's inversion should flip, figures for the attack's info).
    """
    k = min(len(luma), CHROMA_IMAGES)
    n, h, w = luma.shape
    gw = w // (2 * m)
    areas = luma_areas(luma[:k], m)
    pieces = blocks[ids, :k, :, :, 0]
    area, rot, corr = match_areas(pieces, areas)
    pair = np.empty((len(areas), 2) + pieces.shape[1:], np.uint8)
    members = [[] for _ in range(len(areas))]
    for i in range(len(ids)):
        members[area[i]].append(i)
        pair[area[i], len(members[area[i]]) - 1] = transform(pieces[i][..., None], State(int(rot[i])))[..., 0]
    mu, prec = ycc_model(comp_pub, w)
    choice = {inv: assign_components(areas, pair, mu, prec, inv) for inv in (False, True)}
    flip = choice[True][1] < choice[False][1]
    comps = choice[flip][0]
    cells: Dict[Tuple[int, int], Tuple[int, State]] = {}
    for a in range(len(areas)):
        r, c = divmod(a, gw)
        first, inv_b, inv_r = (int(v) for v in comps[a])
        cb, cr = members[a][first], members[a][1 - first]
        cells[(r, c)] = (int(ids[cb]), State(int(rot[cb]), bool(inv_b)))
        cells[(h // (2 * m) + r, c)] = (int(ids[cr]), State(int(rot[cr]), bool(inv_r)))
    info = {"chroma_match_score": float(corr.max((1, 2)).mean()), "chroma_images": k}
    return cells, bool(flip), info


def chroma_blocks_right(plain: np.ndarray, candidates: np.ndarray, m: int, tolerance: float = 1.0) -> float:
    """Share of chroma blocks right in 4:2:0 decryptions, up to the whole-image state (a figure of the score).

    Over the 16 whole-image states that keep the colour order (dihedral × inversion), the one whose luma is
    closest to the truth is taken; an M×M block of the Cb or Cr plane of one image is right when its mean
    absolute error is at most ``tolerance`` levels (the RGB round trip of 4:2:0 keeps a right block within
    1 level on photos; a block moved elsewhere in its own image is within 1 level about one time in five).

    Args: plain, candidates: (N, H, W, 3) uint8, the truth and the attacker's decryptions.
    """
    from ...ciphers.etc_gray import to_composite
    from ..globalstate import GLOBAL_STATES, apply_state

    true = to_composite(plain, "420", False)[..., 0].astype(np.int16)
    w = plain.shape[2]
    best = None
    for s in GLOBAL_STATES:
        if s.colour != 0:
            continue
        got = apply_state(candidates, s)
        if got.shape != plain.shape:
            continue
        comp = to_composite(got, "420", False)[..., 0].astype(np.int16)
        err = np.abs(comp[:, :, :w] - true[:, :, :w]).mean()
        if best is None or err < best[0]:
            best = (err, comp)
    n, h = plain.shape[:2]
    diff = np.abs(best[1][:, :, w:] - true[:, :, w:]).astype(np.float32)
    per = diff.reshape(n, h // m, m, w // 2 // m, m).mean((2, 4))
    return float((per <= tolerance).mean())


__all__ = ["place_chroma", "chroma_blocks_right", "match_areas", "luma_areas", "ycc_model", "assign_components",
           "CHROMA_IMAGES"]
