"""One vocabulary for every attack's figures: what the attacker output, compared with the plain images.

Scoring never reads the key. It compares the attacker's chosen output with the plain images, and the same
*up to the global state*: the 96 whole-image states (8 rotations/flips x 6 colour orders x inversion) that
no statistic of one image pins down but a person resolves at a glance. A registered scheme may add the
share of its key map recovered (``key_map_fraction``). The keys of :func:`score` are the schema every
attack emits (documented in docs/rate-your-scheme.md):

    exact_images, ssim, ssim_std, psnr, psnr_std               of the chosen output
    exact_images_global, ssim_global, psnr_global              of the best global state of the output
    global_state, global_state_rank                            that state; its rank in the attacker's order
    key_map_fraction                                           share of the key map right, or None
    readable                                                   share of images read (:func:`readable`)
    baseline_ssim, baselines, ssim_gain                        what needs no attack, and the gain over it
    recognisability (recognised, recognised_baseline)          a reference classifier's agreement gain, or None
    n_images

The global states come from :mod:`patchcrypt.attacks.globalstate` (``GLOBAL_STATES``, ``apply_state``,
``up_to_global``, ``rank_states``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import PatchcryptError
from .globalstate import GLOBAL_STATES, apply_state, invert_state, rank_states, ssim_batch, up_to_global  # noqa: F401


# -- fast batch metrics (the same values as scikit-image's SSIM with its defaults) -------------------------
def batch_ssim(a: np.ndarray, b: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Per-image SSIM of two uint8 batches (N, H, W, C): (N,) float64.

    Equal to :func:`patchcrypt.metrics.ssim` (scikit-image: 7x7 uniform window, sample covariance,
    border of 3 cropped, channels averaged), computed for the whole batch at once
    (:func:`patchcrypt.attacks.globalstate.ssim_batch`).
    """
    return ssim_batch(a, b, 255.0, chunk)


def batch_psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB of two uint8 batches (N, ...): (N,), identical pairs capped at 100 dB."""
    d = a.reshape(len(a), -1).astype(np.float64) - b.reshape(len(b), -1).astype(np.float64)
    mse = (d * d).mean(1)
    with np.errstate(divide="ignore"):
        p = 10 * np.log10(255.0 ** 2 / mse)
    return np.minimum(p, 100.0)


def exact(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) bool: image i of ``a`` equals image i of ``b``."""
    return (a.reshape(len(a), -1) == b.reshape(len(b), -1)).all(1)




def state_index(state) -> int:
    """Index of a state descriptor in ``GLOBAL_STATES``."""
    return GLOBAL_STATES.index(state)


def state_label(state) -> str:
    """A state descriptor as a short string for JSON."""
    return str(state)


