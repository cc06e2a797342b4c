"""Block geometry: splitting images into M×M blocks and merging them back (DESIGN §2).

Blocks are numbered row-major; a block flattened is L = M·M·C values in (row, column, channel) order.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .errors import PatchcryptError


def check_geometry(height: int, width: int, block_size: int) -> None:
    """Raise a clear error unless ``block_size`` divides both image sides.

    >>> check_geometry(32, 24, 8)
    >>> check_geometry(30, 32, 8)
    Traceback (most recent call last):
    ...
    patchcrypt.errors.PatchcryptError: image size 30x32 is not a multiple of the block size 8 (use --pad or --resize)
    """
    if block_size < 1:
        raise PatchcryptError(f"block size must be positive, got {block_size}")
    if height % block_size or width % block_size:
        raise PatchcryptError(
            f"image size {height}x{width} is not a multiple of the block size {block_size} "
            "(use --pad or --resize)"
        )


@lru_cache(maxsize=64)
def _layout(height: int, width: int, channels: int, block_size: int) -> np.ndarray:
    m = block_size
    idx = np.arange(height * width * channels, dtype=np.int64).reshape(height, width, channels)
    blocks = idx.reshape(height // m, m, width // m, m, channels).transpose(0, 2, 1, 3, 4)
    out = np.ascontiguousarray(blocks.reshape(-1, m * m * channels))
    out.setflags(write=False)
    return out


def block_layout(height: int, width: int, channels: int, block_size: int) -> np.ndarray:
    """Index map of shape (n, L): entry [b, l] is the flat (H, W, C)-order index of value l of block b.

    Shape:
        returns (n, L) with n = (H/M)·(W/M), L = M·M·C; int64, read-only.

    >>> block_layout(4, 4, 1, 2).tolist()  # a 4×4 grayscale image in 2×2 blocks
    [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]
    """
    check_geometry(height, width, block_size)
    return _layout(height, width, channels, block_size)


def locate_in_blocks(layout: np.ndarray):
    """Inverse of a :func:`block_layout` map: for every flat image index, its block and its place in the block.

    Shape:
        layout (n, L) → (block_of, element_of), each (n·L,) int64.
    """
    n, L = layout.shape
    block_of = np.empty(n * L, dtype=np.int64)
    element_of = np.empty(n * L, dtype=np.int64)
    block_of[layout.reshape(-1)] = np.repeat(np.arange(n), L)
    element_of[layout.reshape(-1)] = np.tile(np.arange(L), n)
    return block_of, element_of


def split_blocks(images: np.ndarray, block_size: int) -> np.ndarray:
    """(N, H, W, C) → (N, n, M, M, C) view-free copy of the blocks, row-major block order.

    >>> x = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)
    >>> b = split_blocks(x, 2)
    >>> b.shape
    (1, 4, 2, 2, 1)
    >>> b[0, 1, :, :, 0].tolist()  # block 1 is the top right one
    [[2, 3], [6, 7]]
    >>> bool((merge_blocks(b, 4, 4) == x).all())
    True
    """
    n_img, h, w, c = images.shape
    m = block_size
    check_geometry(h, w, m)
    x = images.reshape(n_img, h // m, m, w // m, m, c).transpose(0, 1, 3, 2, 4, 5)
    return np.ascontiguousarray(x.reshape(n_img, (h // m) * (w // m), m, m, c))


def merge_blocks(blocks: np.ndarray, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`split_blocks`: (N, n, M, M, C) → (N, H, W, C)."""
    n_img, n, m, _, c = blocks.shape
    if n != (height // m) * (width // m):
        raise PatchcryptError(f"{n} blocks of {m}x{m} do not tile a {height}x{width} image")
    x = blocks.reshape(n_img, height // m, width // m, m, m, c).transpose(0, 1, 3, 2, 4, 5)
    return np.ascontiguousarray(x.reshape(n_img, height, width, c))
