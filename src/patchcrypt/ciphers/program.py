"""Compiled ciphers: one gather plus one XOR mask over the flattened image (DESIGN §3).

Every keyed step of every scheme is a map y[i] = x[g[i]] XOR m[i] on a flat array of values (bytes, or
4-bit halves for the learnable-encryption schemes). Such maps compose into one map of the same form:

    (g1, m1) then (g2, m2)  ==  (g1[g2], m1[g2] XOR m2)

so a whole scheme compiles once per (key, image shape) into a single :class:`Program`, and encrypting a
batch is one vectorised gather and one XOR (one pass of a compiled kernel, :mod:`patchcrypt.ciphers.kernels`,
for batches of a megabyte and more when numba is installed). Decryption is again a gather and an XOR:
x = y[g⁻¹] XOR m[g⁻¹].

Memory: steps are composed in their compact block form (:class:`BlockMap`: a block order, in-block
permutations and masks; a few kilobytes for a shared-key scheme, a few bytes per value for a per-block
one). Small images get one cached int32 table per shape; large ones get the table of each band of block
rows just before its gather, so no table of the whole image exists (docs/limits-memory.md).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, Optional, Tuple

import numpy as np

from . import kernels

# Index dtype for gathers: int32 halves the index traffic and is plenty for any image we handle.
_IDX = np.int32


@dataclass(frozen=True)
class Map:
    """y[i] = x[g[i]] ^ m[i] over a flat array; ``g`` a permutation, ``m`` a uint8 mask."""

    g: np.ndarray
    m: np.ndarray

    def then(self, other: "Map") -> "Map":
        """The map that applies ``self`` first and ``other`` second."""
        return Map(self.g[other.g], self.m[other.g] ^ other.m)

    def inverse(self) -> "Map":
        inv = np.empty_like(self.g)
        inv[self.g] = np.arange(self.g.size, dtype=self.g.dtype)
        return Map(inv, self.m[inv])


def index_dtype(size: int):
    """The narrowest gather index type for ``size`` elements: int32 below 2^31 (half the memory), else int64."""
    return np.int32 if size < 2 ** 31 else np.int64


def local_dtype(length: int):
    """Index type for positions inside one block of ``length`` elements (int16 for every block we meet)."""
    return np.int16 if length < 2 ** 15 else np.int32


@dataclass(frozen=True)
class BlockMap:
    """A map acting block by block, in the compact form every keyed step has (DESIGN §3).

    With the image laid out as n blocks of L elements (block order, see blocks.block_layout),
    ``y[b, l] = x[src[b], local[b, l]] ^ mask[b, l]``. ``src`` is (n,) int64 or None (blocks stay);
    ``local`` is (1, L) (one in-block permutation for every block) or (n, L), or None (identity);
    ``mask`` is (1, L) or (n, L) uint8, or None (all zero). A shared step costs O(n + L) memory, a per-block
    one n·L small integers (int16), against 8 bytes per value for a flat int64 :class:`Map`.
    """

    n: int
    L: int
    src: Optional[np.ndarray] = None
    local: Optional[np.ndarray] = None
    mask: Optional[np.ndarray] = None

    @property
    def nbytes(self) -> int:
        return sum(0 if a is None else a.nbytes for a in (self.src, self.local, self.mask))

    def then(self, other: "BlockMap") -> "BlockMap":
        """The map that applies ``self`` first and ``other`` second (same n and L)."""
        if (self.n, self.L) != (other.n, other.L):
            raise ValueError(f"cannot compose block maps of {self.n}x{self.L} and {other.n}x{other.L}")
        self = self.materialized()
        if self.local is not None or self.mask is not None:
            other = other.materialized()  # its rows are read through ours: drawn tables pass through only alone
        if self.src is None:
            src = other.src
        else:
            src = self.src if other.src is None else self.src[other.src]
        local = other.local if self.local is None else _gather_cols(_rows(self.local, other.src), other.local)
        mask = _gather_cols(_rows(self.mask, other.src), other.local)
        if other.mask is not None:
            mask = other.mask if mask is None else mask ^ other.mask
        return BlockMap(self.n, self.L, src, local, mask)

    def lift_to_nibbles(self) -> "BlockMap":
        """The same byte map acting on the (upper, lower) 4-bit halves of every byte: L → 2L."""
        return BlockMap(self.n, 2 * self.L, self.src, *_lift_to_nibbles(self.local, self.mask, self.L))

    def inverse(self) -> "BlockMap":
        """x[src[b], local[b, l]] = y[b, l] ^ mask[b, l], read as a map from y to x."""
        src = rows = None
        if self.src is not None:
            src = np.empty_like(self.src)
            src[self.src] = np.arange(self.n, dtype=self.src.dtype)
            rows = src  # output block b' of the inverse is input block src[b'] of the forward map
        if isinstance(self.local, DrawnRows) and self.local.same_draw(self.mask) and not self.local.inverted:
            return BlockMap(self.n, self.L, src, self.local.inverse(rows), self.mask.inverse(rows))
        self = self.materialized()
        local = _rows(self.local, rows)
        mask = _rows(self.mask, rows)
        if local is not None:
            inv = np.empty_like(local)
            values = np.arange(self.L, dtype=local.dtype)[None, :]
            rows = max(1, _BAND // self.L)  # put_along_axis builds int64 indices as large as its input
            for a in range(0, local.shape[0], rows):
                np.put_along_axis(inv[a:a + rows], local[a:a + rows], values, axis=1)
            local = inv
            mask = _gather_cols(mask, local)
        return BlockMap(self.n, self.L, src, local, mask)

    def is_identity(self) -> bool:
        return self.src is None and self.local is None and self.mask is None

    def materialized(self) -> "BlockMap":
        """The same map with any :class:`DrawnRows` table written out as an array (as large as the image)."""
        if not isinstance(self.local, DrawnRows) and not isinstance(self.mask, DrawnRows):
            return self
        whole = lambda t: np.asarray(t) if isinstance(t, DrawnRows) else t  # noqa: E731
        return BlockMap(self.n, self.L, self.src, whole(self.local), whole(self.mask))

    def to_image(self, height: int, width: int, channels: int, block: int, unit: int = 1) -> Map:
        """The flat :class:`Map` in image (H, W, C) order, built a band of blocks at a time.

        ``unit`` is 2 when elements are 4-bit halves (element 2p + h is half h of byte p). Memory: the result
        (one int32 index and one mask byte per element) plus a band of about a million elements, never an
        int64 array of the whole image.
        """
        size = height * width * channels * unit
        g = np.empty(size, dtype=index_dtype(size))
        m = np.zeros(size, dtype=np.uint8)
        geometry = (height, width, channels, block, unit)
        order = self.drawn_order()
        if order is None:
            for r0, r1 in self.row_bands(height, width, channels, block, unit):
                self._fill(r0, r1, geometry, g, m)
        else:  # the output blocks of each band of stream rows, in stream order
            for a, b in self.stream_bands():
                self._write(order[a:b], self.local.stream_pair(a, b), geometry, g, m, 0)
        return Map(g, m)

    def row_bands(self, height: int, width: int, channels: int, block: int, unit: int = 1):
        """(first, end) block rows of bands of about a million elements; a band of whole block rows is one
        contiguous slice of the flat image."""
        per_band = max(1, _BAND // (block * width * channels * unit))
        rows = height // block
        return [(r, min(rows, r + per_band)) for r in range(0, rows, per_band)]

    def image_band(self, r0: int, r1: int, height: int, width: int, channels: int, block: int,
                   unit: int = 1) -> Tuple[int, Map]:
        """``(start, band)``: the flat map restricted to block rows r0..r1, i.e. output elements
        ``start .. start + len(band.g)``, whose gather indices address the whole image."""
        row_len = block * width * channels * unit
        g = np.empty((r1 - r0) * row_len, dtype=index_dtype(height * width * channels * unit))
        m = np.zeros(g.size, dtype=np.uint8)
        self._fill(r0, r1, (height, width, channels, block, unit), g, m, shift=r0 * row_len)
        return r0 * row_len, Map(g, m)

    def drawn_order(self) -> Optional[np.ndarray]:
        """Output blocks in key-stream order when the tables are a drawn pair read in another order (the
        inverse of a map that moves blocks: output blocks ``order[a:b]`` read stream rows a..b); else None."""
        if isinstance(self.local, DrawnRows) and self.local.same_draw(self.mask):
            return self.local.stream_order()
        return None

    def stream_bands(self) -> list:
        """(first, end) stream rows of bands of about a million elements, for :meth:`stream_band`."""
        step = max(1, _BAND // self.L)
        return [(a, min(self.n, a + step)) for a in range(0, self.n, step)]

    def stream_band(self, a: int, b: int, geometry: tuple, order: np.ndarray) -> Tuple[np.ndarray, Map]:
        """``(blocks, band)`` of a map with a :meth:`drawn_order` ``order``: the output blocks that read stream
        rows a..b and their flat map, block after block (block k's elements at ``k * L``), whose gather
        indices address the whole image. ``geometry`` is (height, width, channels, block, unit)."""
        blocks = order[a:b]
        size = (b - a) * self.L
        g = np.empty(size, dtype=index_dtype(int(np.prod(geometry[:3])) * geometry[4]))
        m = np.zeros(size, dtype=np.uint8)
        self._write(blocks, self.local.stream_pair(a, b), geometry, g, m, None)
        return blocks, Map(g, m)

    def _fill(self, r0: int, r1: int, geometry: tuple, g: np.ndarray, m: np.ndarray, shift: int = 0) -> None:
        """Write the map of block rows r0..r1 into ``g``/``m`` (element e of the image at e - ``shift``)."""
        per_row = geometry[1] // geometry[3]
        a, b = r0 * per_row, r1 * per_row
        self._write(np.arange(a, b, dtype=np.int64), self._band_tables(a, b), geometry, g, m, -shift)

    def _write(self, blocks: np.ndarray, tables: tuple, geometry: tuple, g: np.ndarray, m: np.ndarray,
               shift: Optional[int]) -> None:
        """Write the map of output ``blocks`` with their (local, mask) ``tables`` into ``g``/``m``: at their
        image positions plus ``shift``, or, when ``shift`` is None, block after block from 0."""
        _, width, channels, block, unit = geometry
        per_row = width // block
        offsets = _block_offsets(width, channels, block, unit)
        dst = _block_base(blocks, per_row, width, channels, block, unit)
        src = dst if self.src is None else _block_base(self.src[blocks].astype(np.int64), per_row, width,
                                                       channels, block, unit)
        local, mask = tables
        loc = offsets[None, :] if local is None else offsets[local]
        if shift is None:
            g.reshape(blocks.size, offsets.size)[...] = src[:, None] + loc
            if mask is not None:
                m.reshape(blocks.size, offsets.size)[...] = mask
            return
        dst = dst[:, None] + (offsets[None, :] + shift)
        g[dst] = src[:, None] + loc
        if mask is not None:
            m[dst] = mask

    def _band_tables(self, a: int, b: int) -> tuple:
        """(local, mask) rows of blocks a..b (one shared row, or None, as stored)."""
        if isinstance(self.local, DrawnRows) and self.local.same_draw(self.mask):
            return self.local.pair(a, b)
        pick = lambda t: t if t is None else (t[a:b] if t.shape[0] > 1 else t[:1])  # noqa: E731
        return pick(self.local), pick(self.mask)


class DrawnRows:
    """A per-block in-block permutation and flip mask (LE with a key per block) kept as the key stream they are
    drawn from, and drawn a band of rows at a time when a band is gathered: no table of the whole image exists.

    The stream holds ``count * width`` big-endian 64-bit words (row r's permutation is the stable argsort of
    words ``r * width .. (r + 1) * width``, as :meth:`~patchcrypt.keys.KeyStream.permutations` draws it) and
    then ``count * width`` bits (row r's flips, 15 where set). ``data`` is a
    :class:`~patchcrypt.keys.StreamReader` over them: each band's words are produced when the band is drawn
    and dropped after it (a pass over the image in stream order reads the stream once, in order), and the
    flip bits (one 64th of the stream) are read once and kept. Block b reads row ``rows[b]`` (row b when
    ``rows`` is None); ``inverted`` gives the tables of the inverse map. A :class:`BlockMap` holds two of these
    over the same draw, one as ``local`` and one as ``mask`` (``part``); the pair of a band is drawn at once.
    """

    def __init__(self, data, count: int, width: int, part: str, rows: Optional[np.ndarray] = None,
                 inverted: bool = False):
        self.count, self.width, self.part = int(count), int(width), part
        self.source = data if isinstance(data, _Draw) else _Draw(data, self.count * self.width)
        self.rows, self.inverted = rows, inverted

    @property
    def shape(self) -> Tuple[int, int]:
        return (self.count if self.rows is None else len(self.rows), self.width)

    @property
    def dtype(self):
        return local_dtype(self.width) if self.part == "local" else np.dtype(np.uint8)

    @property
    def nbytes(self) -> int:
        """The bytes the draw holds, counted once for the pair (on ``local``)."""
        return self.source.nbytes if self.part == "local" else 0

    def same_draw(self, other) -> bool:
        return (isinstance(other, DrawnRows) and other.source is self.source and other.rows is self.rows
                and other.inverted == self.inverted)

    def with_part(self, part: str) -> "DrawnRows":
        return DrawnRows(self.source, self.count, self.width, part, self.rows, self.inverted)

    def inverse(self, rows: Optional[np.ndarray]) -> "DrawnRows":
        """The inverse map's table when its output block b' reads forward block ``rows[b']``."""
        if rows is not None and self.rows is not None:
            rows = self.rows[rows]
        return DrawnRows(self.source, self.count, self.width, self.part,
                         rows if rows is not None else self.rows, inverted=True)

    def stream_order(self) -> Optional[np.ndarray]:
        """Output blocks in the order their rows lie in the stream (block ``order[r]`` reads row r), when
        ``rows`` is a permutation that is not the identity (the inverse of a map that moves blocks); else
        None: output order is stream order."""
        if self.rows is None or len(self.rows) != self.count:
            return None
        order = np.empty(self.count, dtype=np.int64)
        order[np.asarray(self.rows, dtype=np.int64)] = np.arange(self.count, dtype=np.int64)
        return order

    def pair(self, a: int, b: int) -> Tuple[np.ndarray, np.ndarray]:
        """(local, mask) of output blocks a..b: (b - a, width) int16 and uint8."""
        if self.rows is None:
            return self.stream_pair(a, b)
        r = np.asarray(self.rows[a:b], dtype=np.int64)
        if r.size and r[-1] - r[0] == r.size - 1 and np.all(np.diff(r) == 1):
            return self.stream_pair(int(r[0]), int(r[-1]) + 1)
        return self._scattered(r)

    def stream_pair(self, a: int, b: int, keep: bool = True) -> Tuple[np.ndarray, np.ndarray]:
        """(local, mask) drawn from stream rows a..b, (b - a, width) int16 and uint8; ``keep=False`` when no
        read will ask for the rows before a (see :meth:`~patchcrypt.keys.StreamReader.read_at`)."""
        w = self.width
        flips = self.source.flips(self.count, w)  # first: on first use they are read with a reader of their own
        words = np.frombuffer(self.source.words(a, b, w, keep), dtype=">u8").reshape(b - a, w)
        perm = np.argsort(words.astype(np.uint64), axis=1, kind="stable")
        if w % 8 == 0:  # every row starts on a byte (any even M)
            mask = np.unpackbits(flips[a * w // 8:b * w // 8].reshape(b - a, w // 8), axis=1) * np.uint8(15)
        else:
            pos = np.arange(a * w, b * w, dtype=np.int64).reshape(b - a, w)  # bit positions
            mask = ((flips[pos >> 3] >> (7 - (pos & 7)).astype(np.uint8)) & 1) * np.uint8(15)
        if self.inverted:  # x[perm[l]] = y[l] ^ mask[l]: y[inv[l']] ^ mask[inv[l']] gives x[l']
            inv = np.empty_like(perm)
            np.put_along_axis(inv, perm, np.arange(w, dtype=perm.dtype)[None, :], axis=1)
            perm, mask = inv, np.take_along_axis(mask, inv, axis=1)
        return perm.astype(local_dtype(w)), mask.astype(np.uint8, copy=False)

    def _scattered(self, r: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(local, mask) for rows ``r`` in any order: drawn in stream order over the rows they span, a band
        at a time (with a stream reader, one pass over that span: rows behind its position start it again)."""
        local = np.empty((r.size, self.width), dtype=local_dtype(self.width))
        mask = np.empty((r.size, self.width), dtype=np.uint8)
        order = np.argsort(r, kind="stable")
        ordered = r[order]
        step = max(1, _BAND // self.width)
        first = int(ordered[0]) if r.size else 0
        for a in range(first, int(ordered[-1]) + 1 if r.size else first, step):
            i, j = np.searchsorted(ordered, [a, a + step])
            if i < j:
                perm, flips = self.stream_pair(a, min(self.count, a + step), keep=False)
                local[order[i:j]], mask[order[i:j]] = perm[ordered[i:j] - a], flips[ordered[i:j] - a]
        return local, mask

    def __getitem__(self, key):
        if isinstance(key, slice) and key.step in (None, 1):
            a, b, _ = key.indices(self.shape[0])
            return self.pair(a, b)[0 if self.part == "local" else 1]
        rows = np.arange(self.shape[0])[key] if self.rows is None else self.rows[key]
        return DrawnRows(self.source, self.count, self.width, self.part, np.asarray(rows), self.inverted)

    def __array__(self, dtype=None, copy=None):
        if self.rows is not None:
            out = self._scattered(np.asarray(self.rows, dtype=np.int64))[0 if self.part == "local" else 1]
            return out if dtype is None else out.astype(dtype)
        out = np.empty(self.shape, dtype=self.dtype)
        step = max(1, _BAND // self.width)
        for a in range(0, self.shape[0], step):
            out[a:a + step] = self[a:a + step]
        return out if dtype is None else out.astype(dtype)


class _Draw:
    """What the local and mask :class:`DrawnRows` of one draw share: the :class:`~patchcrypt.keys.StreamReader`
    over its stream bytes, and the flip bits once read (pickled once for the pair, as the reader)."""

    __slots__ = ("reader", "values", "_flips", "_lock")

    def __init__(self, reader, values: int):
        self.reader, self.values = reader, int(values)  # values: words before the flip bits
        self._flips = None
        self._lock = threading.Lock()

    def __reduce__(self):
        return (_Draw, (self.reader, self.values))

    @property
    def nbytes(self) -> int:
        return self.reader.nbytes + (0 if self._flips is None else self._flips.nbytes)

    def words(self, a: int, b: int, width: int, keep: bool = True) -> bytes:
        """The words of rows a..b (``width`` per row)."""
        return self.reader.read_at(8 * a * width, 8 * (b - a) * width, keep)

    def flips(self, count: int, width: int) -> np.ndarray:
        """Every row's flip bits, packed (uint8)."""
        with self._lock:
            if self._flips is None:  # a reader of its own: the words' reader keeps its place
                size = (count * width + 7) // 8
                self._flips = np.frombuffer(self.reader.fresh().read_at(8 * self.values, size, keep=False),
                                            dtype=np.uint8)
            return self._flips


def _block_base(blocks: np.ndarray, per_row: int, width: int, channels: int, block: int, unit: int) -> np.ndarray:
    """Flat image index (in elements) of the first element of each block number (row-major blocks)."""
    return ((blocks // per_row) * block * width + (blocks % per_row) * block) * channels * unit


def _block_offsets(width: int, channels: int, block: int, unit: int) -> np.ndarray:
    """(L·unit,) distance in the flat image of every block element from the block's first element."""
    i, j, ch = np.meshgrid(np.arange(block), np.arange(block), np.arange(channels), indexing="ij")
    off = ((i * width + j) * channels + ch).reshape(-1).astype(np.int64)
    if unit == 1:
        return off
    return (unit * off[:, None] + np.arange(unit)[None, :]).reshape(-1)


_BAND = 1 << 20  # elements per band when a block map is written out in image order


def _rows(table: Optional[np.ndarray], src: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """Rows of a (1 or n, L) per-block table seen by each output block when blocks move by ``src``."""
    if table is None or src is None or table.shape[0] == 1:
        return table
    return table[src]


def _gather_cols(table: Optional[np.ndarray], local: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """``table[b, local[b, l]]`` with either side (1, L) or (n, L) (broadcast over blocks)."""
    if table is None or local is None:
        return table
    if table.shape[0] == 1:
        return table[0][local]
    if local.shape[0] == 1:
        return table[:, local[0]]
    # a band of rows at a time: take_along_axis builds int64 index arrays as large as its input
    out = np.empty(local.shape, dtype=table.dtype)
    rows = max(1, _BAND // local.shape[1])
    for a in range(0, local.shape[0], rows):
        out[a:a + rows] = np.take_along_axis(table[a:a + rows], local[a:a + rows], axis=1)
    return out


class Program:
    """A compiled encryption map for one image shape, with its inverse and per-layout/device tables.

    Attributes:
        map: the forward :class:`Map` in HWC flat order (over bytes, or over 4-bit halves when
            ``unit == "nibble"``); ``map.inverse()`` decrypts.
        unit: "byte" or "nibble" (LE/ELE act on 4-bit halves).
        shape_in / shape_out: (H, W, C) of the plain and encrypted image.

    Built from a :class:`BlockMap` (:meth:`from_blocks`), each direction's flat map is written out only when
    first used, so encrypting never builds the decryption tables and the other way round.
    """

    def __init__(self, fwd: Map, unit: str, shape_in: Tuple[int, int, int], shape_out=None):
        self.unit = unit
        self.shape_in = tuple(shape_in)
        self.shape_out = tuple(shape_out or shape_in)
        self._compact: Optional[BlockMap] = None
        self._compact_dec: Optional[BlockMap] = None
        self._block = 0
        self._elements = 2 if unit == "nibble" else 1  # elements (4-bit halves or bytes) per byte
        self._maps: Dict[str, Map] = {} if fwd is None else {"enc": fwd}
        self._tables: Dict[tuple, tuple] = {}
        self.is_identity = fwd is not None and self.shape_in == self.shape_out and _is_identity(fwd)

    @classmethod
    def from_blocks(cls, fwd: BlockMap, unit: str, shape: Tuple[int, int, int], block: int) -> "Program":
        """A program for plain images of ``shape`` = (H, W, C) cut into ``block``×``block`` blocks."""
        prog = cls(None, unit, shape)
        prog._compact = fwd
        prog._block = int(block)
        prog.is_identity = fwd.is_identity()
        return prog

    @property
    def map(self) -> Map:
        """The forward map (see the class docstring)."""
        return self._direction_map("enc")

    @property
    def nbytes(self) -> int:
        """Host memory this program holds (compact map, flat maps, host tables)."""
        arrays = {}
        for mp in self._maps.values():
            arrays.update({id(mp.g): mp.g, id(mp.m): mp.m})
        for key, tabs in self._tables.items():
            if key[2] is None:
                arrays.update({id(t): t for t in tabs if t is not None})
        for bm in (self._compact, self._compact_dec):
            for t in () if bm is None else (bm.src, bm.local, bm.mask):
                if isinstance(t, DrawnRows):  # both directions read the same draw
                    arrays[id(t.source)] = t.source
                elif t is not None:
                    arrays[id(t)] = t
        return sum(a.nbytes for a in arrays.values())

    def _direction_compact(self, direction: str) -> BlockMap:
        if direction == "enc":
            return self._compact
        if self._compact_dec is None:
            self._compact_dec = self._compact.inverse()
        return self._compact_dec

    def _direction_map(self, direction: str) -> Map:
        mp = self._maps.get(direction)
        if mp is None:
            if self._compact is not None:
                h, w, c = self.shape_in
                mp = self._direction_compact(direction).to_image(h, w, c, self._block, self._elements)
            else:
                mp = self._maps["enc"].inverse()
            self._maps[direction] = mp
        return mp

    def _layout_map(self, direction: str, channels_first: bool) -> Map:
        fwd = self._direction_map(direction)
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
                    g = mp.g.astype(index_dtype(mp.g.size), copy=False)  # no copy when already int32
                    self._tables[key] = (g, mp.m if mp.m.any() else None)
        return self._tables[key]

    # -- numpy ----------------------------------------------------------------------------------------
    def apply_numpy(self, flat: np.ndarray, direction: str, channels_first: bool = False) -> np.ndarray:
        """Apply to (N, D) uint8 in HWC (or CHW) flat order; returns a new (N, D) array.

        Large batches are split across a small thread pool (numpy's ``take`` and the compiled kernels of
        :mod:`patchcrypt.ciphers.kernels` release the GIL). Large images are gathered a band of output values
        at a time: ``numpy.take`` widens its indices to int64, which for a whole 40 MP image would be 8 bytes
        per value on top of the int32 table.
        """
        if self.is_identity:
            return flat.copy()
        fn = _applier(self.unit, flat.nbytes)
        size = int(np.prod(self.shape_in))
        if size > _BAND and self._compact is not None and not channels_first and direction not in self._maps:
            return self._apply_bands(flat, direction, fn)
        if size > _BAND:
            if self.unit == "nibble":  # tables of one band at a time, from the flat map (no second copy)
                mp = self._layout_map(direction, channels_first)
                band_tabs = lambda a, b: _nibble_tables(Map(mp.g[2 * a:2 * b], mp.m[2 * a:2 * b]))  # noqa: E731
            else:
                tabs = self.tables(direction, channels_first)
                band_tabs = lambda a, b: _band(tabs, a, b)  # noqa: E731
            out = np.empty((flat.shape[0], size), dtype=np.uint8)
            bands = [(i, a, min(size, a + _BAND)) for i in range(flat.shape[0]) for a in range(0, size, _BAND)]
            list(_pool().map(lambda iab: fn(flat[iab[0]:iab[0] + 1], out[iab[0]:iab[0] + 1, iab[1]:iab[2]],
                                            band_tabs(iab[1], iab[2])), bands))
            return out
        tabs = self.tables(direction, channels_first)
        out = np.empty((flat.shape[0], tabs[0].size), dtype=np.uint8)
        chunks = _chunks(flat.shape[0], flat.nbytes)
        if len(chunks) == 1:
            fn(flat, out, tabs)
        else:
            list(_pool().map(lambda ab: fn(flat[ab[0]:ab[1]], out[ab[0]:ab[1]], tabs), chunks))
        return out

    def _apply_bands(self, flat: np.ndarray, direction: str, fn) -> np.ndarray:
        """Large images: each band of block rows gets its tables from the compact map just before its
        gather, so no table of the whole image exists (a few bytes per value of key material at most)."""
        bm = self._direction_compact(direction)
        h, w, c = self.shape_in
        unit = self._elements
        out = np.empty(flat.shape, dtype=np.uint8)

        if bm.drawn_order() is not None:
            return self._apply_stream_bands(flat, bm, fn, out)

        def work(rows: Tuple[int, int]) -> None:
            start, mp = bm.image_band(rows[0], rows[1], h, w, c, self._block, unit)
            tabs = _nibble_tables(mp) if unit == 2 else (mp.g, mp.m if bm.mask is not None else None)
            a, b = start // unit, (start + mp.g.size) // unit
            for i in range(flat.shape[0]):
                fn(flat[i:i + 1], out[i:i + 1, a:b], tabs)

        list(_pool().map(work, bm.row_bands(h, w, c, self._block, unit)))
        return out

    def _apply_stream_bands(self, flat: np.ndarray, bm: BlockMap, fn, out: np.ndarray) -> np.ndarray:
        """Large images whose drawn key material is read in another order than the output's (decryption of
        ele): each band of stream rows is gathered into the output blocks that read it, so the key stream is
        still read once, in order; the band is gathered block after block and then put in place."""
        h, w, c = self.shape_in
        geometry = (h, w, c, self._block, self._elements)
        offsets = _block_offsets(w, c, self._block, 1)
        order = bm.drawn_order()

        def work(rows: Tuple[int, int]) -> None:
            blocks, mp = bm.stream_band(rows[0], rows[1], geometry, order)
            tabs = _nibble_tables(mp) if self._elements == 2 else (mp.g, mp.m)
            dst = (_block_base(blocks, w // self._block, w, c, self._block, 1)[:, None] + offsets).reshape(-1)
            band = np.empty((1, dst.size), dtype=np.uint8)
            for i in range(flat.shape[0]):
                fn(flat[i:i + 1], band, tabs)
                out[i, dst] = band[0]

        list(_pool().map(work, bm.stream_bands()))
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


@dataclass(frozen=True)
class BlockBatch:
    """N compact block maps of one geometry stacked, one per image (per-image keys): :class:`BlockMap`'s
    ``src`` as (N, n), ``local`` as (N, 1, L) or (N, n, L), ``mask`` likewise (uint8) or (N, n, 1) for a mask
    constant over each block (negative–positive); None as there. Composed and inverted with array operations
    over the whole batch, never a Python loop over images.

    In-block gathers drawn from a few fixed ones (the 8 dihedral states, the 6 colour orders) may instead be
    kept as ``states`` (N, 1 or n) into ``table`` (K, L), ``local`` being None: composing two such steps
    composes the K1 × K2 tables once and adds the states, instead of a gather as large as the batch.
    """

    count: int
    n: int
    L: int
    src: Optional[np.ndarray] = None
    local: Optional[np.ndarray] = None
    mask: Optional[np.ndarray] = None
    states: Optional[np.ndarray] = None
    table: Optional[np.ndarray] = None

    # Composed state tables up to this many rows (each L small integers) stay tables.
    MAX_STATES = 1 << 10

    @classmethod
    def stack(cls, maps) -> "BlockBatch":
        """The batch of a list of :class:`BlockMap` of the same n and L."""
        maps = [bm.materialized() for bm in maps]
        n, L = maps[0].n, maps[0].L
        src = None
        if any(bm.src is not None for bm in maps):
            src = np.stack([np.arange(n) if bm.src is None else bm.src for bm in maps]).astype(np.int64)
        local = _stack_rows([bm.local for bm in maps], L, local_dtype(L), np.arange(L))
        mask = _stack_rows([bm.mask for bm in maps], L, np.uint8, np.zeros(L, dtype=np.uint8))
        return cls(len(maps), n, L, src, local, mask)

    def gathers(self) -> Optional[np.ndarray]:
        """The in-block gathers as an array, (N, 1 or n, L), or None (identity)."""
        return self.table[self.states] if self.states is not None else self.local

    def then(self, other: "BlockBatch") -> "BlockBatch":
        """Every image's :meth:`BlockMap.then` at once: ``self`` first, ``other`` second."""
        if self.src is None:
            src = other.src
        else:
            src = self.src if other.src is None else np.take_along_axis(self.src, other.src, axis=1)
        mask = _batch_rows(self.mask, other.src)
        if mask is not None and mask.shape[2] > 1 and (other.states is not None or other.local is not None):
            mask = _cols(mask, other.gathers())
        if other.mask is not None:
            mask = other.mask if mask is None else mask ^ other.mask
        local = states = table = None
        if self.states is None and self.local is None:
            local, states, table = other.local, other.states, other.table
        elif other.states is None and other.local is None:
            local, states, table = _batch_rows(self.local, other.src), _batch_rows(self.states, other.src), self.table
        elif (self.states is not None and other.states is not None
              and len(self.table) * len(other.table) <= self.MAX_STATES):
            k = len(other.table)  # state (i, j): self's table i read through other's table j
            table = self.table[:, other.table].reshape(-1, self.L)
            states = _batch_rows(self.states, other.src) * k + other.states
        else:
            local = _cols(_batch_rows(self.gathers(), other.src), other.gathers())
        return BlockBatch(self.count, self.n, self.L, src, local, mask, states, table)

    def inverse(self) -> "BlockBatch":
        """Every image's :meth:`BlockMap.inverse` at once."""
        src = None
        if self.src is not None:
            src = np.empty_like(self.src)
            np.put_along_axis(src, self.src, np.arange(self.n, dtype=src.dtype)[None, :], axis=1)
        mask, local, states, table = _batch_rows(self.mask, src), None, None, None
        if self.states is not None:
            states = _batch_rows(self.states, src)
            table = np.argsort(self.table, axis=1, kind="stable").astype(self.table.dtype)
            if mask is not None and mask.shape[2] > 1:
                mask = _cols(mask, table[states])
        elif self.local is not None:
            local = _batch_rows(self.local, src)
            inv = np.empty_like(local)
            np.put_along_axis(inv, local, np.arange(self.L, dtype=local.dtype)[None, None, :], axis=2)
            local = inv
            mask = _cols(mask, local)
        return BlockBatch(self.count, self.n, self.L, src, local, mask, states, table)

    def lift_to_nibbles(self) -> "BlockBatch":
        """Every image's :meth:`BlockMap.lift_to_nibbles` at once."""
        local, mask = _lift_to_nibbles(self.gathers(), self.mask, self.L)
        return BlockBatch(self.count, self.n, 2 * self.L, self.src, local, mask)


def _lift_to_nibbles(local: Optional[np.ndarray], mask: Optional[np.ndarray], L: int) -> tuple:
    """(local, mask) in-block tables (..., L) of a byte map as the tables (..., 2L) of the same map on the
    (upper, lower) 4-bit halves of every byte; None stays None."""
    nibble_local = nibble_mask = None
    if local is not None:
        nibble_local = np.empty((*local.shape[:-1], 2 * L), dtype=local_dtype(2 * L))
        nibble_local[..., 0::2] = 2 * local
        nibble_local[..., 1::2] = 2 * local + 1
    if mask is not None:
        nibble_mask = np.empty((*mask.shape[:-1], 2 * L), dtype=np.uint8)
        nibble_mask[..., 0::2] = mask >> 4
        nibble_mask[..., 1::2] = mask & 15
    return nibble_local, nibble_mask


def _stack_rows(tables, L: int, dtype, identity: np.ndarray) -> Optional[np.ndarray]:
    """(N, k, L) of per-image (1 or n, L) tables or None (``identity`` rows), k the most rows any has."""
    if all(t is None for t in tables):
        return None
    k = max(t.shape[0] for t in tables if t is not None)
    return np.stack([np.broadcast_to(identity if t is None else t, (k, L)) for t in tables]).astype(dtype)


def _batch_rows(table: Optional[np.ndarray], src: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """:func:`_rows` for every image: rows of (N, k, ...) ``table`` seen by each output block under (N, n)
    ``src`` (per-block tables or states)."""
    if table is None or src is None or table.shape[1] == 1:
        return table
    index = src.reshape(src.shape + (1,) * (table.ndim - 2))
    return np.take_along_axis(table, index, axis=1)


def _cols(table: Optional[np.ndarray], local: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """:func:`_gather_cols` for every image: ``table[i, b, local[i, b, l]]``, row counts broadcast. A table of
    one column (a mask constant over each block) reads the same whatever the in-block order."""
    if table is None or local is None or table.shape[2] == 1:
        return table
    count, k, width = table.shape
    rows = max(k, local.shape[1])
    # one flat take: take_along_axis would build an int64 index per axis as large as the batch
    first = np.arange(count, dtype=np.int64)[:, None] * (k * width)
    if k > 1:
        first = first + np.arange(k, dtype=np.int64)[None, :] * width
    idx = first[:, :, None] + local
    if idx.shape[1] != rows:
        idx = np.broadcast_to(idx, (count, rows, width))
    return np.take(table.reshape(-1), idx, mode="wrap")


def apply_blockwise(maps, flat, shape: Tuple[int, int, int], block: int, unit: str, channels_first: bool):
    """Apply a different compact block map to every row of ``flat`` (per-image keys).

    ``maps`` is a :class:`BlockBatch` (or a list of :class:`BlockMap`, stacked into one). Every image's gather
    indices are built at once in block order from the stacked block orders and in-block gathers (a flat
    position is a block's base plus an in-block offset, in HWC as in CHW order), the batch is gathered and
    XORed in block order, and one fixed column order puts it in image order; numpy arrays and CPU tensors
    share the numpy path. For images of up to a million values (see :class:`Cipher`, which takes another
    path above that).
    """
    bb = maps if isinstance(maps, BlockBatch) else BlockBatch.stack(maps)
    half = 2 if unit == "nibble" else 1
    base, offsets, order = _batch_layout(tuple(shape), block, half, channels_first)
    count, size = bb.count, order.size
    head = (base[None, :] if bb.src is None else base[bb.src]) + (np.arange(count, dtype=np.int64) * size)[:, None]
    if bb.states is not None:  # rows of a small table: no per-value lookup into ``offsets``
        tail = np.take(offsets[bb.table], bb.states, axis=0)
    else:
        tail = offsets[None, None, :] if bb.local is None else offsets[bb.local]
    if tail.shape[:2] == head.shape and (bb.states is not None or bb.local is not None):
        tail += head[:, :, None]  # a fresh array: add in place
        g = tail
    else:
        g = head[:, :, None] + tail
    torch_in = not isinstance(flat, np.ndarray)
    device = None if not torch_in or flat.device.type == "cpu" else flat.device
    host = flat.contiguous().numpy() if torch_in and device is None else flat
    if unit != "nibble" and device is None:  # gather and XOR in block order, then one column order (bytes)
        out = np.take(host.reshape(-1), g, mode="wrap")
        if bb.mask is not None:
            out ^= bb.mask
        out = np.take(out.reshape(count, size), order, axis=1)
        if torch_in:
            import torch

            return torch.from_numpy(out)
        return out
    g = np.take(g.reshape(count, size), order, axis=1)
    m = np.zeros((count, size), dtype=np.uint8)
    if bb.mask is not None:
        m.reshape(count, bb.n, bb.L)[...] = bb.mask
        m = np.take(m, order, axis=1)
    tabs = [g, m] if unit != "nibble" else _nibble_batch(g, m)
    if device is not None:
        import torch

        tabs = [torch.from_numpy(t).to(device) for t in tabs]
        take = lambda idx: torch.take(flat, idx)  # noqa: E731
    else:
        take = lambda idx: np.take(host.reshape(-1), idx, mode="wrap")  # noqa: E731
    if unit == "nibble":
        bh, sh, bl, sl, m = tabs
        out = ((take(bh) << sh) & 0xF0) | ((take(bl) >> sl) & 0x0F)
    else:
        g, m = tabs
        out = take(g)
    out ^= m
    if torch_in and device is None:
        import torch

        return torch.from_numpy(out)
    return out


def _nibble_batch(g: np.ndarray, m: np.ndarray) -> list:
    """Byte tables of (N, 2D) nibble gathers and masks in output order, as :func:`_nibble_tables` builds them."""
    gh, gl = g[:, 0::2], g[:, 1::2]
    return [gh >> 1, ((gh & 1) * 4).astype(np.uint8), gl >> 1, ((1 - (gl & 1)) * 4).astype(np.uint8),
            ((m[:, 0::2] << 4) | m[:, 1::2]).astype(np.uint8)]


@lru_cache(maxsize=16)
def _batch_layout(shape: Tuple[int, int, int], block: int, unit: int, channels_first: bool) -> tuple:
    """``(base, offsets, order)`` of one image geometry: element l of block b sits at flat position
    ``base[b] + offsets[l]`` (HWC, or CHW when ``channels_first``; in 4-bit halves when ``unit`` is 2), and
    output position q holds block-order element ``order[q]``."""
    h, w, c = shape
    per_row = w // block
    n = (h // block) * per_row
    base = _block_base(np.arange(n, dtype=np.int64), per_row, w, c, block, unit)
    offsets = _block_offsets(w, c, block, unit)
    pos = (base[:, None] + offsets[None, :]).reshape(-1)
    if channels_first:
        p = _chw_order(shape)
        if unit == 2:
            p = np.stack((2 * p, 2 * p + 1), axis=1).reshape(-1)
        inv = np.empty_like(p)
        inv[p] = np.arange(p.size)
        pos = inv[pos]
        # a block's CHW positions are its first element's plus offsets the same for every block
        base, offsets = pos[::offsets.size].copy(), pos[:offsets.size] - pos[0]
    order = np.empty_like(pos)
    order[pos] = np.arange(pos.size)
    for a in (base, offsets, order):
        a.setflags(write=False)
    return base, offsets, order


def _is_identity(mp: Map) -> bool:
    """Whether a flat map moves and flips nothing (checked a band at a time, without a full arange)."""
    if mp.m.any():
        return False
    for a in range(0, mp.g.size, _BAND):
        b = min(mp.g.size, a + _BAND)
        if not np.array_equal(mp.g[a:b], np.arange(a, b)):
            return False
    return True


def _nibble_tables(mp: Map) -> tuple:
    """Byte-level form of a nibble map, so LE/ELE need no nibble arrays: two byte gathers with numpy, or one
    pass of :func:`patchcrypt.ciphers.kernels.nibble_gather` over the same tables.

    Output byte j = (high nibble from source half g[2j]) << 4 | (low nibble from source half g[2j+1]),
    XOR the mask. Source half k lives in byte k >> 1, in its high half when k is even. So the high output
    nibble is ``(x[bh] << sh) & 0xF0`` with sh = 4 when the source is a low half (else 0), and the low output
    nibble is ``(x[bl] >> sl) & 0x0F`` with sl = 4 when the source is a high half.
    """
    gh, gl = mp.g[0::2], mp.g[1::2]
    bh, bl = (gh >> 1).astype(index_dtype(gh.size)), (gl >> 1).astype(index_dtype(gl.size))
    sh = ((gh & 1) * 4).astype(np.uint8)
    sl = ((1 - (gl & 1)) * 4).astype(np.uint8)
    m = ((mp.m[0::2] << 4) | mp.m[1::2]).astype(np.uint8)
    return bh, sh, bl, sl, m


def _band(tabs: tuple, a: int, b: int) -> tuple:
    """The tables of output values a..b (every table is indexed by output position)."""
    return tuple(None if t is None else t[a:b] for t in tabs)


# Gathers use mode="wrap": every table is a permutation of in-range indices, so the mode never changes a
# value, and numpy buffers ``out`` (a second copy of the output) and checks each index only in its default
# "raise" mode (benchmarks/costs.py --rows speed: etc and le about 1.5x less CPU time at 224).
_TAKE = "wrap"


# Batches of at least this many bytes take the compiled kernels (ciphers/kernels.py) when numba is there: a
# process's first kernel call costs about a second (importing numba, compiling or loading the code), which a
# single small image would feel and a batch of a few megabytes repays (benchmarks/costs.py --rows firstcall).
_JIT_BYTES = 1 << 20


def _applier(unit: str, nbytes: int):
    """``fn(flat, out, tabs)`` applying one direction's tables (:meth:`Program.tables`) to a batch of
    ``nbytes``: a compiled kernel (one pass, each output byte written once) or the numpy gathers."""
    kernel = None
    if nbytes >= _JIT_BYTES:
        kernel = kernels.nibble_gather() if unit == "nibble" else kernels.byte_gather()
    if kernel is None:
        return _apply_nibbles_np if unit == "nibble" else _apply_bytes_np
    return lambda flat, out, tabs: kernel(flat, out, *tabs)


def _apply_bytes_np(flat: np.ndarray, out: np.ndarray, tabs: tuple) -> None:
    g, m = tabs
    np.take(flat, g, axis=1, out=out, mode=_TAKE)
    if m is not None:
        np.bitwise_xor(out, m, out=out)


def _apply_nibbles_np(flat: np.ndarray, out: np.ndarray, tabs: tuple) -> None:
    bh, sh, bl, sl, m = tabs
    np.take(flat, bh, axis=1, out=out, mode=_TAKE)
    np.left_shift(out, sh, out=out)
    np.bitwise_and(out, 0xF0, out=out)
    lo = np.empty_like(out)
    np.take(flat, bl, axis=1, out=lo, mode=_TAKE)
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
