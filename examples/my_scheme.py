"""A worked example of your own scheme, rated by the same attacks as the registered ones.

    patchcrypt attack all --scheme examples/my_scheme.py:MyScheme --data ../shared/datasets/cifar10-jpeg --json

The harness needs only ``__init__(key, block_size)`` and ``encrypt``; ``decrypt`` is optional (checked for
exactness when present); the class attributes are declared facts the attacks use to decide whether they
apply (see :mod:`patchcrypt.attacks.target`). This toy scheme scrambles the M×M blocks of an image and then
XORs every block with one mask whose bytes are 0x00 or 0xFF (so each value is kept or turned into 255 − v):
in the vocabulary of DESIGN §3 that is block scrambling ("BS") plus bit flipping ("BF").
A step the attacks do not model would be declared under its own name (e.g. ``steps = ("BS", "XOR")`` for
a mask of arbitrary bytes); attacks that must model every step then say n/a and why.
"""

from __future__ import annotations

import hashlib

import numpy as np


class MyScheme:
    """Toy block scheme: block scrambling, then one 0x00/0xFF XOR mask shared by every block."""

    name = "my-scheme"      # shown in tables
    block_size = 4          # M, unless --block-size says otherwise
    steps = ("BS", "BF")    # declared facts: which keyed steps, in DESIGN §3's vocabulary

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
        mask = ((self._stream("BF", m * m * c, (h, w, c)) & 1) * 255).astype(np.uint8).reshape(m, m, c)
        return order, mask

    def _blocks(self, x: np.ndarray) -> np.ndarray:
        n, h, w, c = x.shape
        m = self.block_size
        if x.dtype != np.uint8 or h % m or w % m:
            raise ValueError(f"need uint8 images with sides a multiple of {m}, got {x.dtype} {x.shape}")
        return x.reshape(n, h // m, m, w // m, m, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, -1, m, m, c)

    def _image(self, blocks: np.ndarray, shape) -> np.ndarray:
        n, h, w, c = shape
        m = self.block_size
        return blocks.reshape(n, h // m, w // m, m, m, c).transpose(0, 1, 3, 2, 4, 5).reshape(shape)

    def encrypt(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) -> uint8 (N, H, W, C): block k of the output is block order[k] XOR mask."""
        order, mask = self._keys(*images.shape[1:])
        return self._image(self._blocks(images)[:, order] ^ mask, images.shape)

    def decrypt(self, images: np.ndarray) -> np.ndarray:
        """The exact inverse of :meth:`encrypt`."""
        order, mask = self._keys(*images.shape[1:])
        blocks = self._blocks(images) ^ mask
        out = np.empty_like(blocks)
        out[:, order] = blocks
        return self._image(out, images.shape)
