"""The global stage of the many-image attack: what no edge can tell (one rotation/flip of the whole image, a
colour order, an inversion), chosen by matching statistics of the decryptions to public plain images.

The statistics are the mean image, per-channel value histograms, channel correlations, and the mean
horizontal and vertical differences; each candidate state is scored by z-scores against the public images'.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from .result import WorkMap


def global_transform(arr: np.ndarray, rot: int, order) -> np.ndarray:
    """A whole-image dihedral state then colour order on (..., H, W, C) arrays."""
    out = np.rot90(arr, rot % 4, axes=(-3, -2))
    if rot >= 4:
        out = out[..., :, ::-1, :]
    if out.shape[-1] == 3:
        out = out[..., list(order)]
    return np.ascontiguousarray(out)


def features(x: np.ndarray) -> Dict[str, np.ndarray]:
    """Per-image statistics of (N, H, W, C) uint8: mean image, channel histograms, channel correlations."""
    xf = x.astype(np.float32)
    c = x.shape[3]
    codes = (np.arange(len(x))[:, None, None] * c + np.arange(c)[None, None, :]) * 16 + \
        (x.reshape(len(x), -1, c) >> 4)
    hist = np.bincount(codes.reshape(-1), minlength=len(x) * c * 16).reshape(len(x), c, 16).astype(np.float64)
    hist /= x.shape[1] * x.shape[2]
    flat = xf.reshape(len(x), -1, c)
    cen = flat - flat.mean(1, keepdims=True)
    cov = np.einsum("npa,npb->nab", cen, cen) / flat.shape[1]
    return {"mean": xf, "hist": hist, "cov": cov, **gradients(xf)}


def gradients(mean: np.ndarray) -> Dict[str, np.ndarray]:
    """Horizontal and vertical differences of (..., H, W, C) arrays. Of a mean image they are the mean
    differences, which in natural images are small and steady: weighted by their own (small) variance they
    tell a left–right mirror far better than the mean image does."""
    return {"dx": mean[..., :, 1:, :] - mean[..., :, :-1, :], "dy": mean[..., 1:, :, :] - mean[..., :-1, :, :]}


def inversion(inv) -> np.ndarray:
    """XOR mask over the channel axis for a per-channel inversion tuple."""
    return np.where(np.asarray(inv, dtype=bool), 255, 0).astype(np.uint8)


def transform_features(f: Dict[str, np.ndarray], rot: int, order, inv) -> Dict[str, np.ndarray]:
    """Features of the images after a global state (inv: one bool per output channel)."""
    mean = global_transform(f["mean"], rot, order)
    hist, cov = f["hist"], f["cov"]
    if mean.shape[-1] == 3:
        hist = hist[..., list(order), :]
        cov = cov[..., list(order), :][..., list(order)]
    flip = np.asarray(inv, dtype=bool)
    if flip.any():
        mean = np.where(flip, 255.0 - mean, mean)
        hist = np.where(flip[:, None], hist[..., ::-1], hist)
        sgn = np.where(flip, -1.0, 1.0)
        cov = cov * sgn[:, None] * sgn[None, :]
    return {"mean": mean, "hist": hist, "cov": cov, **gradients(mean)}


def summary(x: np.ndarray, chunk: int = 256) -> Dict[str, np.ndarray]:
    """Means over images of the features (and their variances, for z-scores)."""
    sums, sq, n = {}, {}, 0
    for a in range(0, len(x), chunk):
        f = features(x[a:a + chunk])
        for k, v in f.items():
            sums[k] = sums.get(k, 0) + v.sum(0)
            sq[k] = sq.get(k, 0) + (v.astype(np.float64) ** 2).sum(0)
        n += len(f["mean"])
    return {k: sums[k] / n for k in sums} | {k + "_var": sq[k] / n - (sums[k] / n) ** 2 for k in sums} | {"n": n}


FEATURES = ("mean", "hist", "cov", "dx", "dy")


# values of the public images whose statistics the global stage compares with (whole images, evenly spaced):
# every image of 32 x 32 sets of several thousand, 398 photos at 224 x 224
GLOBAL_PUBLIC_VALUES = 60_000_000


def images_within(shape, values: int) -> np.ndarray:
    """Indices of images (shape (P, H, W, C)) holding at most ``values`` values: all of them if they fit,
    else that many values' worth of whole images, evenly spaced (at least two)."""
    p, per_image = int(shape[0]), int(np.prod(shape[1:]))
    if p * per_image <= values:
        return np.arange(p)
    return np.unique(np.linspace(0, p - 1, max(2, values // per_image)).round().astype(np.int64))


def public_sample(shape) -> np.ndarray:
    """Indices of the public images the global stage summarises (:data:`GLOBAL_PUBLIC_VALUES`)."""
    return images_within(shape, GLOBAL_PUBLIC_VALUES)


def choose_global(work: WorkMap, y: np.ndarray, public: np.ndarray, rots, orders, inverts):
    """The global state whose decryption statistics are closest to the public images' (a bounded sample of
    them: :func:`public_sample`); ranked candidates."""
    pub = summary(public[public_sample(public.shape)])
    cur = summary(apply_chunks(work, y))
    n, p = cur["n"], pub["n"]
    ranked, dx_score = [], {}
    for rot in rots:
        for order in orders:
            for inv in inverts:
                f = transform_features({"mean": cur["mean"][None], "hist": cur["hist"][None],
                                         "cov": cur["cov"][None]}, rot, order, inv)
                score = 0.0
                for k in FEATURES:
                    var = pub[k + "_var"] * (1.0 / n + 1.0 / p) + 1e-6
                    term = float((((f[k][0] - pub[k]) ** 2) / var).mean())
                    score += term
                    if k == "dx":
                        dx_score[(rot, tuple(order), inv)] = term
                ranked.append((score, (rot, tuple(order), inv)))
    ranked.sort(key=lambda r: r[0])
    best = ranked[0][1]
    # the left-right mirror changes only the odd part of the statistics; the mean horizontal differences
    # carry it, the rest only adds noise to that one choice
    partner = ((best[0] + 4) % 8, best[1], best[2])
    if partner in dx_score and dx_score[partner] < dx_score[best]:
        best = partner
    return best, ranked


def apply_chunks(work: WorkMap, y: np.ndarray, chunk: int = 512) -> np.ndarray:
    return np.concatenate([work.apply(y[a:a + chunk]) for a in range(0, len(y), chunk)])


# -- is anything shared across the images? ---------------------------------------------------------------
# Coordinates the sharing test samples, the fewest images it decides on (half on each side), and the split-half
# agreements below which nothing counts as shared: of the pairs' correlations (linear value maps: XOR,
# addition, flips keep them up to a sign) and of how often the pair is equal (kept by any one substitution
# table). `patchcrypt attack many ... --json` prints both as sharing_r and sharing_equal_r.
# 100 images, not fewer: at 30 a one-key substitution table per coordinate (examples/value_schemes.py:
# SubstImage) can agree no more than per-image keys do (equal_r 0.019 on 30 CIFAR-10 images under one key,
# 0.069 or more on 100: benchmarks/sharing_floor.py), and a false stop would rate a one-key scheme by its
# ciphertext.
SHARING_COORDS = 1024
SHARING_MIN_IMAGES = 100
SHARING_MIN_R = 0.03
SHARING_MIN_EQUAL_R = 0.02


def sharing(y: np.ndarray, m: int, coords: int = SHARING_COORDS, seed: int = 0) -> Dict[str, float]:
    """Whether the ciphertexts ``y`` (N, H, W, C) uint8 share anything across images beyond their block
    structure: the split-half agreement of statistics of coordinate pairs in different M×M blocks.

    Under one key every ciphertext coordinate has the same source (and value map) in every image, so a
    statistic over the images of a pair of coordinates (their correlation; how often they are equal)
    estimates one quantity that differs from pair to pair (plain neighbours near 1, far pairs lower):
    computed on two disjoint halves of the images, the two estimates agree. Under per-image keys every
    pair in different blocks is a fresh draw of sources in every image: the pairs are alike, and the
    halves agree only by chance. Pairs at the same in-block position are left out (a per-image key shared
    by the blocks of one image, such as one pixel shuffle, ties them within each image, not across images).

    Returns ``r`` and ``equal_r`` (Pearson correlation of the two halves' figures over the sampled pairs),
    ``null`` (``r`` with the second half's coordinates relabelled at random: what chance gives),
    ``coords``, ``images``.
    """
    n, h, w, c = y.shape
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(h * w * c, min(coords, h * w * c), replace=False))
    row, col = idx // (w * c), (idx // c) % w
    blk = (row // m) * (w // m) + col // m
    inner = ((row % m) * m + col % m) * c + idx % c
    pairs = np.triu((blk[:, None] != blk[None, :]) & (inner[:, None] != inner[None, :]), 1)
    order = rng.permutation(n)
    halves = (order[:n // 2], order[n // 2:2 * (n // 2)])
    flat = y.reshape(n, -1)[:, idx]

    def corr(rows: np.ndarray) -> np.ndarray:
        x = flat[rows].astype(np.float64)
        x -= x.mean(0)
        x /= np.sqrt((x * x).sum(0)) + 1e-9
        return x.T @ x

    def equal(rows: np.ndarray) -> np.ndarray:
        return sum((flat[k][:, None] == flat[k][None, :]).astype(np.float32) for k in rows)

    def agree(u: np.ndarray, v: np.ndarray) -> float:
        r = np.corrcoef(u, v)[0, 1] if u.std() > 0 and v.std() > 0 else 0.0
        return float(r)

    a, b = (corr(h_) for h_ in halves)
    ea, eb = (equal(h_) for h_ in halves)
    shuffled = rng.permutation(len(idx))
    return {"r": agree(a[pairs], b[pairs]), "equal_r": agree(ea[pairs], eb[pairs]),
            "null": agree(a[pairs], b[np.ix_(shuffled, shuffled)][pairs]), "coords": int(len(idx)),
            "images": int(2 * (n // 2))}


def nothing_shared(s: Dict[str, float]) -> bool:
    """Whether :func:`sharing` figures show nothing shared across the images (per-image keys); never on fewer
    than :data:`SHARING_MIN_IMAGES` images."""
    return s["images"] >= SHARING_MIN_IMAGES and s["r"] < SHARING_MIN_R and s["equal_r"] < SHARING_MIN_EQUAL_R


__all__ = ["global_transform", "features", "inversion", "transform_features", "summary", "FEATURES", "choose_global",
           "sharing", "nothing_shared", "images_within", "public_sample", "GLOBAL_PUBLIC_VALUES", "SHARING_MIN_IMAGES", "SHARING_MIN_R", "SHARING_MIN_EQUAL_R",
           "apply_chunks"]
