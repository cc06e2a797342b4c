"""Compiled ciphers: one gather plus one XOR mask over the flattened image (DESIGN §3).

Every keyed step of every scheme is a map y[i] = x[g[i]] XOR m[i] on a flat array of values (bytes, or
4-bit halves for the learnable-encryption schemes). Such maps compose into one map of the same form:

    (g1, m1) then (g2, m2)  ==  (g1[g2], m1[g2] XOR m2)

so a whole scheme compiles once per (key, image shape) into a single :class:`Program`, and encrypting a
batch is one vectorised gather and one XOR. Decryption is again a gather and an XOR:
x = y[g⁻¹] XOR m[g⁻¹].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

# Index dtype for gathers: int32 halves the index traffic and is plenty for any image we handle.
_IDX = np.int32


@dataclass(frozen=True)
class Map:
    """y[i] = x[g[i]] ^ m[i] over a flat array; ``g`` a permutation, ``m`` a uint8 mask."""

    g: np.ndarray
    m: np.ndarray

    @staticmethod
    def identity(size: int) -> "Map":
        return Map(np.arange(size, dtype=np.int64), np.zeros(size, dtype=np.uint8))

    def then(self, other: "Map") -> "Map":
        """The map that applies ``self`` first and ``other`` second."""
        return Map(self.g[other.g], self.m[other.g] ^ other.m)

    def inverse(self) -> "Map":
        inv = np.empty_like(self.g)
        inv[self.g] = np.arange(self.g.size, dtype=self.g.dtype)
        return Map(inv, self.m[inv])

    def lift_to_nibbles(self) -> "Map":
        """The same byte map acting on the (upper, lower) 4-bit halves of every byte."""
        g = np.empty(2 * self.g.size, dtype=np.int64)
        g[0::2] = 2 * self.g
        g[1::2] = 2 * self.g + 1
        m = np.empty(2 * self.m.size, dtype=np.uint8)
        m[0::2] = self.m >> 4
        m[1::2] = self.m & 15
        return Map(g, m)

    def relabel(self, positions: np.ndarray) -> "Map":
        """Move a map defined on block order onto image order.

        ``positions[p]`` is the image index of block-order element p (see blocks.block_layout); the
        result acts on the flat image: y_img[positions[p]] = x_img[positions[g[p]]] ^ m[p].
        """
        positions = positions.reshape(-1)
        g = np.empty(positions.size, dtype=np.int64)
        m = np.empty(positions.size, dtype=np.uint8)
        g[positions] = positions[self.g]
        m[positions] = self.m
        return Map(g, m)


def to_nibbles(x: np.ndarray) -> np.ndarray:
    """(N, D) uint8 → (N, 2D) uint8 of 4-bit halves, upper half first."""
    out = np.empty((x.shape[0], 2 * x.shape[1]), dtype=np.uint8)
    np.right_shift(x, 4, out=out[:, 0::2])
    np.bitwise_and(x, 15, out=out[:, 1::2])
    return out


def from_nibbles(h: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_nibbles`."""
    return (h[:, 0::2] << 4) | h[:, 1::2]


class Program:
    """A compiled encryption map for one image shape, with its inverse and per-device torch copies.

    Attributes:
        unit: "byte" or "nibble" (LE/ELE act on 4-bit halves).
        shape_in / shape_out: (H, W, C) of the plain and encrypted image.
    """

    def __init__(self, fwd: Map, unit: str, shape_in: Tuple[int, int, int], shape_out=None):
        self.unit = unit
        self.shape_in = tuple(shape_in)
        self.shape_out = tuple(shape_out or shape_in)
        inv = fwd.inverse()
        self._np = {
            "enc": (fwd.g.astype(_IDX), fwd.m),
            "dec": (inv.g.astype(_IDX), inv.m),
        }
        self._torch: Dict[tuple, tuple] = {}
        # Masks that are all zero (e.g. a pure permutation) skip the XOR.
        self._has_mask = bool(fwd.m.any())

    # -- numpy ----------------------------------------------------------------------------------------
    def apply_numpy(self, flat: np.ndarray, direction: str) -> np.ndarray:
        """Apply to (N, D) uint8 in HWC flat order; returns a new (N, D) array."""
        g, m = self._np[direction]
        if self.unit == "nibble":
            h = np.take(to_nibbles(flat), g, axis=1)
            if self._has_mask:
                np.bitwise_xor(h, m, out=h)
            return from_nibbles(h)
        out = np.take(flat, g, axis=1)
        if self._has_mask:
            np.bitwise_xor(out, m, out=out)
        return out

    # -- torch ----------------------------------------------------------------------------------------
    def _torch_tables(self, direction: str, device, channels_first: bool):
        import torch

        k = (direction, str(device), channels_first)
        if k not in self._torch:
            g, m = self._np[direction]
            g = g.astype(np.int64)
            if channels_first:
                g, m = _to_chw(g, m, self.shape_in if direction == "enc" else self.shape_out,
                               self.shape_out if direction == "enc" else self.shape_in, self.unit)
            self._torch[k] = (torch.from_numpy(g).to(device), torch.from_numpy(m.copy()).to(device))
        return self._torch[k]

    def apply_torch(self, flat, direction: str, channels_first: bool = True):
        """Apply to an (N, D) uint8 torch tensor (CHW flat order when ``channels_first``), on its device."""
        g, m = self._torch_tables(direction, flat.device, channels_first)
        if self.unit == "nibble":
            import torch

            h = torch.stack((flat >> 4, flat & 15), dim=2).reshape(flat.shape[0], -1)
            h = h.index_select(1, g)
            if self._has_mask:
                h ^= m
            h = h.reshape(flat.shape[0], -1, 2)
            return (h[..., 0] << 4) | h[..., 1]
        out = flat.index_select(1, g)
        if self._has_mask:
            out ^= m
        return out

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_torch"] = {}  # device tensors are rebuilt on demand in the receiving process
        return state


def _chw_order(shape: Tuple[int, int, int]) -> np.ndarray:
    """p[q] = HWC flat index of CHW flat index q."""
    h, w, c = shape
    return np.arange(h * w * c, dtype=np.int64).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)


def _to_chw(g: np.ndarray, m: np.ndarray, src_shape, dst_shape, unit: str):
    """Re-express a map from HWC flat order to CHW flat order (for NCHW torch tensors)."""
    p_src, p_dst = _chw_order(src_shape), _chw_order(dst_shape)
    if unit == "nibble":
        p_src = np.stack((2 * p_src, 2 * p_src + 1), axis=1).reshape(-1)
        p_dst = np.stack((2 * p_dst, 2 * p_dst + 1), axis=1).reshape(-1)
    inv_src = np.empty_like(p_src)
    inv_src[p_src] = np.arange(p_src.size)
    return inv_src[g[p_dst]], m[p_dst]
