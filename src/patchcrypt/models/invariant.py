"""Patch embeddings invariant to per-block transforms (DESIGN §8): the in-block group of EtC's steps.

A per-image EtC variant draws, for every block of every image, one state of a finite group acting on the
block's L = M·M·C values: a dihedral state (RF: 8), a polarity (NP: 2, v → 255 − v) and a colour order
(CS: 6). :class:`BlockGroup` lists those states as (gather, sign) pairs, built from the cipher's own tables,
so the model and the cipher agree on the group by construction.

Two embeddings make a patch's token independent of the state it was drawn in:

* :class:`CanonicalBlocks` (``inv_embed="canonical"``): every block is replaced by one fixed member of its
  orbit, chosen from its content alone, before the ordinary linear embedding. The choice is the
  lexicographic maximum, over the orbit, of a few integer moments (brightness; channel order; vertical,
  horizontal and diagonal moments; a few fixed integer mixes), with exact ties broken by the block values
  themselves. Every member of an orbit therefore maps to the same block, bit for bit on integer inputs.
  Cost: one (L × G·K) matmul per block plus a gather; the embedding itself is as cheap as the plain one.
* :class:`OrbitPoolEmbed` (``inv_embed="pool"``): ``mean_g GELU(W g(u) + b)`` then a linear map to D.
  Symmetrised after a nonlinearity (a linear map symmetrised over negative–positive is constant); |G| times
  the plain embedding's cost.

The nested invariances (``etc-nested``) embed every patch by :class:`NestedEmbed`: a set of canonical
sub-blocks, pooled by a symmetric function (mean, attention, or a position-free transformer block and then
attention: ``inv_pool="set"``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ciphers.steps import colour_tables, dihedral_tables
from ..errors import PatchcryptError
from .layers import patchify
from .vit import Block

# invariance name -> the in-block steps whose per-block states the model is invariant to
GROUPS = {"bs": (), "bs-rf": ("RF",), "bs-rf-np": ("RF", "NP"), "etc": ("RF", "NP", "CS")}
# nested invariances (ciphers/nested.py): "SBS" is the order of the m x m sub-blocks inside a patch; the other
# steps act on each sub-block. Such a model embeds each patch by :class:`NestedEmbed`.
NESTED_GROUPS = {"patch-shuffle-mix": ("SBS",), "etc-nested": ("SBS", "RF", "NP", "CS")}
# how a nested embedding pools the sub-block embeddings of a patch (NestedEmbed)
NESTED_POOLS = ("mean", "attn", "set")
MAX_SET_DEPTH = 8


def group_steps(invariance: str) -> Tuple[str, ...]:
    """The in-block steps of an invariance name ("bs", "bs-rf", "bs-rf-np", "etc", or a nested one:
    "patch-shuffle-mix", "etc-nested"); clear error otherwise."""
    groups = {**GROUPS, **NESTED_GROUPS}
    if invariance not in groups:
        raise PatchcryptError(f"invariance must be one of {', '.join(groups)}, got {invariance!r}")
    return groups[invariance]


@lru_cache(maxsize=32)
def _group_tables(steps: Tuple[str, ...], m: int, c: int) -> Tuple[np.ndarray, np.ndarray]:
    """(G, L) int64 gathers and (G,) ±1 signs: every state the steps can give one block."""
    if "CS" in steps and c != 3:
        raise PatchcryptError(f"colour-order invariance needs 3 channels, the model has {c}")
    L = m * m * c
    ident = np.arange(L, dtype=np.int64)
    spatial = dihedral_tables(m, c) if "RF" in steps else ident[None]
    colour = colour_tables(m) if "CS" in steps else ident[None]
    gathers = np.stack([d[k] for d in spatial for k in colour])          # u[d][k]: colour order, then RF
    signs = np.array([1.0, -1.0] if "NP" in steps else [1.0])
    return np.repeat(gathers, len(signs), axis=0), np.tile(signs, len(gathers))


class BlockGroup(nn.Module):
    """The G in-block states of ``steps`` for M×M×C blocks, as buffers ``gathers`` (G, L) and ``signs`` (G,).

    State g maps a block u (values in block-vector order, centred so that NP is negation) to
    ``signs[g] * u[gathers[g]]``.
    """

    def __init__(self, steps: Tuple[str, ...], patch_size: int, in_chans: int) -> None:
        super().__init__()
        gathers, signs = _group_tables(tuple(steps), patch_size, in_chans)
        self.steps, self.patch_size, self.in_chans = tuple(steps), patch_size, in_chans
        self.register_buffer("gathers", torch.from_numpy(gathers), persistent=False)
        self.register_buffer("signs", torch.from_numpy(signs), persistent=False)

    @property
    def order(self) -> int:
        return int(self.gathers.shape[0])


def _moment_keys(m: int, c: int) -> np.ndarray:
    """(K, L) integer functionals whose lexicographic maximum over an orbit picks the canonical state.

    Order: brightness (picks the polarity), channel weights 2/1/0 (sorts the channels by their sums), the
    vertical, horizontal and diagonal moments (pick the dihedral state), then four fixed integer mixes that
    separate what those leave tied.
    """
    r, col, ch = np.meshgrid(np.arange(m), np.arange(m), np.arange(c), indexing="ij")
    r, col, ch = (2 * r - (m - 1)).ravel(), (2 * col - (m - 1)).ravel(), ch.ravel()
    keys = [np.ones_like(r), 2 - ch if c == 3 else np.zeros_like(r), r, col, r * col]
    idx = np.arange(m * m * c)
    keys += [((idx * (7 + 4 * k) + 3 * k) % 17) - 8 for k in range(4)]
    return np.stack(keys).astype(np.float64)


class CanonicalBlocks(nn.Module):
    """Replace every M×M block by the canonical member of its orbit under ``group`` (exact on integers).

    Shape:
        (N, C, H, W) float or uint8 in 0..255 → (N, n, L) float blocks (row-major, block-vector order),
        each ``v`` or ``255 − v`` values of the input block regathered.
    """

    def __init__(self, group: BlockGroup) -> None:
        super().__init__()
        self.group = group
        keys = torch.from_numpy(_moment_keys(group.patch_size, group.in_chans))            # (K, L)
        g, s = group.gathers, group.signs
        # key k of state g of u is sum_l keys[k, l] * s_g * u[g[l]] = u . A[g, k]
        # on g's device (the CPU: tables come from numpy), also when the model is built under torch.device("meta")
        bank = torch.zeros(g.shape[0], keys.shape[0], keys.shape[1], dtype=torch.float64, device=g.device)
        bank.scatter_(2, g[:, None, :].expand(-1, keys.shape[0], -1), keys.expand(g.shape[0], -1, -1).clone())
        # keys are integers: exact in float32 while |key| < 2^24 (M = 4 and 8), else in float64 (M = 16)
        exact32 = 255 * keys.shape[1] * float(keys.abs().max()) < 2 ** 24
        self.key_dtype = torch.float32 if exact32 else torch.float64
        self.register_buffer("bank", (bank * s[:, None, None]).reshape(-1, keys.shape[1]).T.contiguous()
                             .to(self.key_dtype), persistent=False)                       # (L, G*K)
        self.n_keys = keys.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = patchify(x.to(torch.float32) if not x.is_floating_point() else x, self.group.patch_size)
        if self.group.order == 1:
            return u
        with torch.no_grad():
            state = self.canonical_state(u)                                                 # (N, n)
        gather = self.group.gathers[state]                                                  # (N, n, L)
        out = u.gather(2, gather)
        flip = self.group.signs[state] < 0
        return torch.where(flip[..., None], 255.0 - out, out)

    def canonical_state(self, u: torch.Tensor) -> torch.Tensor:
        """(N, n, L) blocks in 0..255 → (N, n) int64 index of the state that gives the canonical member."""
        z = (2.0 * u.to(self.key_dtype) - 255.0).reshape(-1, u.shape[-1])                   # NP is negation
        bank = self.bank.reshape(len(self.bank), self.group.order, self.n_keys).permute(0, 2, 1)
        keys = (z @ bank.reshape(len(self.bank), -1)).reshape(len(z), self.n_keys, self.group.order)
        keys = keys.transpose(0, 1)                                                         # (K, B, G)
        cand = keys[0] == keys[0].max(-1, keepdim=True).values
        rows = torch.arange(len(z), device=u.device)
        for k in range(1, self.n_keys):     # later keys only for the blocks still tied
            rows = rows[cand[rows].sum(-1) > 1]
            if not len(rows):
                break
            v = keys[k, rows].masked_fill(~cand[rows], -float("inf"))
            cand[rows] &= v == v.max(-1, keepdim=True).values
        state = cand.to(torch.int8).argmax(-1)
        tied = cand.sum(-1) > 1
        if bool(tied.any()):
            state[tied] = self._break_ties(z[tied], cand[tied])
        return state.reshape(u.shape[:2])

    def _break_ties(self, z: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """Exact tie-break: the lexicographically largest orbit member among the candidates.

        z: (B, L) centred blocks; cand: (B, G) bool. Returns (B,) state indices."""
        orbit = z[:, self.group.gathers] * self.group.signs[None, :, None]                  # (B, G, L)
        same = (orbit == orbit[torch.arange(len(z)), cand.to(torch.int8).argmax(-1)][:, None]).all(-1)
        open_ = ~(same | ~cand).all(-1)              # blocks whose tied candidates are not all the same block
        if bool(open_.any()):
            o, c = orbit[open_], cand[open_].clone()
            for j in range(o.shape[-1]):
                v = o[..., j].masked_fill(~c, -float("inf"))
                c &= v == v.max(-1, keepdim=True).values
            cand = cand.clone()
            cand[open_] = c
        return cand.to(torch.int8).argmax(-1)


class CanonicalEmbed(nn.Module):
    """Canonicalise every block, normalise it, embed it linearly: (N, C, H, W) 0..255 → (N, n, D).

    ``proj`` is an ``nn.Linear(L, D)`` acting on block vectors (block-vector order); ``norm`` is the model's
    :class:`~.layers.InputNorm` applied per channel of the canonical blocks.
    """

    def __init__(self, group: BlockGroup, embed_dim: int, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        m, c = group.patch_size, group.in_chans
        self.canon = CanonicalBlocks(group)
        self.proj = nn.Linear(m * m * c, embed_dim)
        self.register_buffer("mean", (mean.repeat(m * m) * 255.0).clone(), persistent=False)
        self.register_buffer("scale", 1.0 / (std.repeat(m * m) * 255.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.canon(x)
        return self.proj((u - self.mean) * self.scale)


class OrbitPoolEmbed(nn.Module):
    """``mean_g GELU(W g(z) + b)``, then ``Linear(hidden, D)``: (N, C, H, W) 0..255 → (N, n, D).

    ``z`` is the block centred and scaled to [-1, 1] (``(2v − 255) / 255``), so NP is negation and the colour
    order commutes with the normalisation. ``hidden`` defaults to D.
    """

    def __init__(self, group: BlockGroup, embed_dim: int, hidden: int = 0) -> None:
        super().__init__()
        self.group = group
        hidden = hidden or embed_dim
        L = group.patch_size ** 2 * group.in_chans
        self.inner = nn.Linear(L, hidden)
        self.proj = nn.Linear(hidden, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32) if not x.is_floating_point() else x
        z = patchify(x, self.group.patch_size) * (2.0 / 255.0) - 1.0                          # (N, n, L)
        g, s = self.group.gathers, self.group.signs.to(z.dtype)
        # W g(z) = (s_g W[:, g^-1]) z: one weight bank (G*hidden, L) instead of G gathered copies of z
        inv = torch.argsort(g, dim=1)
        bank = self.inner.weight[:, inv].permute(1, 0, 2) * s[:, None, None]                  # (G, hidden, L)
        h = F.linear(z, bank.reshape(-1, bank.shape[-1]))                                     # (N, n, G*hidden)
        h = h.reshape(*z.shape[:2], g.shape[0], -1) + self.inner.bias
        return self.proj(F.gelu(h).mean(2))


class NestedEmbed(nn.Module):
    """A patch token invariant to the order of its m×m sub-blocks and to each sub-block's state (DeepSets).

    Every M×M patch is cut into q = (M/m)² sub-blocks; each is canonicalised under ``group`` (its in-block
    states, as :class:`CanonicalBlocks`), normalised and embedded by ``inner`` (Linear(m·m·C, hidden)). The q
    embeddings are pooled by a symmetric function and ``proj`` maps the pooled vector to D:

    * ``pool="mean"``: GELU, then the mean;
    * ``pool="attn"``: GELU, then softmax weights from a learned score of each embedding (``score``);
    * ``pool="set"`` (Set Transformer / Transformer-in-Transformer style): the q embeddings are tokens of
      ``set_depth`` pre-norm self-attention + MLP blocks (``set_blocks``, width ``hidden``, ``set_heads``
      heads, MLP ``set_mlp_ratio``×) with no position information, so each sub-block's token sees the
      other sub-blocks of its patch while the map stays permutation-equivariant; then a LayerNorm
      (``set_norm``) and the attention pooling of ``"attn"``.

    Shape:
        (N, C, H, W) float or uint8 in 0..255 → (N, n, D), n the number of M×M patches (row-major).
    """

    def __init__(self, group: BlockGroup, patch_size: int, embed_dim: int, mean: torch.Tensor, std: torch.Tensor,
                 hidden: int = 0, pool: str = "mean", set_depth: int = 1, set_heads: int = 1,
                 set_mlp_ratio: float = 2.0) -> None:
        super().__init__()
        m, c = group.patch_size, group.in_chans
        if patch_size % m:
            raise PatchcryptError(f"sub-block size {m} must divide the patch size {patch_size}")
        if pool not in NESTED_POOLS:
            raise PatchcryptError(f"inv_pool must be one of {', '.join(NESTED_POOLS)}, got {pool!r}")
        self.patch_size, self.sub_block, self.pool = patch_size, m, pool
        hidden = hidden or embed_dim
        self.canon = CanonicalBlocks(group)
        self.inner = nn.Linear(m * m * c, hidden)
        if pool != "set" and set_depth != 1:
            raise PatchcryptError(f"inv_set_depth is the depth of inv_pool='set', not of {pool!r}")
        if pool == "set":
            if isinstance(set_depth, bool) or not isinstance(set_depth, int) or not 1 <= set_depth <= MAX_SET_DEPTH:
                raise PatchcryptError(f"inv_set_depth must be an integer from 1 to {MAX_SET_DEPTH}, got {set_depth!r}")
            if hidden % set_heads:
                raise PatchcryptError(f"the sub-block width {hidden} is not divisible by {set_heads} heads")
            self.set_blocks = nn.Sequential(*[Block(hidden, set_heads, set_mlp_ratio) for _ in range(set_depth)])
            self.set_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.score = nn.Linear(hidden, 1) if pool in ("attn", "set") else None
        self.proj = nn.Linear(hidden, embed_dim)
        self.register_buffer("mean", (mean.repeat(m * m) * 255.0).clone(), persistent=False)
        self.register_buffer("scale", 1.0 / (std.repeat(m * m) * 255.0), persistent=False)

    def sub_block_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) 0..255 → (N·n, q, hidden): each patch's sub-block embeddings just before pooling
        (sub-blocks row-major inside the patch; patches row-major)."""
        n_img, c, h, w = x.shape
        p = self.patch_size
        gh, gw = h // p, w // p
        patches = x.reshape(n_img, c, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5).reshape(n_img * gh * gw, c, p, p)
        e = self.inner((self.canon(patches) - self.mean) * self.scale)                    # (N·n, q, hidden)
        if self.pool == "set":
            return self.set_norm(self.set_blocks(e))
        return F.gelu(e)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.sub_block_tokens(x)
        if self.score is None:
            pooled = e.mean(1)
        else:
            pooled = (torch.softmax(self.score(e), dim=1) * e).sum(1)
        return self.proj(pooled).reshape(x.shape[0], -1, self.proj.out_features)
