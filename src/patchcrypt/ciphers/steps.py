"""The keyed block-wise steps of DESIGN §3, each as a :class:`~.program.BlockMap`.

A step function takes a key stream and the block geometry and returns the map acting on the image laid
out block by block: element ``b * L + l`` is value ``l`` (row, column, channel order) of block ``b``. The
compact form keeps key material at its own size (a block order, in-block permutations, masks), so a
large image never needs an int64 index per value while the scheme is compiled.
Steps never loop over blocks in Python; per-block key material is drawn as arrays and applied by
broadcasting.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import PatchcryptError
from ..keys import KeyStream, StreamBatch
from .program import BlockBatch, BlockMap, DrawnRows, local_dtype

LOG10_2 = math.log10(2)
COLOUR_ORDERS = np.array(list(itertools.permutations(range(3))), dtype=np.int64)  # the 6 orders


def log10_factorial(n: int) -> float:
    return math.lgamma(n + 1) / math.log(10)


@dataclass(frozen=True)
class Geometry:
    """n blocks of M×M pixels with C channels; L = M·M·C values per block."""

    n: int
    m: int
    c: int

    @property
    def L(self) -> int:  # noqa: N802 - the symbol of the design
        return self.m * self.m * self.c


@lru_cache(maxsize=32)
def dihedral_tables(m: int, c: int) -> np.ndarray:
    """(8, L) in-block gathers for the 8 dihedral states.

    State s: ``s % 4`` counter-clockwise quarter turns (numpy.rot90), then a horizontal (left–right)
    flip when ``s >= 4``.
    """
    local = np.arange(m * m * c, dtype=np.int64).reshape(m, m, c)
    out = []
    for s in range(8):
        a = np.rot90(local, k=s % 4, axes=(0, 1))
        if s >= 4:
            a = a[:, ::-1]
        out.append(a.reshape(-1))
    return np.stack(out)


@lru_cache(maxsize=32)
def colour_tables(m: int) -> np.ndarray:
    """(6, L) in-block gathers: output channel k of every pixel takes input channel order[k]."""
    local = np.arange(m * m * 3, dtype=np.int64).reshape(m, m, 3)
    return np.stack([local[:, :, order].reshape(-1) for order in COLOUR_ORDERS])


def _local(table: np.ndarray, L: int) -> np.ndarray:
    """In-block gathers as the compact index type (int16 for any block we meet), before any per-block copy."""
    return np.ascontiguousarray(table, dtype=local_dtype(L))


def _row_permutations(stream: KeyStream, count: int, n: int) -> np.ndarray:
    """``stream.permutations(count, n)`` as compact indices, drawn a band of rows at a time.

    The stream is read in the same order, so the permutations are the same; only the int64 words and
    argsort results of one band exist at once, not of every block of a large image.
    """
    out = np.empty((count, n), dtype=local_dtype(n))
    rows = max(1, (1 << 20) // n)
    for a in range(0, count, rows):
        b = min(count, a + rows)
        out[a:b] = stream.permutations(b - a, n)
    return out


def _integers(stream: KeyStream, m: int, size: int) -> np.ndarray:
    """``stream.integers(m, size)`` for m ≤ 256 as uint8, drawn and filtered a band of words at a time.

    The same words are read in the same order and accepted by the same rule, so the values are the same;
    a per-pixel draw on a 40 MP image then costs one byte per value instead of several int64 copies.
    """
    if size <= _DRAW_BAND or m == 1 or m > 256:
        return stream.integers(m, size)
    limit = (1 << 64) - ((1 << 64) % m)
    out = np.empty(size, dtype=np.uint8)
    got = 0
    while got < size:  # KeyStream.integers: draw (missing + 8) words, keep those under the limit
        want = max(size - got, 1) + 8
        for a in range(0, want, _DRAW_BAND):
            w = stream.words(min(_DRAW_BAND, want - a))
            if limit < (1 << 64):
                w = w[w < np.uint64(limit)]
            take = min(w.size, size - got)
            out[got:got + take] = w[:take] % np.uint64(m)
            got += take
    return out


_DRAW_BAND = 1 << 20


def block_scramble(stream: KeyStream, geo: Geometry) -> BlockMap:
    """BS: output block i is input block π[i]."""
    return BlockMap(geo.n, geo.L, src=stream.permutation(geo.n))


def rotate_flip(stream: KeyStream, geo: Geometry, shared: bool = False) -> BlockMap:
    """RF: each block (or all blocks, when ``shared``) gets one of the 8 dihedral states."""
    states = _integers(stream, 8, 1 if shared else geo.n)
    return BlockMap(geo.n, geo.L, local=_local(dihedral_tables(geo.m, geo.c), geo.L)[states])


def negative_positive(stream: KeyStream, geo: Geometry) -> BlockMap:
    """NP: a keyed bit per block; set bits invert the whole block (v → 255 − v)."""
    bits = stream.bits(geo.n)
    m = np.repeat(np.where(bits, 255, 0).astype(np.uint8)[:, None], geo.L, axis=1)
    return BlockMap(geo.n, geo.L, mask=m)


def bit_flip(stream: KeyStream, geo: Geometry) -> BlockMap:
    """BF: one mask of L bits shared by every block; set positions invert (v → 255 − v)."""
    bits = stream.bits(geo.L)
    return BlockMap(geo.n, geo.L, mask=np.where(bits, 255, 0).astype(np.uint8)[None, :])


def value_negative_positive(stream: KeyStream, geo: Geometry) -> BlockMap:
    """Per-value NP (pixel-based encryption): an independent bit for every value of the image."""
    bits = stream.bits(geo.n * geo.L)
    return BlockMap(geo.n, geo.L, mask=(bits.view(np.uint8) * np.uint8(255)).reshape(geo.n, geo.L))


def colour_shuffle(stream: KeyStream, geo: Geometry, shared: bool = False) -> BlockMap:
    """CS: each block (or all blocks, when ``shared``) gets one of the 6 orders of its 3 channels."""
    if geo.c != 3:
        raise PatchcryptError(f"colour shuffling needs 3 channels, the images have {geo.c}")
    orders = _integers(stream, 6, 1 if shared else geo.n)
    return BlockMap(geo.n, geo.L, local=_local(colour_tables(geo.m), geo.L)[orders])


def pixel_shuffle(stream: KeyStream, geo: Geometry, shared: bool = True) -> BlockMap:
    """PS: the L values of a block permuted by σ (one σ for all blocks, or one per block)."""
    return BlockMap(geo.n, geo.L, local=_row_permutations(stream, 1 if shared else geo.n, geo.L))


def learnable(stream: KeyStream, geo: Geometry, shared: bool = True) -> BlockMap:
    """LE on 4-bit halves: per block, 2L halves permuted and a keyed subset flipped (h → 15 − h).

    Acts in nibble order: element ``2 * (b * L + l) + h`` is half h (0 upper, 1 lower) of value l of
    block b. ``shared`` uses one key for all blocks (Tanaka's LE); otherwise each block has its own (ELE).
    """
    count = 1 if shared else geo.n
    two_l = 2 * geo.L
    size = count * two_l * 8 + (count * two_l + 7) // 8  # the permutations' words, then the flip bits
    if count > 1 and count * two_l > DRAWN_ABOVE:
        # a large image: each band's rows are drawn when it is gathered, its bytes read then (DrawnRows)
        local = DrawnRows(stream.tail(size), count, two_l, "local")
        return BlockMap(geo.n, two_l, local=local, mask=local.with_part("mask"))
    stream.reserve(size)  # one SHAKE call for the whole draw
    perms = _row_permutations(stream, count, two_l)
    return BlockMap(geo.n, two_l, local=perms, mask=_flip_rows(stream, count, two_l))


# Per-block LE tables of more values than this are drawn a band at a time from the kept stream (DrawnRows):
# the stream is 8 bytes per 4-bit half, so tables written out besides it would add 3 more.
DRAWN_ABOVE = 1 << 22


def _flip_rows(stream: KeyStream, count: int, width: int) -> np.ndarray:
    """``stream.bits(count * width)`` as a (count, width) mask of 0 or 15, drawn a band of rows at a time.

    A band is a multiple of 8 rows, so it starts on a byte of the stream: the same bytes are read in the same
    order, and only one band's bits exist at once besides the mask (not three arrays as large as the image).
    """
    out = np.empty((count, width), dtype=np.uint8)
    rows = 8 * max(1, _DRAW_BAND // (8 * width))
    for a in range(0, count, rows):
        b = min(count, a + rows)
        bits = stream.bits((b - a) * width)
        np.multiply(bits.reshape(b - a, width), np.uint8(15), out=out[a:b], dtype=np.uint8)
    return out


# A key is 256 bits (keys.KEY_BYTES): however many transformations a scheme has, a key selects at most
# 2^256 of them.
KEY_BITS_LOG10 = 256 * LOG10_2


def key_space_log10(step: str, geo: Geometry, shared: bool) -> float:
    """log10 of the number of distinct maps one step can be for a geometry (the step on its own)."""
    n, L = geo.n, geo.L
    count = 1 if shared else n
    if step == "BS":
        return log10_factorial(n)
    if step == "RF":
        # a 1×1 block looks the same in all 8 dihedral states: rotation/flip is then the identity
        return count * math.log10(8) if geo.m > 1 else 0.0
    if step == "NP":
        return n * LOG10_2
    if step == "BF":
        return L * LOG10_2
    if step == "NPV":
        return n * L * LOG10_2
    if step == "CS":
        return count * math.log10(6)
    if step == "PS":
        return count * log10_factorial(L)
    if step == "LE":
        return count * (log10_factorial(2 * L) + 2 * L * LOG10_2)
    raise KeyError(step)


def transformations_log10(steps, geo: Geometry) -> float:
    """log10 of the number of distinct maps a sequence of ``(symbol, shared)`` steps composes to.

    Step counts multiply, except that a shared pixel shuffle already ranges over every permutation of a
    block's L values: a shared rotation/flip or a shared colour order (both permutations of those same L
    values, the same for every block) composed with it, before or after, with a bit-flip mask in between,
    gives a map the pixel shuffle and mask alone also give, so such steps add nothing.
    """
    steps = list(steps)
    shared_ps = ("PS", True) in steps
    total = 0.0
    for symbol, shared in steps:
        if shared_ps and shared and symbol in ("RF", "CS"):
            continue
        total += key_space_log10(symbol, geo, shared)
    return total


def effective_key_space_log10(transformations: float) -> float:
    """log10 of the keys that actually select different maps: at most 2^256, whatever the count."""
    return min(transformations, KEY_BITS_LOG10)


def step_map(symbol: str, stream: KeyStream, geo: Geometry, shared: bool = False) -> BlockMap:
    """The map of step ``symbol`` drawn from ``stream``. Only the steps in :data:`SHAREABLE_STEPS` take
    ``shared``; the others have one meaning (BS one block order, NP a bit per block, BF one mask for every
    block, NPV a bit per value) and ignore it, so a spec's ``shared`` never changes their key material."""
    fn = STEP_FUNCTIONS[symbol]
    return fn(stream, geo, shared=shared) if symbol in SHAREABLE_STEPS else fn(stream, geo)


