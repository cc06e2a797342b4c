"""Patch shuffling and nested EtC: per-image schemes for position-free ViTs (docs/invariant.md).

* ``patch-shuffle``: the order of the M×M patches only (Hao et al., IJCAI 2025, "Human-Imperceptible,
  Machine-Recognizable Images", random shuffling), a keyed draw instead of their unkeyed one, so a key holder
  decrypts exactly. It is block scrambling under its own key label (the ordinary :class:`~.base.Cipher`).
* ``patch-shuffle-mix``: the patch order, then inside every patch the order of its m×m sub-blocks (a keyed,
  exactly invertible form of the paper's mixing of sub-patches; the paper's mixing is not invertible).
* ``etc-nested``: the patch order at M, then inside every patch EtC on m×m sub-blocks: their order within
  the patch, and per sub-block a dihedral state (8), a polarity (v → 255 − v, 2) and a colour order (6).
  Patch edges no longer continue each other; a solver's pieces are the m×m sub-blocks, 96 states each.

A nested scheme is still one gather plus one XOR mask: the sub-block steps act inside a patch, so they are
one in-patch permutation and mask per patch of a :class:`~.program.BlockMap` at M, composed after the patch
order. Key material: one stream per step, labelled with the scheme, the step, M, m and the image shape.

>>> import numpy as np
>>> from patchcrypt import Key
>>> from patchcrypt.ciphers import create_cipher
>>> c = create_cipher("etc-nested", Key.from_bytes(bytes(32)), block_size=8, per_image=True)
>>> x = np.arange(2 * 16 * 16 * 3, dtype=np.int64).astype(np.uint8).reshape(2, 16, 16, 3)
>>> nonces = c.new_nonces(2)
>>> bool((c.decrypt(c.encrypt(x, nonces), nonces) == x).all()), c.sub_block
(True, 4)
"""

from __future__ import annotations

import math
from typing import Any, Dict, Tuple

import numpy as np

from ..errors import PatchcryptError
from ..keys import Key
from .base import Cipher, SchemeSpec, StepSpec
from .program import BlockBatch, BlockMap, local_dtype
from .steps import COLOUR_ORDERS, Geometry, colour_tables, dihedral_tables, effective_key_space_log10, log10_factorial

_S = StepSpec

# Step symbols of the sub-block level. They have no StepFacts: an attack that models whole M×M blocks sees
# values moved inside every block and does not apply (the hierarchical jigsaw models them).
SUB_ORDER, SUB_RF, SUB_NP, SUB_CS = "SBS", "SRF", "SNP", "SCS"
NESTED_STEPS = frozenset({SUB_ORDER, SUB_RF, SUB_NP, SUB_CS})
DEFAULT_SUB_BLOCK = 4


def sub_positions(m_patch: int, m_sub: int, c: int) -> np.ndarray:
    """(q, m·m·c) int64: flat in-patch index (row, column, channel order) of value l of sub-block j.

    Sub-blocks are numbered row-major inside the patch, q = (M/m)²; a sub-block's values in block-vector
    order (row, column, channel), as every step of :mod:`.steps` orders a block.
    """
    k = m_patch // m_sub
    a, b, r, s, ch = np.meshgrid(np.arange(k), np.arange(k), np.arange(m_sub), np.arange(m_sub), np.arange(c),
                                 indexing="ij")
    flat = ((a * m_sub + r) * m_patch + b * m_sub + s) * c + ch
    return flat.reshape(k * k, m_sub * m_sub * c).astype(np.int64)


