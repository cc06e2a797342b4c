"""The block-wise transformations of AprilPyone & Kiya's adversarial defence, as schemes.

MaungMaung AprilPyone and Hitoshi Kiya, "Block-wise Image Transformation with Secret Key for Adversarially
Robust Defense", IEEE TIFS 2021 (arXiv 2010.00801). An image is cut into M×M blocks; every block is
flattened to its L = M·M·C values and transformed with one key shared by all blocks and all images (no
block scrambling):

* pixel shuffling: the L values permuted by one key permutation (``ak-shuffle``; our step PS);
* bit flipping: v -> 255 - v at a key subset of the L positions (``ak-flip``; our step BF);
* FFX encryption: at a key subset of the L positions, v replaced by its format-preserving encryption
  under a password (``ak-ffx``; the class below).

Where ours differ from the paper: the key material comes from the 256-bit key (SHAKE-256, DESIGN §5), not
a seeded generator; the flip and FFX subsets are uniform random bits (the paper takes exactly the
positions a seeded permutation puts in its upper half, about L/2 of them); and FFX enciphers each value
within the byte domain [0, 256) (a keyed permutation of the 256 byte values), where the paper enciphers
it as a 3-digit decimal number with radix 10 into [0, 1000) and rescales, so its ciphertexts are not
bytes. Ours stays a bijection on uint8 images, as every scheme here must.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from .base import Cipher


class FfxBlocksCipher(Cipher):
    """FFX encryption per block (``ak-ffx``): at the key's subset of in-block positions every value goes
    through one keyed permutation of the 256 byte values; other positions pass unchanged.

    Key material (per image shape, and per image nonce with ``per_image``): a mask of L bits and a
    permutation of 256. Encrypt and decrypt are exact inverses on uint8 (N, H, W, C) numpy or (N, C, H, W)
    torch batches.
    """

    def _tables(self, shape: Tuple[int, int, int], nonce: bytes) -> Tuple[np.ndarray, np.ndarray]:
        """(mask over the flat (H, W, C) image, bool; the substitution table, uint8 (256,))."""
        h, w, c = shape
        m = self._block()
        mask = self.key.stream(self._label("FFX-mask", shape), nonce).bits(m * m * c).reshape(m, m, c)
        table = self.key.stream(self._label("FFX-table", shape), nonce).permutation(256).astype(np.uint8)
        return np.tile(mask, (h // m, w // m, 1)), table

    def _cached(self, shape, nonce) -> Tuple[np.ndarray, np.ndarray]:
        cache: Dict = self.__dict__.setdefault("_ffx", {})
        k = (tuple(shape), nonce)
        if k not in cache:
            if len(cache) > 64:
                cache.clear()
            cache[k] = self._tables(shape, nonce)
        return cache[k]

    def _apply(self, batch, direction: str, nonces, shape, torch_in: bool):
        from ..blocks import check_geometry

        h, w, c = shape
        check_geometry(h, w, self._block())
        x = batch.permute(0, 2, 3, 1).cpu().numpy() if torch_in else np.asarray(batch)
        out = np.empty_like(x)
        nonce_list = self._nonce_list(nonces, len(x))   # one entry for a shared key
        for i in range(len(x)):
            mask, table = self._cached(shape, nonce_list[i if len(nonce_list) > 1 else 0])
            if direction == "dec":
                table = np.argsort(table).astype(np.uint8)
            out[i] = np.where(mask, table[x[i]], x[i])
        if torch_in:
            import torch

            return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().to(batch.device)
        return out

    def key_map(self, shape: Tuple[int, int, int], nonce: bytes = b""):
        """The moves as a :class:`~.program.Map`: none (the identity gather, no XOR mask). The substitution is
        not a gather plus XOR, so no map holds it; scoring that compares key maps sees only the moves."""
        from .program import Map, index_dtype

        size = int(np.prod(shape))
        return Map(np.arange(size, dtype=index_dtype(size)), np.zeros(size, np.uint8))

    def transformations_log10(self, height: int, width: int, channels: int = 3) -> float:
        m = self._block()
        return float(m * m * channels * np.log10(2) + np.sum(np.log10(np.arange(1, 257))))


__all__ = ["FfxBlocksCipher"]
