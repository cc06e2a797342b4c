"""Choosing the global state: which of the 96 makes the attacker's decryptions look like natural photos.

Two experts, both fitted on the attacker's public plain images and pooled over every candidate: hand
statistics (light and sky at the top, local contrast against brightness, the green channel in the middle)
under a linear ranker, always; and, on request, a small orientation / colour-order / inversion classifier
(:mod:`.classifier`).
"""

from __future__ import annotations

import hashlib
from typing import Dict, List, Tuple

import numpy as np

from ...errors import PatchcryptError
from .classifier import classifier_log_probs, train_classifier
from .states import GLOBAL_STATES, MIRRORED, GlobalState, check_images, dihedral, shape_after

WORK_SIZE = 32          # working resolution of both experts (every image is resized to WORK_SIZE²)
_TRAIN_SIZE = 40        # public images are kept at this size and cropped at random for the classifier
_MIX = 0.1              # each image's probabilities are mixed with this much of the uniform: no single image
#                         (or a domain the experts never saw) can veto a state on its own
_CACHE: Dict[Tuple[str, int, int, int], "_Experts"] = {}


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
    shape = check_images(candidates, "candidates").shape[1:3]
    keeps = np.array([shape_after(shape, s) == tuple(shape) for s in GLOBAL_STATES])
    order = np.lexsort((np.arange(len(scores)), -scores, ~keeps))
    return [int(i) for i in order]


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
    grid = dihedral(b["grid"], s.dihedral)
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
    pr = dihedral(b["probe"], s.dihedral)
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
                self.net = (train_classifier(_resize(public[pick[:2000]], _TRAIN_SIZE), seed, steps, WORK_SIZE)
                            if steps else None)
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
        cnn = classifier_log_probs(self.net, small, _MIX) if self.net is not None else np.zeros_like(hand)
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
    candidates, public = check_images(candidates, "candidates"), check_images(public, "public")
    if candidates.shape[3] != public.shape[3]:
        raise PatchcryptError(f"candidates have {candidates.shape[3]} channels, the public images "
                              f"{public.shape[3]}")
    if len(public) < 1 or len(candidates) == 0:
        raise PatchcryptError("choosing the global state needs at least 1 public image and 1 candidate")
    if classifier_steps < 0:
        raise PatchcryptError(f"classifier_steps must be >= 0, got {classifier_steps}")
    cnn, stats = _experts(public, seed, classifier_steps).per_image(candidates)
    cnn, stats = cnn.sum(0), stats.sum(0)
    stats = (stats + stats[MIRRORED]) / 2  # mirror-blind by construction: make the tie exact, not float noise
    return {"cnn": cnn, "stats": stats, "total": cnn + stats}


__all__ = ["rank_states", "score_states", "WORK_SIZE"]