STEP_FUNCTIONS = {
    "BS": block_scramble,
    "RF": rotate_flip,
    "NP": negative_positive,
    "BF": bit_flip,
    "NPV": value_negative_positive,
    "CS": colour_shuffle,
    "PS": pixel_shuffle,
    "LE": learnable,
}

# Steps with a per-block and a shared form (their function's ``shared`` argument).
SHAREABLE_STEPS = frozenset({"RF", "CS", "PS", "LE"})


def batch_step_map(symbol: str, streams: StreamBatch, geo: Geometry, shared: bool = False) -> BlockBatch:
    """Every image's :func:`step_map` at once, from the streams of one step under each image's nonce.

    Each image's bytes are its own stream's, read as :func:`step_map` reads them; what is computed from them
    (argsorts, integer draws, bit masks, table lookups) runs once over the stacked batch. For the images a
    per-image cipher gathers in one batch (up to a million values each: no banded draws).
    """
    count, n, L = len(streams), geo.n, geo.L
    rows = n if (symbol not in SHAREABLE_STEPS or not shared) else 1
    if symbol == "BS":
        return BlockBatch(count, n, L, src=streams.permutations(1, n)[:, 0].astype(np.int64))
    if symbol == "RF":
        states = streams.integers(8, rows)
        return BlockBatch(count, n, L, states=states, table=_local(dihedral_tables(geo.m, geo.c), L))
    if symbol == "CS":
        if geo.c != 3:
            raise PatchcryptError(f"colour shuffling needs 3 channels, the images have {geo.c}")
        orders = streams.integers(6, rows)
        return BlockBatch(count, n, L, states=orders, table=_local(colour_tables(geo.m), L))
    if symbol == "NP":
        bits = streams.bits(n).view(np.uint8) * np.uint8(255)
        return BlockBatch(count, n, L, mask=bits[:, :, None])  # one value per block
    if symbol == "BF":
        return BlockBatch(count, n, L, mask=(streams.bits(L).view(np.uint8) * np.uint8(255))[:, None, :])
    if symbol == "NPV":
        return BlockBatch(count, n, L, mask=(streams.bits(n * L).view(np.uint8) * np.uint8(255)).reshape(count, n, L))
    if symbol == "PS":
        return BlockBatch(count, n, L, local=streams.permutations(rows, L).astype(local_dtype(L)))
    if symbol == "LE":
        two_l = 2 * L
        streams.reserve(rows * two_l * 8 + (rows * two_l + 7) // 8)
        perms = streams.permutations(rows, two_l).astype(local_dtype(two_l))
        flips = streams.bits(rows * two_l).view(np.uint8).reshape(count, rows, two_l) * np.uint8(15)
        return BlockBatch(count, n, two_l, local=perms, mask=flips)
    raise KeyError(symbol)
