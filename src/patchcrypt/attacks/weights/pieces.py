"""Key pieces read off a keyed model: per-block maps (σ, g, mask), from the plain weights (exact) or relative
to one block (keyed weights alone, position-wise models)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Optional, Tuple

import numpy as np

from ...errors import PatchcryptError
from ..keymaps import block_map_to_image

if TYPE_CHECKING:
    import torch.nn as nn


@dataclass
class RecoveredBlocks:
    """Per-block key pieces: encrypted block k holds plain block sigma[k]; element i ← element g[k, i], XOR mask."""

    sigma: np.ndarray   # (n,)
    g: np.ndarray       # (n, L)
    mask: np.ndarray    # (n, L) uint8, 0 or 255

    def image_map(self, shape, block_size: int):
        return block_map_to_image(self.sigma, self.g, self.mask, shape, block_size)


def keyed_tensors(model: nn.Module) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Folded patch embedding as (n or 1, D, L) float64 and the patch rows of the position embedding (n, D)."""
    from ...models.keyed import folded_embedding

    if not getattr(model, "is_isotropic", False):
        raise PatchcryptError(f"{type(model).__name__} has no single linear patch embedding to read a key from")
    w, _ = folded_embedding(model)
    w = w.numpy()
    if w.ndim == 2:
        w = w[None]
    pos = model.pos_embed.detach().double().numpy()[0, 1:] if hasattr(model, "pos_embed") else None
    return w, pos


def unit_columns(w: np.ndarray) -> np.ndarray:
    """(..., D, L) float with every column scaled to unit length (zero columns stay zero)."""
    return w / np.maximum(np.linalg.norm(w, axis=-2, keepdims=True), 1e-30)


def match_columns(a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray, float]:
    """Signed column matching: a[:, i] ≈ s[i] · b[:, g[i]] with g a permutation.

    Args:
        a, b: (D, L) float. Returns g (L,) int64, s (L,) ±1.0, and the worst |cosine| of a matched pair
        (1.0 when a is exactly a signed column permutation of b).
    """
    c = unit_columns(a).T @ unit_columns(b)                  # (L, L) cosines
    score = np.abs(c)
    g = score.argmax(1)
    if len(np.unique(g)) != len(g):                           # not a permutation: solve the assignment
        from scipy.optimize import linear_sum_assignment

        _, g = linear_sum_assignment(-score)
    picked = c[np.arange(len(g)), g]
    return g.astype(np.int64), np.where(picked < 0, -1.0, 1.0), float(np.abs(picked).min())


def match_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row k of ``a`` is row idx[k] of ``b`` (closest in Euclidean distance, one-to-one). a, b: (n, D)."""
    from scipy.optimize import linear_sum_assignment

    d = (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None]
    _, idx = linear_sum_assignment(d)
    return idx.astype(np.int64)


def masks(s: np.ndarray) -> np.ndarray:
    """Signs (any shape, ±1.0) → XOR masks of the same shape, uint8: 255 where the value is flipped, else 0."""
    return np.where(s < 0, 255, 0).astype(np.uint8)


def recover_with_plain(keyed: nn.Module, plain: nn.Module) -> Tuple[RecoveredBlocks, Dict[str, float]]:
    """Attack (a): the key pieces of ``keyed`` from the plain model it was made from (exact)."""
    wk, pk = keyed_tensors(keyed)
    w0, p0 = keyed_tensors(plain)
    n = pk.shape[0] if pk is not None else getattr(keyed, "grid_size", 1) ** 2
    if pk is not None and p0 is not None:
        sigma = match_rows(pk, p0)
    else:  # no position embedding (ConvMixer): blocks cannot have moved
        sigma = np.arange(n)
    L = wk.shape[-1]
    g, s = np.empty((n, L), np.int64), np.empty((n, L))
    worst = 1.0
    for k in range(n):
        src = w0[sigma[k] if w0.shape[0] > 1 else 0]
        gk, sk, wk_cos = match_columns(wk[k if wk.shape[0] > 1 else 0], src)
        g[k], s[k], worst = gk, sk, min(worst, wk_cos)
        if wk.shape[0] == 1 and w0.shape[0] == 1:   # shared: one match serves every block
            g[:], s[:] = gk, sk
            break
    # check: a flip also moves the bias, b′_k = b₀ − W′_k t_k (t = 255 where flipped)
    from ...models.keyed import folded_embedding

    bk = np.broadcast_to(folded_embedding(keyed)[1].numpy(), (n, wk.shape[1]))
    b0 = np.broadcast_to(folded_embedding(plain)[1].numpy(), (n, wk.shape[1]))
    w_k = np.broadcast_to(wk, (n,) + wk.shape[1:])
    predicted = b0[sigma if w0.shape[0] > 1 else np.zeros(n, np.int64)] - np.einsum("kdl,kl->kd", w_k, 255.0 * (s < 0))
    residual = float(np.abs(predicted - bk).max() / max(np.abs(bk).max(), 1e-12))
    return RecoveredBlocks(sigma, g, masks(s)), {"worst_column_cosine": worst, "bias_residual": residual}


def relative_states(keyed: nn.Module, reference: int = 0) -> Tuple[np.ndarray, np.ndarray, float]:
    """Attack (b), position-wise models: every block's in-block map relative to block ``reference``.

    Returns g_rel, s_rel (n, L) with W′_k[:, i] = s_rel[k, i] · W′_ref[:, g_rel[k, i]], and the worst |cosine|.
    With the reference's true map (g₀, s₀): g_k = g₀[g_rel[k]], s_k = s_rel[k] · s₀[g_rel[k]].
    """
    wk, _ = keyed_tensors(keyed)
    if wk.shape[0] == 1:
        raise PatchcryptError("this keyed model has one shared embedding; relative block states need a "
                              "position-wise one")
    out_g, out_s, worst = [], [], 1.0
    for k in range(wk.shape[0]):
        gk, sk, c = match_columns(wk[k], wk[reference])
        out_g.append(gk)
        out_s.append(sk)
        worst = min(worst, c)
    return np.stack(out_g), np.stack(out_s), worst


__all__ = ["RecoveredBlocks", "match_columns", "match_rows", "recover_with_plain", "relative_states", "keyed_tensors",
           "masks", "unit_columns"]
