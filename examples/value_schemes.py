"""Schemes of your own outside the step vocabulary: byte masks, additive masks and substitution tables.

    patchcrypt attack all --scheme examples/value_schemes.py:XorBlocks --data ../shared/datasets/cifar10-jpeg \\
        --n-images 1000 --json

None of these classes declares its steps: the attack suite learns what each does from the black box (its
``encrypt`` under one key). Every one of them is *block-local*: positions move independently of the values
(block scrambling, a rotation/flip per block, an in-block pixel shuffle), and every output value is its
source value under a map of its own (XOR with a byte, addition mod 256, one substitution table). That is the
family a few hundred chosen images decrypt exactly, and whose shared maps show in statistics pooled over
many ciphertexts.

| class | moves | values |
|---|---|---|
| ``XorBlocks`` | block scrambling | one mask of arbitrary bytes XORed into every block |
| ``XorBlocksRot`` | block scrambling, a rotation/flip per block | the same mask |
| ``XorImage`` | none | a mask of arbitrary bytes over the whole image |
| ``AddShuffle`` | one pixel shuffle inside every block | one additive mask (mod 256) for every block |
| ``AddBlocksRot`` | block scrambling, a rotation/flip per block | one additive mask for every block |
| ``SubstBlocksRot`` | block scrambling, a rotation/flip per block | one substitution table on every value |
| ``SubstImage`` | none | one substitution table on every value |
"""

from __future__ import annotations

import hashlib
from typing import Tuple

import numpy as np


class _BlockLocal:
    """Moves compiled to one gather over the flat (H, W, C) image, then a value map per output coordinate."""

    name = "block-local"
    block_size = 4
    scramble = False       # block scrambling
    rotate = False         # a rotation/flip per block
    shuffle = False        # one pixel shuffle inside every block
    values = "xor-block"   # "xor-block", "xor-image", "add-block" or "subst"

    def __init__(self, key: bytes, block_size: int = 4):
        if len(key) < 16:
            raise ValueError("key must be at least 16 bytes")
        self._key = bytes(key)
        self.block_size = int(block_size)

    def _stream(self, label: str, nbytes: int, shape) -> np.ndarray:
        data = f"{type(self).__name__}/{label}/{self.block_size}/{tuple(shape)}".encode() + self._key
        return np.frombuffer(hashlib.shake_256(data).digest(nbytes), dtype=np.uint8)

    def _perm(self, label: str, n: int, shape) -> np.ndarray:
        return np.argsort(self._stream(label, 8 * n, shape).view("<u8"), kind="stable")

    def _gather(self, h: int, w: int, c: int) -> np.ndarray:
        """(H·W·C,) int64: output coordinate i takes input coordinate g[i]."""
        m = self.block_size
        if h % m or w % m:
            raise ValueError(f"image sides {h}x{w} are not multiples of the block size {m}")
        idx = np.arange(h * w * c, dtype=np.int64).reshape(h // m, m, w // m, m, c)
        blocks = idx.transpose(0, 2, 1, 3, 4).reshape(-1, m, m, c)       # (n, m, m, c), row-major blocks
        n = len(blocks)
        if self.scramble:
            blocks = blocks[self._perm("BS", n, (h, w, c))]
        if self.rotate:
            states = self._stream("RF", n, (h, w, c)) % 8
            out = np.empty_like(blocks)
            for s in range(8):
                sel = states == s
                b = np.rot90(blocks[sel], s % 4, axes=(1, 2))
                out[sel] = b[:, :, ::-1] if s >= 4 else b
            blocks = out
        if self.shuffle:
            sigma = self._perm("PS", m * m, (h, w, c))
            blocks = blocks.reshape(n, m * m, c)[:, sigma].reshape(n, m, m, c)
        return blocks.reshape(h // m, w // m, m, m, c).transpose(0, 2, 1, 3, 4).reshape(-1)

    def _values(self, h: int, w: int, c: int) -> Tuple[np.ndarray, np.ndarray]:
        """(table (D, 256) uint8 of every output coordinate's value map, its inverse)."""
        m = self.block_size
        d = h * w * c
        if self.values == "subst":
            table = np.tile(self._perm("S", 256, (h, w, c)).astype(np.uint8), (d, 1))
        else:
            if self.values == "xor-image":
                mask = self._stream("MASK", d, (h, w, c))
            else:   # one mask per in-block coordinate, shared by every block
                mask = self._stream("MASK", m * m * c, (h, w, c)).reshape(m, m, c)
                mask = np.broadcast_to(mask, (h // m, w // m, m, m, c)).transpose(0, 2, 1, 3, 4).reshape(-1)
            v = np.arange(256, dtype=np.int64)[None]
            op = (v + mask[:, None]) % 256 if self.values == "add-block" else v ^ mask[:, None]
            table = op.astype(np.uint8)
        inverse = np.empty_like(table)
        np.put_along_axis(inverse, table.astype(np.int64), np.arange(256, dtype=np.uint8)[None].repeat(d, 0), axis=1)
        return table, inverse

    def _check(self, images: np.ndarray) -> np.ndarray:
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError("need uint8 (N, H, W, C) images")
        return images

    def encrypt(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) -> uint8 (N, H, W, C), one key for every image."""
        n, h, w, c = self._check(images).shape
        g = self._gather(h, w, c)
        table, _ = self._values(h, w, c)
        moved = images.reshape(n, -1)[:, g]
        return table[np.arange(len(g))[None], moved].reshape(images.shape)

    def decrypt(self, images: np.ndarray) -> np.ndarray:
        """The exact inverse of :meth:`encrypt`."""
        n, h, w, c = self._check(images).shape
        g = self._gather(h, w, c)
        _, inverse = self._values(h, w, c)
        moved = inverse[np.arange(len(g))[None], images.reshape(n, -1)]
        out = np.empty_like(moved)
        out[:, g] = moved
        return out.reshape(images.shape)


class XorBlocks(_BlockLocal):
    """Block scrambling, then every block XORed with one keyed mask of arbitrary bytes."""

    name, scramble, values = "xor-blocks", True, "xor-block"


class XorBlocksRot(_BlockLocal):
    """Block scrambling and a rotation/flip per block, then one XOR mask of arbitrary bytes on every block."""

    name, scramble, rotate, values = "xor-blocks-rot", True, True, "xor-block"


class XorImage(_BlockLocal):
    """No moves: a keyed mask of arbitrary bytes over the whole image."""

    name, values = "xor-image", "xor-image"


class AddShuffle(_BlockLocal):
    """One pixel shuffle inside every block, then one additive mask (mod 256) on every block."""

    name, shuffle, values = "add-shuffle", True, "add-block"


class AddBlocksRot(_BlockLocal):
    """Block scrambling and a rotation/flip per block, then one additive mask (mod 256) on every block."""

    name, scramble, rotate, values = "add-blocks-rot", True, True, "add-block"


class SubstBlocksRot(_BlockLocal):
    """Block scrambling and a rotation/flip per block, then one substitution table on every value."""

    name, scramble, rotate, values = "subst-blocks-rot", True, True, "subst"


class SubstImage(_BlockLocal):
    """No moves: one substitution table on every value."""

    name, values = "subst-image", "subst"


SCHEMES = (XorBlocks, XorBlocksRot, XorImage, AddShuffle, AddBlocksRot, SubstBlocksRot, SubstImage)
