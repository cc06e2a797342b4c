"""A worked example of your own scheme, rated by the same attacks as the registered ones.

    patchcrypt attack all --scheme examples/my_scheme.py:MyScheme --data ../shared/datasets/cifar10-jpeg \\
        --n-images 1000 --json

The harness needs only ``__init__(key, block_size)`` and ``encrypt``; ``decrypt`` is optional (checked for
exactness when present); the class attributes are declared facts (see :mod:`patchcrypt.attacks.target`).
This scheme is the classic block-wise design: it scrambles the M×M blocks of an image, rotates/flips every
block on its own, shuffles the pixels inside every block with one permutation and XORs every block with one
mask whose bytes are 0x00 or 0xFF (each value kept or turned into 255 − v). In the vocabulary of DESIGN §3:
block scrambling ("BS"), per-block rotation/flip ("RF"), one shared pixel shuffle ("PS-shared") and bit
flipping ("BF").

Every image goes through one fixed permutation and one fixed negation mask, so the many-image attack
recovers the key from the ciphertexts a server holds, whether or not the class declares its steps
(``attack all`` shows it; with ``--per-image`` every image gets its own key and the attack fails). The
``steps`` below only make the attacks faster and let the ones that must model every step apply.
"""

from __future__ import annotations

import hashlib

import numpy as np


class MyScheme:
    """Block scrambling, per-block rotation/flip, one shared in-block pixel shuffle, one shared flip mask."""

    name = "my-scheme"                        # shown in tables
    block_size = 4                            # M, unless --block-size says otherwise
    steps = ("BS", "RF", "PS-shared", "BF")   # declared facts, in the order applied (DESIGN §3's vocabulary)

    def __init__(self, key: bytes, block_size: int = 4):
        if len(key) < 16:
            raise ValueError("key must be at least 16 bytes")
        self._key = bytes(key)
        self.block_size = int(block_size)

    def _stream(self, label: str, nbytes: int, shape) -> np.ndarray:
        """Key material for one step and image shape: SHAKE-256 over a label and the key (never a small seed)."""
        data = f"my-scheme/{label}/{self.block_size}/{shape}".encode() + self._key
        return np.frombuffer(hashlib.shake_256(data).digest(nbytes), dtype=np.uint8)

    def _keys(self, h: int, w: int, c: int):
        m = self.block_size
        n = (h // m) * (w // m)
        order = np.argsort(self._stream("BS", 8 * n, (h, w, c)).view("<u8"), kind="stable")  # block permutation
        states = self._stream("RF", n, (h, w, c)) % 8                                        # per-block dihedral
        shuffle = np.argsort(self._stream("PS", 8 * m * m, (h, w, c)).view("<u8"), kind="stable")  # pixels
        mask = ((self._stream("BF", m * m * c, (h, w, c)) & 1) * 255).astype(np.uint8).reshape(m, m, c)
        return order, states, shuffle, mask

    def _blocks(self, x: np.ndarray) -> np.ndarray:
        n, h, w, c = x.shape
        m = self.block_size
        if x.dtype != np.uint8 or x.ndim != 4 or h % m or w % m:
            raise ValueError(f"need uint8 (N, H, W, C) images with sides a multiple of {m}, got {x.dtype} {x.shape}")
        return x.reshape(n, h // m, m, w // m, m, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, -1, m, m, c)

    def _image(self, blocks: np.ndarray, shape) -> np.ndarray:
        n, h, w, c = shape
        m = self.block_size
        return blocks.reshape(n, h // m, w // m, m, m, c).transpose(0, 1, 3, 2, 4, 5).reshape(shape)

    @staticmethod
    def _dihedral(block: np.ndarray, state: int, inverse: bool = False) -> np.ndarray:
        """(N, M, M, C) blocks under one of the 8 rotations/flips (or its inverse)."""
        if inverse:
            block = block[:, :, ::-1] if state >= 4 else block
            return np.rot90(block, -(state % 4), axes=(1, 2))
        out = np.rot90(block, state % 4, axes=(1, 2))
        return out[:, :, ::-1] if state >= 4 else out

    def encrypt(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) -> uint8 (N, H, W, C)."""
        order, states, shuffle, mask = self._keys(*images.shape[1:])
        blocks = self._blocks(images)[:, order]
        m, c = self.block_size, images.shape[3]
        out = np.empty_like(blocks)
        for k in range(blocks.shape[1]):
            b = self._dihedral(blocks[:, k], int(states[k])).reshape(len(images), m * m, c)[:, shuffle]
            out[:, k] = b.reshape(len(images), m, m, c) ^ mask
        return self._image(out, images.shape)

    def decrypt(self, images: np.ndarray) -> np.ndarray:
        """The exact inverse of :meth:`encrypt`."""
        order, states, shuffle, mask = self._keys(*images.shape[1:])
        m, c = self.block_size, images.shape[3]
        blocks = self._blocks(images) ^ mask
        plain = np.empty_like(blocks)
        for k in range(blocks.shape[1]):
            b = np.empty((len(images), m * m, c), np.uint8)
            b[:, shuffle] = blocks[:, k].reshape(len(images), m * m, c)
            plain[:, order[k]] = self._dihedral(b.reshape(len(images), m, m, c), int(states[k]), inverse=True)
        return self._image(plain, images.shape)


class MySchemeUndeclared(MyScheme):
    """The same scheme with no declared facts: the generic many-image attack still recovers it."""

    name = "my-scheme-undeclared"
    steps = None
