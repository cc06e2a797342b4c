"""The global state of a many-image decryption, how to score up to it, and how to choose it.

A many-image attack on a shared-key block scheme recovers every image only up to ONE state of the whole
image set that no statistic between neighbouring pixels can tell: a dihedral transform of the whole image
(8: ``k = dihedral % 4`` counter-clockwise quarter turns as ``numpy.rot90``, then a left–right flip when
``dihedral >= 4``, the convention of the RF step in ciphers/steps.py and DESIGN.md §3), an order of the
three colour channels (6, numbered as ``ciphers.steps.COLOUR_ORDERS``: output channel j = input channel
``order[j]``) and an inversion ``v -> 255 - v`` (2). These 96 states are public and a person resolves them
at a glance, so the suite scores an attack *up to* the state (:func:`up_to_global`) and, separately, says
how well the attacker itself picks it (:func:`rank_states`, :func:`rank_of_true`).

Convention: a state is what you *apply to the attacker's output* to get the plain images:
``apply_state(output, s) == plain`` for the right ``s``. On one-channel images the colour order does
nothing: only the 16 combinations of dihedral transform and inversion differ (the 96 states remain valid
descriptors; the 6 colour orders of each are the same state). On non-square images an odd number of
quarter turns swaps H and W, so only the 48 states with an even number keep the shape.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import PatchcryptError
from ..metrics import psnr

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


def _state(state: StateLike) -> GlobalState:
    if isinstance(state, GlobalState):
        return state
    if isinstance(state, (int, np.integer)) and 0 <= int(state) < len(GLOBAL_STATES):
        return GLOBAL_STATES[int(state)]
    raise PatchcryptError(f"not a global state: {state!r} (a GlobalState or an index 0..95)")


def _images(images: np.ndarray, name: str = "images") -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
        raise PatchcryptError(f"{name} must be (N, H, W, C) uint8 with C = 1 or 3, got "
                              f"{images.dtype} {images.shape}")
    return images


def _dihedral(x: np.ndarray, d: int) -> np.ndarray:
    out = np.rot90(x, d % 4, axes=(1, 2))
    return out[:, :, ::-1] if d >= 4 else out


def _undihedral(x: np.ndarray, d: int) -> np.ndarray:
    if d >= 4:
        x = x[:, :, ::-1]
    return np.rot90(x, -(d % 4), axes=(1, 2))


def apply_state(images: np.ndarray, state: StateLike) -> np.ndarray:
    """Apply a global state to (N, H, W, C) uint8 images; (N, W, H, C) after an odd number of quarter turns.

    Returns a new contiguous uint8 array (the input is not changed). C = 1: the colour order is a no-op.
    """
    s, x = _state(state), _images(images)
    out = np.ascontiguousarray(_dihedral(x, s.dihedral))
    if x.shape[3] == 3 and s.colour:  # on a contiguous array: a gather over a strided view is far slower
        out = np.take(out, s.order, axis=3)
    if not s.invert:
        return out
    return np.bitwise_not(out) if np.may_share_memory(out, x) else np.bitwise_not(out, out=out)  # 255-v == ~v


def invert_state(images: np.ndarray, state: StateLike) -> np.ndarray:
    """The exact inverse of :func:`apply_state`: ``invert_state(apply_state(x, s), s) == x``."""
    s, x = _state(state), _images(images)
    if s.invert:
        x = np.bitwise_not(x)
    if x.shape[3] == 3 and s.colour:
        x = np.take(x, np.argsort(s.order), axis=3)
    return np.ascontiguousarray(_undihedral(x, s.dihedral))


def distinct_states(channels: int = 3, shape: Optional[Tuple[int, int]] = None) -> List[int]:
    """Indices of the states that differ on images with ``channels`` channels (96 for 3, 16 for 1 — colour
    order 0 only) and, when ``shape`` = (H, W) is not square, keep that shape (even quarter turns only)."""
    square = shape is None or shape[0] == shape[1]
    return [s.index for s in GLOBAL_STATES
            if (channels == 3 or s.colour == 0) and (square or s.dihedral % 2 == 0)]


def compose(a: StateLike, b: StateLike) -> GlobalState:
    """The state c with ``apply_state(x, c) == apply_state(apply_state(x, b), a)`` (b first, then a)."""
    a, b = _state(a), _state(b)
    d = _DIHEDRAL_COMPOSE[a.dihedral][b.dihedral]
    c = COLOUR_ORDERS.index(tuple(b.order[i] for i in a.order))
    return GlobalState(d, c, a.invert != b.invert)


def inverse(state: StateLike) -> GlobalState:
    """The state that undoes ``state``."""
    s = _state(state)
    d = next(e for e in range(8) if _DIHEDRAL_COMPOSE[e][s.dihedral] == 0)
    return GlobalState(d, COLOUR_ORDERS.index(tuple(int(v) for v in np.argsort(s.order))), s.invert)


def _dihedral_table() -> List[List[int]]:
    probe = np.arange(9).reshape(1, 3, 3, 1)
    outs = [_dihedral(probe, d) for d in range(8)]
    return [[next(c for c in range(8) if np.array_equal(outs[c], _dihedral(outs[b], a))) for b in range(8)]
            for a in range(8)]


_DIHEDRAL_COMPOSE = _dihedral_table()
_MIRRORED = np.array([_DIHEDRAL_COMPOSE[4][s.dihedral] * 12 + s.colour * 2 + int(s.invert) for s in GLOBAL_STATES])


# ------------------------------------------------------------------------------------------------------------
# scoring up to the global state
def ssim_batch(a: np.ndarray, b: np.ndarray, data_range: float = 255.0, chunk: int = 16) -> np.ndarray:
    """Per-image SSIM of two (N, H, W, C) batches, equal (to float rounding) to :func:`patchcrypt.metrics.ssim`
    image by image — scikit-image's 7×7 uniform window, sample covariance, channels averaged — but vectorised
    over the batch (the filter runs over H and W only). Returns (N,) float64."""
    from scipy.ndimage import uniform_filter

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 4:
        raise PatchcryptError(f"ssim_batch expects two (N, H, W, C) batches of one shape: {a.shape} vs {b.shape}")
    win = min(7, a.shape[1], a.shape[2])
    win -= 1 - win % 2
    if win < 3:
        raise PatchcryptError(f"images of {a.shape[1]}x{a.shape[2]} are too small for SSIM")
    size, pad, cov_norm = (1, win, win, 1), (win - 1) // 2, win * win / (win * win - 1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    out = np.empty(len(a), dtype=np.float64)
    for i in range(0, len(a), chunk):
        x, y = a[i:i + chunk].astype(np.float64), b[i:i + chunk].astype(np.float64)
        ux, uy = uniform_filter(x, size), uniform_filter(y, size)
        vx = cov_norm * (uniform_filter(x * x, size) - ux * ux)
        vy = cov_norm * (uniform_filter(y * y, size) - uy * uy)
        vxy = cov_norm * (uniform_filter(x * y, size) - ux * uy)
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
        out[i:i + chunk] = s[:, pad:s.shape[1] - pad, pad:s.shape[2] - pad].mean(axis=(1, 2, 3), dtype=np.float64)
    return out


def up_to_global(pred: np.ndarray, plain: np.ndarray, *, data_range: float = 255, sample: int = 32,
                 shortlist: int = 4, always: Sequence[int] = (0,)) -> Dict[str, object]:
    """Figures of an attacker's output (N, H, W, C) uint8 against the plain images, up to ONE global state.

    A key's global ambiguity is one state for every image, so one state is chosen for the whole batch: the
    one with the highest mean SSIM against ``plain`` (ties: the most images exactly equal). To stay fast on
    large batches (N = 1000 at 32×32, N = 300 at 224×224) the state is chosen on an evenly spaced subsample
    of ``sample`` images: every state that fits the shape is ranked there by mean squared error (on a pixel
    grid), the ``shortlist`` best by mean SSIM (ties: exact images); the chosen state is then scored on the
    whole batch. The states in ``always`` (default: the identity, i.e. the output as the attacker chose
    it) are always on the shortlist, so the figure is never below the chosen output's. Where one state is
    clearly right (any attack that works) this equals the best over all 96 states computed by brute force.

    Returns a dict: ``exact_images_global`` (share of images equal to plain after the state),
    ``ssim_global`` and ``psnr_global`` (means over images; PSNR of an identical pair counts as 100 dB, as
    :func:`patchcrypt.metrics.batch_quality`), ``best_state`` (its ``str``), ``best_state_index``, and
    ``per_image``: ``{"exact": (N,) bool, "ssim": (N,) float64}`` after that state (the readable rule of
    :mod:`patchcrypt.attacks.scoring` reads them).
    """
    pred, plain = _images(pred, "pred"), _images(plain, "plain")
    if len(pred) != len(plain) or len(pred) == 0 or pred.shape[3] != plain.shape[3]:
        raise PatchcryptError(f"pred {pred.shape} and plain {plain.shape} must be non-empty batches of the "
                              "same images")
    fits = [i for i in distinct_states(pred.shape[3])
            if _shape_after(pred.shape[1:3], GLOBAL_STATES[i]) == plain.shape[1:3]]
    if not fits:
        raise PatchcryptError(f"no global state maps images of {pred.shape[1:3]} onto {plain.shape[1:3]}")
    idx = np.unique(np.linspace(0, len(pred) - 1, min(sample, len(pred))).round().astype(int))
    sub_pred, sub_plain = pred[idx], plain[idx]
    mse = _mse_by_state(sub_pred, sub_plain, fits)
    short = [fits[i] for i in np.argsort(mse, kind="stable")[:max(1, shortlist)]]
    short += [int(s) for s in always if int(s) in fits and int(s) not in short]
    best_key, best = None, short[0]
    for s in short:
        out = apply_state(sub_pred, s)
        key = (float(ssim_batch(out, sub_plain, data_range).mean()), int(_exact(out, sub_plain).sum()))
        if best_key is None or key > best_key:
            best_key, best = key, s
    out = apply_state(pred, best)
    exact = _exact(out, plain)
    ssims = ssim_batch(out, plain, data_range)
    psnrs = np.array([min(psnr(o, p, data_range), 100.0) for o, p in zip(out, plain)])
    return {"exact_images_global": float(exact.mean()), "ssim_global": float(ssims.mean()),
            "psnr_global": float(psnrs.mean()), "best_state": str(GLOBAL_STATES[best]),
            "best_state_index": int(best), "per_image": {"exact": exact, "ssim": ssims}}


def _mse_by_state(pred: np.ndarray, plain: np.ndarray, states: Sequence[int]) -> np.ndarray:
    """Mean squared error against ``plain`` of ``pred`` after each state, on a grid of at most ~64×64 points
    per image: from the squared differences of every (source channel, target channel, inversion) per
    dihedral transform, so 96 states cost 8 passes, not 96."""
    step = max(1, min(plain.shape[1], plain.shape[2]) // 64)
    tgt = plain[:, ::step, ::step].astype(np.float32)
    c = plain.shape[3]
    out = np.empty(len(states))
    by_dihedral: Dict[int, np.ndarray] = {}
    for k, i in enumerate(states):
        s = GLOBAL_STATES[i]
        if s.dihedral not in by_dihedral:
            v = _dihedral(pred, s.dihedral)[:, ::step, ::step].astype(np.float32)
            by_dihedral[s.dihedral] = np.array([[[((w - tgt[..., b]) ** 2).mean() for b in range(c)]
                                                 for w in (v[..., a], 255.0 - v[..., a])] for a in range(c)])
        ssd = by_dihedral[s.dihedral]  # [source, inverted, target]
        order = s.order if c == 3 else (0,)
        out[k] = np.mean([ssd[order[j], int(s.invert), j] for j in range(c)])
    return out


def _exact(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a == b).reshape(len(a), -1).all(1)


def _shape_after(hw: Sequence[int], s: GlobalState) -> Tuple[int, int]:
    return (int(hw[1]), int(hw[0])) if s.dihedral % 2 else (int(hw[0]), int(hw[1]))


def rank_of_true(order: Sequence[int], true_index: int, *, channels: int = 3) -> int:
    """Rank (1 = first) of the true state in a best-first list of state indices. ``channels=1``: states that
    differ only by colour order are one state, and the rank counts distinct (dihedral, inversion) pairs."""
    true = _state(true_index)
    if channels == 1:
        seen: List[Tuple[int, bool]] = []
        for i in order:
            s = GLOBAL_STATES[int(i)]
            if (s.dihedral, s.invert) not in seen:
                seen.append((s.dihedral, s.invert))
        order = [GlobalState(d, 0, v).index for d, v in seen]
        true = GlobalState(true.dihedral, 0, true.invert)
    order = [int(i) for i in order]
    if true.index not in order:
        raise PatchcryptError(f"state {true} is not among the ranked states")
    return order.index(true.index) + 1


def _digest(x: np.ndarray) -> str:
    h = hashlib.sha1(str((x.shape, x.dtype.str)).encode())
    h.update(np.ascontiguousarray(x).data)
    return h.hexdigest()


def rank_states(candidates: np.ndarray, public: np.ndarray, *, seed: int = 0, classifier_steps: int = 0) -> List[int]:
    """Which global state makes the attacker's ``candidates`` look like natural photos: indices into
    :data:`GLOBAL_STATES`, best first (``apply_state(candidates, GLOBAL_STATES[order[0]])`` is the guess).

    Args:
        candidates: (N, H, W, C) uint8, the attacker's decryptions, all in one unknown global state.
        public: (P, h, w, C) uint8 plain natural images the attacker has (any size, any source).
        seed: makes the result deterministic (the public subsample and the classifier's training draw from it).
        classifier_steps: train the optional orientation/colour/inversion CNN for this many steps and add
            its evidence (0: hand statistics only, the default; see :func:`score_states`).
    The evidence of all N images is pooled (:func:`score_states`). One-channel images: the 6 colour orders
    of each state tie and stay together (identity order first). Non-square candidates: states with an odd
    number of quarter turns come last (they would change the image's shape).
    """
    scores = score_states(candidates, public, seed=seed, classifier_steps=classifier_steps)["total"]
    shape = _images(candidates, "candidates").shape[1:3]
    keeps = np.array([_shape_after(shape, s) == tuple(shape) for s in GLOBAL_STATES])
    order = np.lexsort((np.arange(len(scores)), -scores, ~keeps))
    return [int(i) for i in order]


# ------------------------------------------------------------------------------------------------------------
# choosing the state: a small orientation / colour-order / inversion classifier and hand statistics, both
# fitted on the public plain images and pooled over every candidate
WORK_SIZE = 32          # working resolution of both experts (every image is resized to WORK_SIZE²)
_TRAIN_SIZE = 40        # public images are kept at this size and cropped at random for the classifier
_CNN_BATCH = 128
_MIX = 0.1              # each image's probabilities are mixed with this much of the uniform: no single image
#                         (or a domain the experts never saw) can veto a state on its own
_CACHE: Dict[Tuple[str, int, int, int], "_Experts"] = {}


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, C) uint8 → (N, size, size, C) uint8 (bicubic, whole image; aspect not kept)."""
    if images.shape[1:3] == (size, size):
        return images
    from PIL import Image

    c = images.shape[3]
    out = [np.asarray(Image.fromarray(im[..., 0] if c == 1 else im).resize((size, size), Image.BICUBIC))
           for im in images]
    return np.stack(out).reshape(len(images), size, size, c)


def _base_stats(z: np.ndarray) -> Dict[str, np.ndarray]:
    """What the hand features need of (N, S, S, C) float32 images in [0, 1], computed once per image; the
    features under every state are derived from these (:func:`_hand_features`), not recomputed."""
    n, s, _, c = z.shape
    y = z.mean(-1)
    t = max(1, s // 3)
    edges = [0, t, s - t, s]
    grid = np.stack([np.stack([z[:, edges[i]:edges[i + 1], edges[j]:edges[j + 1]].mean((1, 2)) for j in range(3)], 1)
                     for i in range(3)], 1)                                   # (N, 3, 3, C) region means
    k = s // 4 * 4
    p = y[:, :k, :k].reshape(n, k // 4, 4, k // 4, 4).transpose(0, 1, 3, 2, 4).reshape(n, -1, 16)
    yc = y.reshape(n, -1) - y.mean((1, 2))[:, None]
    flat = z.reshape(n, -1, c)
    cen = flat - flat.mean(1, keepdims=True)
    cov = np.einsum("npa,npb->nab", cen, cen) / flat.shape[1]
    sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2)) + 1e-4
    # edge polarity (brighter above / brighter left, saturated so strong edges do not dominate) as a tiny
    # 3×3 probe that turns with the image: any dihedral state reads its own "brighter above" off it
    pa = np.tanh((y[:, :-1] - y[:, 1:]) / 0.03).mean((1, 2))
    pb = np.tanh((y[:, :, :-1] - y[:, :, 1:]) / 0.03).mean((1, 2))
    probe = np.zeros((n, 3, 3, 1), np.float32)
    probe[:, 0, 1, 0], probe[:, 2, 1, 0], probe[:, 1, 0, 0], probe[:, 1, 2, 0] = pa, -pa, pb, -pb
    return {"probe": probe, "grid": grid, "gx": np.abs(np.diff(y, axis=2)).mean((1, 2)),
            "gy": np.abs(np.diff(y, axis=1)).mean((1, 2)),
            "ms": _corr(p.mean(-1), p.std(-1)), "skew": (yc ** 3).mean(1) / ((yc ** 2).mean(1) ** 1.5 + 1e-6),
            "dark": (y < 0.15).mean((1, 2)) - (y > 0.85).mean((1, 2)), "mean": flat.mean(1), "sd": sd,
            "corr": cov / sd[:, :, None] / sd[:, None, :]}


def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    return (a * b).mean(1) / np.sqrt((a * a).mean(1) * (b * b).mean(1) + 1e-8)


def _hand_features(b: Dict[str, np.ndarray], s: GlobalState) -> np.ndarray:
    """Domain-robust statistics of the images after state ``s`` (from :func:`_base_stats`) → (N, F) float32.

    Orientation: light and (for colour) blue at the top (sky, light from above), edges brighter above than
    below, the stronger of the top–bottom and left–right contrasts, gradient anisotropy (horizons, vertical
    objects); every feature is unchanged by a left–right mirror. Inversion: local contrast grows with local
    brightness in gamma-encoded photographs (the correlation of patch mean and patch spread is positive,
    negative once inverted), skewness, dark-vs-light balance. Colour order: the middle band (green)
    correlates most with the others; channel mean and spread differences.
    """
    grid = _dihedral(b["grid"], s.dihedral)
    c = grid.shape[-1]
    sign = -1.0 if s.invert else 1.0
    if c == 3:
        grid = grid[..., list(s.order)]
    if s.invert:
        grid = 1.0 - grid
    y = grid.mean(-1)
    tb, lr = y[:, 0].mean(1) - y[:, 2].mean(1), y[:, :, 0].mean(1) - y[:, :, 2].mean(1)
    gx, gy = (b["gy"], b["gx"]) if s.dihedral % 2 else (b["gx"], b["gy"])
    # nothing signed left-versus-right: photographs carry no left-right cue that holds across data sets, and
    # one fitted on the public images would only carry their bias; a state and its mirror tie
    pr = _dihedral(b["probe"], s.dihedral)
    up, side = sign * (pr[:, 0, 1, 0] - pr[:, 2, 1, 0]) / 2, (pr[:, 1, 0, 0] - pr[:, 1, 2, 0]) / 2
    feats = [up, np.abs(up) - np.abs(side), y[:, 0].mean(1) - y[:, 1].mean(1), tb, np.abs(tb) - np.abs(lr),
             np.log(gy + 1e-3) - np.log(gx + 1e-3), sign * b["ms"],
             sign * b["skew"], y.mean((1, 2)) - 0.5, sign * b["dark"]]
    if c == 3:
        o = list(s.order)
        m = b["mean"][:, o]
        m = 1.0 - m if s.invert else m
        sd, r = b["sd"][:, o], b["corr"][:, o][:, :, o]
        r01, r12, r02 = r[:, 0, 1], r[:, 1, 2], r[:, 0, 2]
        blue = grid[..., 2] - 0.5 * (grid[..., 0] + grid[..., 1])
        feats += [r01 + r12 - 2 * r02, r01 - r12, m[:, 0] - m[:, 2], m[:, 1] - 0.5 * (m[:, 0] + m[:, 2]),
                  sd[:, 0] - sd[:, 2], blue[:, 0].mean(1) - blue[:, 2].mean(1), blue.mean((1, 2))]
    return np.stack(feats, 1).astype(np.float32)


def _state_features(small: np.ndarray) -> np.ndarray:
    """Hand features of (N, S, S, C) uint8 images under every state that fixes them: (N, 96, F)."""
    base = _base_stats(small.astype(np.float32) / 255.0)
    return np.stack([_hand_features(base, s) for s in GLOBAL_STATES], 1)


class _Experts:
    """What is fitted once per public set and seed: the classifier and the hand-statistics ranker."""

    def __init__(self, public: np.ndarray, seed: int, steps: int):
        import torch

        self.channels = public.shape[3]
        pick = np.random.default_rng(seed).permutation(len(public))
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(1)  # a tiny model: one thread wastes nothing, and never fights the others
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.net = _train_classifier(_resize(public[pick[:2000]], _TRAIN_SIZE), seed, steps) if steps else None
                self.w, self.mu, self.sd = _fit_ranker(_resize(public[pick[:400]], WORK_SIZE))
        finally:
            torch.set_num_threads(threads)

    def per_image(self, candidates: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Per-image log-probabilities (N, 96) of each state being the one that fixes the image: classifier,
        hand statistics."""
        small = _resize(candidates, WORK_SIZE)
        f = (_state_features(small) - self.mu) / self.sd
        z = f @ self.w
        z -= z.max(1, keepdims=True)
        hand = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        cnn = _classifier_log_probs(self.net, small) if self.net is not None else np.zeros_like(hand)
        return cnn, np.log((1 - _MIX) * hand + _MIX / len(GLOBAL_STATES))


def _fit_ranker(small: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights of a linear score over the hand features such that, on public images, the identity wins the
    softmax over all 96 states (a conditional logit fitted by L-BFGS): (F,), and the features' mean and std."""
    import torch

    f = _state_features(small)
    mu, sd = f.reshape(-1, f.shape[2]).mean(0), f.reshape(-1, f.shape[2]).std(0) + 1e-6
    x = torch.from_numpy((f - mu) / sd)
    w = torch.zeros(f.shape[2], requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=0.5, max_iter=100)

    def loss_fn():
        opt.zero_grad()
        loss = -torch.log_softmax(x @ w, 1)[:, 0].mean() + 1e-3 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(loss_fn)
    return w.detach().numpy().astype(np.float32), mu.astype(np.float32), sd.astype(np.float32)


def _make_net(channels: int):
    """A deliberately small CNN (about 0.6 M multiply-adds per 32×32 image): three strided convolutions keep
    where things are (a 4×4 map, flattened, not pooled away: 'light at the top' needs the position)."""
    import torch.nn as nn

    def block(a: int, b: int) -> List:
        return [nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]

    heads = 8 + (6 if channels == 3 else 0) + 2
    return nn.Sequential(*block(channels, 16), *block(16, 32), *block(32, 48), nn.Flatten(), nn.Dropout(0.2),
                         nn.Linear(48 * (WORK_SIZE // 8) ** 2, heads))


def _torch_state(x, d: int, colour: int, inv: bool):
    """A global state on (B, C, S, S) float tensors in [0, 1] (the same as apply_state on NHWC uint8)."""
    import torch

    x = torch.rot90(x, d % 4, dims=(2, 3))
    if d >= 4:
        x = torch.flip(x, dims=(3,))
    if x.shape[1] == 3 and colour:
        x = x[:, list(COLOUR_ORDERS[colour])]
    return 1.0 - x if inv else x


def _batch(pool, gen, batch: int):
    """Random crops of the public pool (N, T, T, C) resized to WORK_SIZE, photometric jitter, random states;
    returns inputs and the (dihedral, colour, inversion) labels that were applied."""
    import torch
    import torch.nn.functional as F

    n, t, _, c = pool.shape
    crop = int(torch.randint(int(0.65 * t), t + 1, (1,), generator=gen))
    idx = torch.randint(0, n, (batch, 1, 1), generator=gen)
    rows = torch.randint(0, t - crop + 1, (batch, 1, 1), generator=gen) + torch.arange(crop)[None, :, None]
    cols = torch.randint(0, t - crop + 1, (batch, 1, 1), generator=gen) + torch.arange(crop)[None, None, :]
    x = pool[idx, rows, cols].permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(WORK_SIZE, WORK_SIZE), mode="bilinear", align_corners=False, antialias=True)
    gamma = torch.exp(0.25 * torch.randn(batch, 1, 1, 1, generator=gen))
    gain = 1 + 0.15 * torch.randn(batch, 1, 1, 1, generator=gen)
    x = (x.clamp(0, 1) ** gamma * gain).clamp(0, 1)
    labels = torch.stack([torch.randint(0, 8, (batch,), generator=gen),
                          torch.randint(0, 6 if c == 3 else 1, (batch,), generator=gen),
                          torch.randint(0, 2, (batch,), generator=gen)], 1)
    out = torch.empty_like(x)
    for d in range(8):
        sel = labels[:, 0] == d
        if sel.any():
            out[sel] = _torch_state(x[sel], d, 0, False)
    if c == 3:
        perm = torch.tensor(COLOUR_ORDERS)[labels[:, 1]]
        out = torch.gather(out, 1, perm[:, :, None, None].expand_as(out))
    inv = labels[:, 2].bool()[:, None, None, None]
    return torch.where(inv, 1.0 - out, out), labels


def _train_classifier(pool_np: np.ndarray, seed: int, steps: int):
    """A tiny CNN predicting which (dihedral, colour order, inversion) was applied to a natural image crop
    (rotation prediction, the standard self-supervised task, with two more heads)."""
    import torch
    import torch.nn.functional as F

    pool = torch.from_numpy(pool_np).float() / 255.0
    gen = torch.Generator().manual_seed(seed)
    net = _make_net(pool.shape[3])
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    net.train()
    for _ in range(steps):
        x, lab = _batch(pool, gen, _CNN_BATCH)
        out = _split_heads(net(x), pool.shape[3])
        loss = sum(F.cross_entropy(o, lab[:, k]) for k, o in enumerate(out) if o is not None)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def _split_heads(logits, channels: int):
    """The classifier's (dihedral, colour order, inversion) logits; no colour head for one channel."""
    if channels == 3:
        return logits[:, :8], logits[:, 8:14], logits[:, 14:16]
    return logits[:, :8], None, logits[:, 8:10]


def _classifier_log_probs(net, small: np.ndarray) -> np.ndarray:
    """Per-image log-probability (N, 96) that each state fixes the image, from the classifier's three heads,
    averaged over the 8 dihedral views of each image (test-time augmentation)."""
    import torch

    c = small.shape[3]
    x = torch.from_numpy(np.ascontiguousarray(small)).permute(0, 3, 1, 2).float() / 255.0
    ld = torch.zeros(len(x), 8, dtype=torch.float64)
    lc = torch.zeros(len(x), 6 if c == 3 else 1, dtype=torch.float64)
    li = torch.zeros(len(x), 2, dtype=torch.float64)
    with torch.no_grad():
        for t in range(8):
            hd, hc, hi = (None if h is None else torch.softmax(h.double(), 1)
                          for h in _split_heads(net(_torch_state(x, t, 0, False)), c))
            # the view is t∘g(natural): its dihedral label is compose(t, g)
            ld += hd[:, [_DIHEDRAL_COMPOSE[t][g] for g in range(8)]] / 8
            lc += hc / 8 if hc is not None else 0.0
            li += hi / 8
    mix = lambda p: np.log((1 - _MIX) * p.numpy() + _MIX / p.shape[1])  # noqa: E731
    ld, lc, li = mix(ld), mix(lc), mix(li)
    out = np.empty((len(x), len(GLOBAL_STATES)))
    for s in GLOBAL_STATES:  # s fixes the image when the image is inverse(s) applied to a natural one
        g = inverse(s)
        out[:, s.index] = ld[:, g.dihedral] + (lc[:, g.colour] if c == 3 else 0.0) + li[:, int(g.invert)]
    return out


def _experts(public: np.ndarray, seed: int, steps: int) -> _Experts:
    key = (_digest(public), int(seed), int(public.shape[3]), int(steps))
    if key not in _CACHE:
        if len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _Experts(public, seed, steps)
    return _CACHE[key]


def score_states(candidates: np.ndarray, public: np.ndarray, *, seed: int = 0,
                 classifier_steps: int = 0) -> Dict[str, np.ndarray]:
    """Pooled evidence (log-probabilities summed over the N candidates) for each of the 96 states.

    Returns ``cnn``, ``stats`` and ``total`` = their sum, each (96,) float64 — higher is more likely the
    state that fixes the candidates. The experts are fitted once per public set, seed and step count
    (cached in the process): a linear ranker over hand statistics (always) and, when ``classifier_steps``
    > 0, a tiny CNN trained for that many steps on random crops of the public images (``cnn`` is zero
    otherwise). The classifier is off by default: at the few hundred steps two shared CPU cores allow in
    minutes, it added nothing measurable to the hand statistics across a change of domain
    (docs/global-state.md).
    """
    candidates, public = _images(candidates, "candidates"), _images(public, "public")
    if candidates.shape[3] != public.shape[3]:
        raise PatchcryptError(f"candidates have {candidates.shape[3]} channels, the public images "
                              f"{public.shape[3]}")
    if len(public) < 1 or len(candidates) == 0:
        raise PatchcryptError("choosing the global state needs at least 1 public image and 1 candidate")
    if classifier_steps < 0:
        raise PatchcryptError(f"classifier_steps must be >= 0, got {classifier_steps}")
    cnn, stats = _experts(public, seed, classifier_steps).per_image(candidates)
    cnn, stats = cnn.sum(0), stats.sum(0)
    stats = (stats + stats[_MIRRORED]) / 2  # mirror-blind by construction: make the tie exact, not float noise
    return {"cnn": cnn, "stats": stats, "total": cnn + stats}


__all__ = ["GlobalState", "GLOBAL_STATES", "COLOUR_ORDERS", "apply_state", "invert_state", "compose", "inverse",
           "distinct_states", "ssim_batch", "up_to_global", "rank_states", "rank_of_true", "score_states"]