class NestedCipher(Cipher):
    """A patch order at M, then per-patch sub-block order and per-sub-block states at m (see module doc).

    Args beyond :class:`~.base.Cipher`'s:
        sub_block: m, the sub-block side (default 4, or M when M < 4); must divide M.
    """

    def __init__(self, spec: SchemeSpec, key: Key, block_size: int, per_image: bool = False, pad: bool = False,
                 sub_block: int = 0) -> None:
        super().__init__(spec, key, block_size, per_image=per_image, pad=pad)
        m = int(sub_block or min(DEFAULT_SUB_BLOCK, self.block_size))
        if isinstance(sub_block, bool) or m < 1 or self.block_size % m:
            raise PatchcryptError(f"sub-block size {sub_block} must be a positive divisor of the block size "
                                  f"{self.block_size}")
        self.sub_block = m

    def describe(self) -> Dict[str, Any]:
        return {**super().describe(), "sub_block": self.sub_block}

    def _label(self, symbol: str, shape: Tuple[int, int, int]) -> tuple:
        return ("scheme", self.name, "step", symbol, "block", self._block(), "sub", self.sub_block, "shape",
                *shape)

    def _draw(self, symbol: str, shape, nonce: bytes):
        return self.key.stream(self._prefix(symbol, shape), nonce)

    def _compile_batch(self, shape: Tuple[int, int, int], nonces) -> BlockBatch:
        """Per-image keys: each image's two-level map drawn alone and stacked (the batched draws of
        :func:`~.steps.batch_step_map` know the single-level steps only)."""
        return BlockBatch.stack([self._compile_blocks(shape, nonce) for nonce in nonces])

    def _compile_blocks(self, shape: Tuple[int, int, int], nonce: bytes) -> BlockMap:
        """Patch order, then each output patch's sub-blocks gathered from the moved patch in their states."""
        h, w, c = shape
        geo = self._geometry(h, w, c)
        n, L = geo.n, geo.L
        src = self._draw("BS", shape, nonce).permutation(n)
        pos = sub_positions(geo.m, self.sub_block, c)                                   # (q, Ls)
        q, ls = pos.shape
        order = self._draw(SUB_ORDER, shape, nonce).permutations(n, q).astype(np.int64)  # (n, q)
        inner = self._sub_states(shape, nonce, n * q).reshape(n, q, ls)                 # in-sub-block gathers
        local = np.empty((n, L), dtype=local_dtype(L))
        local[:, pos.reshape(-1)] = np.take_along_axis(pos[order], inner, axis=2).reshape(n, L)
        mask = None
        if SUB_NP in self.spec.symbols:
            bits = self._draw(SUB_NP, shape, nonce).bits(n * q).reshape(n, q)
            mask = np.zeros((n, L), dtype=np.uint8)
            mask[:, pos.reshape(-1)] = np.repeat(np.where(bits, 255, 0).astype(np.uint8), ls, axis=1)
        return BlockMap(n, L, src=src, local=local, mask=mask)

    def _sub_states(self, shape, nonce: bytes, count: int) -> np.ndarray:
        """(count, Ls) int64 in-sub-block gathers: rotation/flip, then colour order (EtC's order of steps)."""
        m, c = self.sub_block, shape[2]
        ident = np.arange(m * m * c, dtype=np.int64)
        out = np.broadcast_to(ident, (count, ident.size))
        if SUB_RF in self.spec.symbols:
            out = dihedral_tables(m, c)[self._draw(SUB_RF, shape, nonce).integers(8, count).astype(np.int64)]
        if SUB_CS in self.spec.symbols:
            if c != 3:
                raise PatchcryptError(f"colour shuffling needs 3 channels, the images have {c}")
            cs = colour_tables(m)[self._draw(SUB_CS, shape, nonce).integers(6, count).astype(np.int64)]
            out = np.take_along_axis(np.ascontiguousarray(out), cs, axis=1)
        return np.ascontiguousarray(out)

    def transformations_log10(self, height: int, width: int, channels: int = 3) -> float:
        """log10 of the distinct maps: patch orders, sub-block orders per patch, states per sub-block."""
        geo: Geometry = self._geometry(height, width, channels)
        q = (geo.m // self.sub_block) ** 2
        states = 1
        if SUB_RF in self.spec.symbols and self.sub_block > 1:
            states *= 8
        if SUB_NP in self.spec.symbols:
            states *= 2
        if SUB_CS in self.spec.symbols:
            states *= len(COLOUR_ORDERS)
        return log10_factorial(geo.n) + geo.n * log10_factorial(q) + geo.n * q * math.log10(states)

    def key_space_log10(self, height: int, width: int, channels: int = 3) -> float:
        return effective_key_space_log10(self.transformations_log10(height, width, channels))


_HAO = "Hao, He, Wang, Wu, Zhang, Tao, Cheng (IJCAI 2025)"
PATCH_SHUFFLE = SchemeSpec(
    "patch-shuffle", (_S("BS"),),
    "random order of the M x M patches, nothing else (meant for per-image keys)", origin=f"{_HAO}: random shuffling")
PATCH_SHUFFLE_MIX = SchemeSpec(
    "patch-shuffle-mix", (_S("BS"), _S(SUB_ORDER)),
    "patch order, then the order of the m x m sub-blocks inside every patch (meant for per-image keys)",
    origin=f"{_HAO}: mixing sub-patches, in an exactly invertible form")
ETC_NESTED = SchemeSpec(
    "etc-nested", (_S("BS"), _S(SUB_ORDER), _S(SUB_RF), _S(SUB_NP), _S(SUB_CS)),
    "patch order at M, then EtC inside every patch on m x m sub-blocks: their order, rotation/flip, "
    "negative-positive, colour order (meant for per-image keys)", channels=(3,),
    origin="nested EtC (Kurihara et al. 2015) inside the patches of a position-free ViT")
