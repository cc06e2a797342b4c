"""Scoring an attacker's output up to the global state, and the rank the attacker gave the true state.

The 96 global states (:mod:`.states`) are public and a person resolves them at a glance, so the suite scores
an attack *up to* the state (:func:`up_to_global`) and, separately, says how well the attacker itself picks
it (:func:`rank_of_true`; the attacker's own ranking is :func:`.choice.rank_states`).
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from ...errors import PatchcryptError
from ...metrics import psnr
from ..metrics import ssim_batch
from .states import (GLOBAL_STATES, GlobalState, apply_state, as_state, check_images, dihedral, distinct_states,
                     shape_after)


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
    pred, plain = check_images(pred, "pred"), check_images(plain, "plain")
    if len(pred) != len(plain) or len(pred) == 0 or pred.shape[3] != plain.shape[3]:
        raise PatchcryptError(f"pred {pred.shape} and plain {plain.shape} must be non-empty batches of the "
                              "same images")
    fits = [i for i in distinct_states(pred.shape[3])
            if shape_after(pred.shape[1:3], GLOBAL_STATES[i]) == plain.shape[1:3]]
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
            v = dihedral(pred, s.dihedral)[:, ::step, ::step].astype(np.float32)
            by_dihedral[s.dihedral] = np.array([[[((w - tgt[..., b]) ** 2).mean() for b in range(c)]
                                                 for w in (v[..., a], 255.0 - v[..., a])] for a in range(c)])
        ssd = by_dihedral[s.dihedral]  # [source, inverted, target]
        order = s.order if c == 3 else (0,)
        out[k] = np.mean([ssd[order[j], int(s.invert), j] for j in range(c)])
    return out


def _exact(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a == b).reshape(len(a), -1).all(1)


def rank_of_true(order: Sequence[int], true_index: int, *, channels: int = 3) -> int:
    """Rank (1 = first) of the true state in a best-first list of state indices. ``channels=1``: states that
    differ only by colour order are one state, and the rank counts distinct (dihedral, inversion) pairs."""
    true = as_state(true_index)
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


__all__ = ["up_to_global", "rank_of_true"]
