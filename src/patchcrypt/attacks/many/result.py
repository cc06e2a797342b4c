"""What the many-image attack returns (a recovered key map) and the working map its stages refine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ...ciphers.etc_gray import from_composite
from ...ciphers.program import Map
from ..keymaps import from_units, to_units


@dataclass
class ManyImageResult:
    """A recovered key map and how it was found.

    ``g``/``xor``: the forward map over the flat keyed image (HWC order; 4-bit halves for ``le``; the
    Y|Cb|Cr composite for composite schemes such as ``etc-gray``), in the form of ``cipher.key_map(shape)``.
    ``values``: for schemes with value maps of their own (:mod:`.valuemaps`), a (D, 256) uint8 table undone
    first: ciphertext value v at flat coordinate i reads ``values[i, v]``, then ``g``/``xor`` apply.
    """

    scheme: str
    block_size: int
    plain_shape: Tuple[int, int, int]
    keyed_shape: Tuple[int, int, int]
    unit: str
    g: np.ndarray
    xor: np.ndarray
    info: Dict[str, Any] = field(default_factory=dict)
    composite: bool = False
    values: Optional[np.ndarray] = None

    @property
    def map(self) -> Optional[Map]:
        """The recovered forward map (y[i] = x[g[i]] ^ m[i]); None where a value table is no XOR mask."""
        if self.values is None:
            return Map(self.g, self.xor)
        k = self.values[:, 0]
        if not np.array_equal(self.values, np.arange(256, dtype=np.uint8)[None, :] ^ k[:, None]):
            return None
        return Map(self.g, np.asarray(self.xor, dtype=np.uint8) ^ k)

    def with_state(self, state) -> "ManyImageResult":
        """The map whose decryptions are this map's with one global state applied (see :mod:`..scoring`)."""
        from ..scoring import state_as_map

        perm, mask = state_as_map(state, self.plain_shape)
        s = Map(perm, mask)
        s = lift_to_nibbles(s) if self.unit == "nibble" else s
        fwd = s.inverse().then(Map(self.g, self.xor))
        return ManyImageResult(self.scheme, self.block_size, self.plain_shape, self.keyed_shape, self.unit, fwd.g,
                               fwd.m, dict(self.info), self.composite, self.values)

    def decrypt(self, ciphertexts: np.ndarray) -> np.ndarray:
        """(N, H', W', C') uint8 ciphertexts → (N, H, W, C) uint8 decryptions under the recovered map."""
        nibble = self.unit == "nibble"
        flat = np.ascontiguousarray(ciphertexts).reshape(len(ciphertexts), -1)
        if self.values is not None:
            flat = self.values[np.arange(flat.shape[1])[None, :], flat]
        y = to_units(flat, nibble)
        x = np.empty_like(y)
        x[:, self.g] = y ^ self.xor
        x = from_units(x, nibble).reshape(len(y), *self.keyed_shape)
        if self.composite:   # the public colour conversion of the composite scheme (etc-gray), no key
            return from_composite(x, torch_in=False)
        return x


def lift_to_nibbles(byte_map: Map) -> Map:
    """A map over bytes as the same map over their 4-bit halves (byte i → halves 2i, 2i + 1; the mask split
    into its upper and lower halves)."""
    g = np.asarray(byte_map.g, dtype=np.int64)
    m = np.asarray(byte_map.m, dtype=np.uint8)
    g2 = np.stack((2 * g, 2 * g + 1), axis=-1).reshape(-1)
    m2 = np.stack((m >> 4, m & 15), axis=-1).reshape(-1).astype(np.uint8)
    return Map(g2, m2)


class WorkMap:
    """A working decryption map x̂ = y_flat[G] ^ K, with G (int64) and K (uint8) arrays of the keyed image's
    shape; each stage of the attack refines it."""

    def __init__(self, shape: Tuple[int, int, int]):
        self.shape = shape
        self.G = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
        self.K = np.zeros(shape, dtype=np.uint8)

    def apply(self, y: np.ndarray) -> np.ndarray:
        """(N, H', W', C') uint8 ciphertexts → their decryptions under the working map."""
        flat = y.reshape(len(y), -1)
        return (flat[:, self.G.reshape(-1)] ^ self.K.reshape(-1)).reshape(len(y), *self.shape)

    def forward(self) -> Map:
        """The encryption map this decryption map inverts."""
        return Map(self.G.reshape(-1).copy(), self.K.reshape(-1).copy()).inverse()


class WorkView(WorkMap):
    """A rectangular part of a working map (its own G and K, indices into the whole ciphertext)."""

    def __init__(self, g: np.ndarray, k: np.ndarray):
        self.shape, self.G, self.K = g.shape, g, k


__all__ = ["ManyImageResult", "WorkMap", "WorkView", "lift_to_nibbles"]
