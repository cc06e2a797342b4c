"""Recovered key maps: build them from per-block pieces, score them against the true map, decrypt with them.

Every byte-level scheme compiles to one map over the flattened (H, W, C) image, y[i] = x[g[i]] XOR m[i]
(:class:`~patchcrypt.ciphers.program.Map`); nibble schemes (le, ele) to the same over 4-bit halves. An
attack that recovers the key outputs such a map; the score is the share of positions whose source and
mask are both right.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from ..blocks import block_layout, locate_in_blocks
from ..ciphers import create_cipher, get_scheme
from ..ciphers.base import Cipher
from ..ciphers.program import Map
from ..errors import PatchcryptError
from ..keys import Key


def to_units(flat: np.ndarray, nibble: bool) -> np.ndarray:
    """(..., L) uint8 → the units a key map acts on: the bytes themselves, or with ``nibble`` every byte split
    into its upper and lower 4-bit halves, (..., 2L) uint8 values 0..15 (upper first). The one nibble packer
    of the attacks (with :func:`from_units` and :func:`unit_indices`).

    >>> to_units(np.array([[0xAB, 0x01]], np.uint8), True).tolist()
    [[10, 11, 0, 1]]
    """
    if not nibble:
        return flat
    out = np.empty(flat.shape[:-1] + (flat.shape[-1] * 2,), dtype=np.uint8)
    out[..., 0::2], out[..., 1::2] = flat >> 4, flat & 15
    return out


def from_units(units: np.ndarray, nibble: bool) -> np.ndarray:
    """The inverse of :func:`to_units`: (..., 2L) halves 0..15 → (..., L) bytes (units as they are without
    ``nibble``).

    >>> from_units(np.array([[10, 11, 0, 1]], np.uint8), True).tolist()
    [[171, 1]]
    """
    return (units[..., 0::2] << 4) | units[..., 1::2] if nibble else units


def unit_indices(index: np.ndarray, nibble: bool) -> np.ndarray:
    """Byte indices (..., L) → the indices of their units (..., 2L): byte i is halves 2i (upper) and 2i + 1,
    in the order of :func:`to_units` (the indices themselves without ``nibble``).

    >>> unit_indices(np.array([[0, 5]]), True).tolist()
    [[0, 1, 10, 11]]
    """
    if not nibble:
        return index
    return np.stack((2 * index, 2 * index + 1), axis=-1).reshape(index.shape[:-1] + (-1,))


def true_key_map(scheme: str, key: Key, block_size: int, shape: Tuple[int, int, int]) -> Map:
    """The compiled map of (scheme, key) for plain images of ``shape`` (for scoring only)."""
    return create_cipher(scheme, key, block_size=block_size).key_map(tuple(shape))


def block_source(cipher: Cipher, shape: Tuple[int, int, int], block_size: int) -> np.ndarray:
    """For scoring: ``source[k]`` = the plain block that encrypted block k holds, read off the key map.

    ``shape`` is the (H, W, C) the keyed steps act on (for etc-gray, its grayscale composite).
    """
    h, w, c = (int(v) for v in shape)
    layout = block_layout(h, w, c, block_size)
    block_of, _ = locate_in_blocks(layout)
    return block_of[cipher.key_map((h, w, c)).g[layout[:, 0]]]


def map_fraction(recovered: Map, truth: Map) -> float:
    """Share of output positions whose source index and mask both match the true map."""
    if recovered.g.shape != truth.g.shape:
        return 0.0
    return float(np.mean((recovered.g == truth.g) & (recovered.m == truth.m)))


def block_map_to_image(sigma: np.ndarray, g: np.ndarray, mask: np.ndarray, shape: Tuple[int, int, int],
                       block_size: int) -> Map:
    """Image-level map from per-block pieces: encrypted block k, element i ← plain block σ(k), element g[k, i].

    Args:
        sigma: (n,) source block of every encrypted block.
        g: (n, L) or (L,) in-block source element (block-vector order, see blocks.block_layout).
        mask: (n, L) or (L,) uint8 XOR mask (0 or 255).
    Returns the :class:`Map` over the flat (H, W, C) image.
    """
    h, w, c = shape
    layout = block_layout(h, w, c, block_size)
    n, L = layout.shape
    g = np.broadcast_to(np.asarray(g, dtype=np.int64), (n, L))
    mask = np.broadcast_to(np.asarray(mask, dtype=np.uint8), (n, L))
    gi = np.empty(h * w * c, dtype=np.int64)
    mi = np.empty(h * w * c, dtype=np.uint8)
    gi[layout] = np.take_along_axis(layout[np.asarray(sigma)], g, axis=1)
    mi[layout] = mask
    return Map(gi, mi)


def decrypt_with(recovered: Map, encrypted: np.ndarray, scheme) -> np.ndarray:
    """Decrypt (N, H, W, C) uint8 ``encrypted`` with a recovered map (bytes, or nibbles for le/ele).

    x[g[i]] = y[i] XOR m[i]; a map that is not a permutation (a failed recovery) still decrypts, with
    collisions resolved arbitrarily and unreached positions left 0.
    """
    nibble = (get_scheme(scheme) if isinstance(scheme, str) else scheme).unit == "nibble"
    y = to_units(np.ascontiguousarray(encrypted).reshape(len(encrypted), -1), nibble)
    if y.shape[1] != recovered.g.size:
        raise PatchcryptError(f"the recovered map covers {recovered.g.size} values; the images have {y.shape[1]}")
    x = np.zeros_like(y)
    x[:, recovered.g] = y ^ recovered.m
    return from_units(x, nibble).reshape(encrypted.shape)


def encrypt_with(recovered: Map, images: np.ndarray, scheme) -> np.ndarray:
    """Encrypt (N, ...) uint8 ``images`` with a recovered map (bytes, or nibbles for le/ele): y[i] = x[g[i]]
    XOR m[i]. What checks a recovered map against ciphertexts the attacker knows the plain images of."""
    nibble = (get_scheme(scheme) if isinstance(scheme, str) else scheme).unit == "nibble"
    x = to_units(np.ascontiguousarray(images).reshape(len(images), -1), nibble)
    if x.shape[1] != recovered.g.size:
        raise PatchcryptError(f"the recovered map covers {recovered.g.size} values; the images have {x.shape[1]}")
    return from_units(x[:, recovered.g] ^ recovered.m, nibble).reshape(images.shape)


def dihedral_colour_states(block_size: int, channels: int, negate: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """All in-block signed permutations of the rotation/flip × colour order × negation group.

    Returns gathers (S, L) and signs (S, L) (+1 or −1), S = 8 · (6 if 3 channels) · (2 if ``negate``).
    """
    from ..ciphers.steps import colour_tables, dihedral_tables

    rf = dihedral_tables(block_size, channels)
    cs = colour_tables(block_size) if channels == 3 else np.arange(rf.shape[1])[None]
    gathers = np.stack([r[c] for r in rf for c in cs])          # RF, then CS: Map.then composes as r[c]
    L = gathers.shape[1]
    signs = [np.ones(L)] + ([-np.ones(L)] if negate else [])
    return (np.concatenate([gathers] * len(signs)),
            np.concatenate([np.broadcast_to(s, gathers.shape) for s in signs]))


def grid_symmetries(gh: int, gw: int) -> np.ndarray:
    """(S, n) permutations of a gh × gw block grid: its 8 dihedral symmetries (4 when not square)."""
    cells = np.arange(gh * gw).reshape(gh, gw)
    out = []
    for s in range(8):
        a = np.rot90(cells, k=s % 4)
        if s >= 4:
            a = a[:, ::-1]
        if a.shape == cells.shape:
            out.append(a.reshape(-1))
    return np.unique(np.stack(out), axis=0)


__all__ = ["to_units", "from_units", "unit_indices", "true_key_map", "block_source", "map_fraction",
           "block_map_to_image", "decrypt_with", "encrypt_with", "dihedral_colour_states", "grid_symmetries"]