def state_as_map(state, shape: Tuple[int, int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """A global state as a gather over the flat (H, W, C) image: ``out[p] = x[perm[p]] ^ mask[p]``.

    Read off ``apply_state`` by applying it to images that spell every position's index, so it holds
    whatever form the state descriptors take. Returns (perm (D,) int64, mask (D,) uint8 0/255).
    """
    h, w, c = shape
    d = h * w * c
    digits = max(1, math.ceil(math.log(d, 256)))
    idx = np.arange(d, dtype=np.int64)
    probe = np.stack([((idx >> (8 * j)) & 255).astype(np.uint8).reshape(h, w, c) for j in range(digits)]
                     + [np.zeros((h, w, c), np.uint8)])
    out = apply_state(probe, state)
    if out.shape[1:] != (h, w, c):
        raise PatchcryptError(f"global state {state} changes the image shape {shape}")
    mask = out[-1].reshape(-1)
    perm = np.zeros(d, np.int64)
    for j in range(digits):
        perm |= (out[j].reshape(-1) ^ mask).astype(np.int64) << (8 * j)
    return perm, mask


# -- readable: only what beats the outputs that need no attack counts ----------------------------------------
READ_SSIM = 0.5   # an image is read when its output reaches this SSIM up to the global state ...
READ_GAIN = 0.2   # ... and beats the best output that needs no attack by this much (or is exact)


def trivial_outputs(plain: np.ndarray, encrypted: Optional[np.ndarray] = None,
                    block_size: Optional[int] = None) -> Dict[str, np.ndarray]:
    """What anyone outputs with no attack, each (N, H, W, C) uint8 like ``plain``.

    ``flat``: every pixel the mean colour of the images (a domain's mean is public); ``block_means``: the
    ciphertext's own M×M block means (what a scheme that keeps block means in place gives away without an
    attack); ``ciphertext``: the ciphertext itself. The last two only where the ciphertext has the plain
    images' shape.
    """
    mean = plain.reshape(-1, plain.shape[-1]).mean(0)
    out = {"flat": np.broadcast_to(np.round(mean).astype(np.uint8), plain.shape)}
    if encrypted is not None and encrypted.shape == plain.shape:
        out["ciphertext"] = encrypted
        m = int(block_size or 0)
        n, h, w, c = plain.shape
        if m > 1 and h % m == 0 and w % m == 0:
            blocks = encrypted.reshape(n, h // m, m, w // m, m, c).mean((2, 4), keepdims=True)
            out["block_means"] = np.broadcast_to(np.round(blocks), (n, h // m, m, w // m, m, c)).astype(
                np.uint8).reshape(plain.shape)
    return out


def _global_per_image(pred: np.ndarray, plain: np.ndarray, always: Sequence[int] = (0,)) -> Dict[str, Any]:
    """:func:`up_to_global` with one state per image (per-image keys: each image has its own ambiguity)."""
    rows = [up_to_global(pred[i:i + 1], plain[i:i + 1], sample=1, always=always) for i in range(len(pred))]
    return {"per_image": {"exact": np.concatenate([r["per_image"]["exact"] for r in rows]),
                          "ssim": np.concatenate([r["per_image"]["ssim"] for r in rows]),
                          "state": np.array([r["best_state_index"] for r in rows])},
            "psnr_global": float(np.mean([r["psnr_global"] for r in rows])),
            "best_state_index": int(np.bincount([r["best_state_index"] for r in rows]).argmax())}


def _up_to_global(pred: np.ndarray, plain: np.ndarray, per_image: bool, always: Sequence[int] = (0,)):
    return _global_per_image(pred, plain, always) if per_image else up_to_global(pred, plain, always=always)


def _after_state(pred: np.ndarray, g: Dict[str, Any]) -> np.ndarray:
    """``pred`` under the global state(s) :func:`_up_to_global` chose (one for the batch, or one per image)."""
    states = g["per_image"].get("state")
    if states is None:
        return apply_state(pred, GLOBAL_STATES[int(g["best_state_index"])])
    return np.concatenate([apply_state(p[None], GLOBAL_STATES[int(s)]) for p, s in zip(pred, states)])


Classify = Callable[[np.ndarray], np.ndarray]   # uint8 (N, H, W, C) -> (N,) int labels


def recognised(plain: np.ndarray, output: np.ndarray, classify: Classify,
               baselines: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """The recognisability figure: how often a reference classifier (trained on plain images of the domain)
    gives the output the label it gives the plain image, minus the same for the best output that needs no
    attack. ``output`` and ``baselines`` are already in their chosen global states.

    Returns ``recognised`` (agreement on the output), ``recognised_baseline`` (best agreement of a baseline)
    and ``recognisability`` (the difference; 0 or below: the classifier recognises nothing an attack added).
    """
    truth = np.asarray(classify(plain))
    agree = float((np.asarray(classify(output)) == truth).mean())
    base = max(float((np.asarray(classify(np.ascontiguousarray(b))) == truth).mean()) for b in baselines.values())
    return {"recognised": agree, "recognised_baseline": base, "recognisability": agree - base}


def readable(plain: np.ndarray, exact_global: np.ndarray, ssim_global: np.ndarray,
             encrypted: Optional[np.ndarray] = None, block_size: Optional[int] = None,
             per_image: bool = False, output: Optional[np.ndarray] = None,
             classify: Optional[Classify] = None) -> Dict[str, Any]:
    """Which images an attack read: exact up to the global state, or recognisable beyond what needs no attack.

    Image i is read when ``exact_global[i]``, or when ``ssim_global[i] >= READ_SSIM`` and
    ``ssim_global[i] - baseline[i] >= READ_GAIN``, where ``baseline[i]`` is the best SSIM (up to the global
    state, as the attack's) of the :func:`trivial_outputs`. A flat grey image, the block-mean thumbnail or
    the ciphertext handed back as a "reconstruction" therefore reads 0.

    Returns ``readable`` (share of images read), ``read`` ((N,) bool), ``baseline_ssim`` (mean of the
    per-image best), ``baselines`` ({name: mean SSIM up to the global state}), ``ssim_gain`` (mean of
    ``ssim_global - baseline``). With ``classify`` (and ``output``, in its chosen global state) also the
    figures of :func:`recognised`; without, ``recognisability`` is None.
    """
    trivial = trivial_outputs(plain, encrypted, block_size)
    globals_ = {name: _up_to_global(out, plain, per_image) for name, out in trivial.items()}
    scores = {name: g["per_image"]["ssim"] for name, g in globals_.items()}
    best = np.max(np.stack(list(scores.values())), axis=0)
    read = exact_global | ((ssim_global >= READ_SSIM) & (ssim_global - best >= READ_GAIN))
    out = {"readable": float(read.mean()), "read": read, "baseline_ssim": float(best.mean()),
           "baselines": {k: float(v.mean()) for k, v in scores.items()},
           "ssim_gain": float((ssim_global - best).mean()), "recognisability": None}
    if classify is not None and output is not None:
        out.update(recognised(plain, output, classify,
                              {k: _after_state(trivial[k], g) for k, g in globals_.items()}))
    return out


# -- the schema ------------------------------------------------------------------------------------------------
SCHEMA = ("n_images", "exact_images", "ssim", "ssim_std", "psnr", "psnr_std", "exact_images_global", "ssim_global",
          "psnr_global", "global_state", "global_state_rank", "key_map_fraction", "readable", "baseline_ssim",
          "baselines", "ssim_gain", "recognisability")


def score(plain: np.ndarray, output: np.ndarray, candidates: Optional[np.ndarray] = None,
          state_order: Optional[Sequence[int]] = None, key_map_fraction: Optional[float] = None, *,
          encrypted: Optional[np.ndarray] = None, block_size: Optional[int] = None,
          per_image: bool = False, classify: Optional[Classify] = None) -> Dict[str, Any]:
    """The figures of one attack (keys: ``SCHEMA``).

    Args:
        plain: (N, H, W, C) uint8, the truth.
        output: (N, H, W, C) uint8, the attacker's chosen output.
        candidates, state_order: the attacker's candidates are ``apply_state(candidates, GLOBAL_STATES[i])``
            for i in ``state_order`` (best first; ``output`` is the first). Without them, ``output`` is the
            only candidate.
        key_map_fraction: share of the key map recovered (registered schemes), else None.
        encrypted, block_size: the ciphertexts the attacker saw and M, for the outputs that need no attack
            (:func:`readable`); without them only the flat image is a baseline.
        per_image: every image under its own key, so every image gets its own global state.
        classify: a reference classifier of the domain, for the recognisability figure (:func:`recognised`).
    """
    if output.shape != plain.shape:
        raise PatchcryptError(f"the attack output has shape {output.shape}, the plain images {plain.shape}")
    s, p = batch_ssim(output, plain), batch_psnr(output, plain)
    base = output if candidates is None else candidates
    order = list(state_order) if state_order is not None else [0]
    g = _up_to_global(base, plain, per_image, always=(0, order[0]))   # never below the output the attacker chose
    idx = int(g["best_state_index"])
    best = GLOBAL_STATES[idx]
    rank = order.index(idx) + 1 if idx in order else None
    ex, ss = g["per_image"]["exact"], g["per_image"]["ssim"]
    chosen = _after_state(base, g) if classify is not None else None
    read = readable(plain, ex, ss, encrypted, block_size, per_image, chosen, classify)
    return {"n_images": int(len(plain)), "exact_images": float(exact(output, plain).mean()),
            "ssim": float(s.mean()), "ssim_std": float(s.std()), "psnr": float(p.mean()), "psnr_std": float(p.std()),
            "exact_images_global": float(ex.mean()), "ssim_global": float(ss.mean()),
            "psnr_global": float(g["psnr_global"]), "global_state": state_label(best), "global_state_rank": rank,
            "key_map_fraction": None if key_map_fraction is None else float(key_map_fraction),
            **{k: v for k, v in read.items() if k != "read"}}


__all__ = ["GLOBAL_STATES", "apply_state", "invert_state", "up_to_global", "rank_states", "state_index",
           "state_as_map", "score", "SCHEMA", "batch_ssim", "batch_psnr", "exact", "readable", "trivial_outputs", "recognised",
           "READ_SSIM", "READ_GAIN"]
