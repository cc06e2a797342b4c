"""Compiled ciphers: one gather plus one XOR mask over the flattened image (DESIGN §3).

Every keyed step of every scheme is a map y[i] = x[g[i]] XOR m[i] on a flat array of values (bytes, or
4-bit halves for the learnable-encryption schemes). Such maps compose into one map of the same form:

    (g1, m1) then (g2, m2)  ==  (g1[g2], m1[g2] XOR m2)

so a whole scheme compiles once per (key, image shape) into a single :class:`Program`, and encrypting a
batch is one vectorised gather and one XOR. Decryption is again a gather and an XOR:
x = y[g⁻¹] XOR m[g⁻¹].
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
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


class Program:
    """A compiled encryption map for one image shape, with its inverse and per-layout/device tables.

    Attributes:
        map: the forward :class:`Map` in HWC flat order (over bytes, or over 4-bit halves when
            ``unit == "nibble"``); ``map.inverse()`` decrypts.
        unit: "byte" or "nibble" (LE/ELE act on 4-bit halves).
        shape_in / shape_out: (H, W, C) of the plain and encrypted image.
    """

    def __init__(self, fwd: Map, unit: str, shape_in: Tuple[int, int, int], shape_out=None):
        self.map = fwd
        self.unit = unit
        self.shape_in = tuple(shape_in)
        self.shape_out = tuple(shape_out or shape_in)
        self._maps = {"enc": fwd, "dec": fwd.inverse()}
        self._tables: Dict[tuple, tuple] = {}
        self.is_identity = (self.shape_in == self.shape_out and not fwd.m.any()
                            and bool(np.array_equal(fwd.g, np.arange(fwd.g.size))))

    def _layout_map(self, direction: str, channels_first: bool) -> Map:
        fwd = self._maps[direction]
        if not channels_first:
            return fwd
        src, dst = (self.shape_in, self.shape_out) if direction == "enc" else (self.shape_out, self.shape_in)
        return Map(*_to_chw(fwd.g, fwd.m, src, dst, self.unit))

    def tables(self, direction: str, channels_first: bool = False, device=None) -> tuple:
        """Gather tables for one direction and layout: numpy arrays, or torch tensors on ``device``.

        Byte unit: ``(g, m)`` with m None when the mask is all zero. Nibble unit: ``(bh, sh, bl, sl, m)``,
        see :func:`_nibble_tables`.
        """
        key = (direction, channels_first, None if device is None else str(device))
        if key not in self._tables:
            if device is not None:
                import torch

                host = self.tables(direction, channels_first)
                self._tables[key] = tuple(
                    None if t is None else torch.from_numpy(t.astype(np.int64) if t.dtype == _IDX else t)
                    .to(device) for t in host)
            else:
                mp = self._layout_map(direction, channels_first)
                if self.unit == "nibble":
                    self._tables[key] = _nibble_tables(mp)
                else:
                    self._tables[key] = (mp.g.astype(_IDX), mp.m if mp.m.any() else None)
        return self._tables[key]

    # -- numpy ----------------------------------------------------------------------------------------
    def apply_numpy(self, flat: np.ndarray, direction: str, channels_first: bool = False) -> np.ndarray:
        """Apply to (N, D) uint8 in HWC (or CHW) flat order; returns a new (N, D) array.

        Large batches are split across a small thread pool (numpy releases the GIL in ``take``).
        """
        if self.is_identity:
            return flat.copy()
        tabs = self.tables(direction, channels_first)
        out = np.empty((flat.shape[0], tabs[0].size), dtype=np.uint8)
        fn = _apply_nibbles_np if self.unit == "nibble" else _apply_bytes_np
        chunks = _chunks(flat.shape[0], flat.nbytes)
        if len(chunks) == 1:
            fn(flat, out, tabs)
        else:
            list(_pool().map(lambda ab: fn(flat[ab[0]:ab[1]], out[ab[0]:ab[1]], tabs), chunks))
        return out

    # -- torch ----------------------------------------------------------------------------------------
    def apply_torch(self, flat, direction: str, channels_first: bool = True):
        """Apply to an (N, D) uint8 torch tensor (CHW flat order when ``channels_first``), on its device.

        CPU tensors share memory with numpy and take the numpy path (faster than ``index_select`` on
        uint8); other devices use torch gathers with the tables cached on that device.
        """
        import torch

        if flat.device.type == "cpu":
            return torch.from_numpy(self.apply_numpy(flat.contiguous().numpy(), direction, channels_first))
        if self.is_identity:
            return flat.clone()
        tabs = self.tables(direction, channels_first, flat.device)
        if self.unit == "nibble":
            bh, sh, bl, sl, m = tabs
            hi = torch.bitwise_left_shift(flat.index_select(1, bh), sh) & 0xF0
            lo = torch.bitwise_right_shift(flat.index_select(1, bl), sl) & 0x0F
            return (hi | lo) ^ m
        g, m = tabs
        out = flat.index_select(1, g)
        if m is not None:
            out ^= m
        return out


    def __getstate__(self):
        state = self.__dict__.copy()
        # device tensors are rebuilt on demand in the receiving process
        state["_tables"] = {k: v for k, v in self._tables.items() if k[2] is None}
        return state


def apply_many(programs, flat, direction: str, channels_first: bool):
    """Apply a different program to every row of ``flat`` (per-image keys) in one vectorised gather.

    The per-image tables are stacked to (N, D) and applied with ``take_along_axis`` / ``gather``; numpy
    arrays and CPU tensors share the numpy path.
    """
    torch_in = not isinstance(flat, np.ndarray)
    device = None if not torch_in or flat.device.type == "cpu" else flat.device
    host = flat.contiguous().numpy() if torch_in and device is None else flat
    per_prog = [p.tables(direction, channels_first) for p in programs]
    if programs[0].unit == "byte":  # a missing mask (all zero) must still stack beside real ones
        per_prog = [(g, np.zeros(g.size, np.uint8) if m is None else m) for g, m in per_prog]
    stacked = [np.stack(t) for t in zip(*per_prog)]
    if device is not None:
        import torch

        stacked = [None if t is None else torch.from_numpy(t.astype(np.int64) if t.dtype == _IDX else t).to(device)
                   for t in stacked]
        take = lambda idx: torch.gather(flat, 1, idx)  # noqa: E731
    else:
        take = lambda idx: np.take_along_axis(host, idx, axis=1)  # noqa: E731
    if programs[0].unit == "nibble":
        bh, sh, bl, sl, m = stacked
        out = ((take(bh) << sh) & 0xF0) | ((take(bl) >> sl) & 0x0F)
        out ^= m
    else:
        g, m = stacked
        out = take(g)
        if m is not None:
            out ^= m
    if torch_in and device is None:
        import torch

        return torch.from_numpy(out)
    return out


def _nibble_tables(mp: Map) -> tuple:
    """Byte-level form of a nibble map, so LE/ELE need two byte gathers and no nibble arrays.

    Output byte j = (high nibble from source half g[2j]) << 4 | (low nibble from source half g[2j+1]),
    XOR the mask. Source half k lives in byte k >> 1, in its high half when k is even. So the high output
    nibble is ``(x[bh] << sh) & 0xF0`` with sh = 4 when the source is a low half (else 0), and the low output
    nibble is ``(x[bl] >> sl) & 0x0F`` with sl = 4 when the source is a high half.
    """
    gh, gl = mp.g[0::2], mp.g[1::2]
    bh, bl = (gh >> 1).astype(_IDX), (gl >> 1).astype(_IDX)
    sh = ((gh & 1) * 4).astype(np.uint8)
    sl = ((1 - (gl & 1)) * 4).astype(np.uint8)
    m = ((mp.m[0::2] << 4) | mp.m[1::2]).astype(np.uint8)
    return bh, sh, bl, sl, m


def _apply_bytes_np(flat: np.ndarray, out: np.ndarray, tabs: tuple) -> None:
    g, m = tabs
    np.take(flat, g, axis=1, out=out)
    if m is not None:
        np.bitwise_xor(out, m, out=out)


def _apply_nibbles_np(flat: np.ndarray, out: np.ndarray, tabs: tuple) -> None:
    bh, sh, bl, sl, m = tabs
    np.take(flat, bh, axis=1, out=out)
    np.left_shift(out, sh, out=out)
    np.bitwise_and(out, 0xF0, out=out)
    lo = np.take(flat, bl, axis=1)
    np.right_shift(lo, sl, out=lo)
    np.bitwise_and(lo, 0x0F, out=lo)
    np.bitwise_or(out, lo, out=out)
    np.bitwise_xor(out, m, out=out)


# Batches above this size are split across threads; below it thread hand-off costs more than it saves.
_PARALLEL_BYTES = 1 << 20
_POOL = None


def _workers() -> int:
    try:
        return max(1, min(4, len(os.sched_getaffinity(0))))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, min(4, os.cpu_count() or 1))


def _pool():
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(_workers(), thread_name_prefix="patchcrypt-cipher")
    return _POOL


def _chunks(n: int, nbytes: int):
    k = min(_workers(), n) if nbytes >= _PARALLEL_BYTES else 1
    bounds = np.linspace(0, n, k + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


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
