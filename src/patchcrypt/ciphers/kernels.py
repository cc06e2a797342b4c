"""Compiled gather kernels (numba) for the maps of :mod:`patchcrypt.ciphers.program`, with a numpy fallback.

numpy has no 4-bit gather: applying a nibble map (``le``, ``ele``) with numpy takes two byte gathers and five
passes of shifts and masks over the batch. The nibble kernel reads the same tables
(:meth:`~patchcrypt.ciphers.program.Program.tables`, nibble unit: ``bh, sh, bl, sl, m``) and writes each
output byte once, from its two source bytes:

    out[i, j] = ((x[i, bh[j]] << sh[j]) & 0xF0 | (x[i, bl[j]] >> sl[j]) & 0x0F) ^ m[j]

The byte kernel does the same for byte maps (``g, m``: ``out[i, j] = x[i, g[j]] ^ m[j]``), in one pass where
numpy makes two (the gather, then the XOR). Both run over a few images at a time (:data:`NIBBLE_IMAGES`,
:data:`BYTE_IMAGES`), so each table entry is read once for all of them.

The kernels are serial and release the GIL; the caller splits a batch across its own thread pool, as the
numpy path does. numba's parallel loops are not used: its threading layers are either not safe to launch from
several threads at once (workqueue) or not safe after ``fork`` (GNU OpenMP), and the library is called from
server threads and data-loader workers.

numba is optional. Without it, or with ``PATCHCRYPT_NO_JIT=1`` in the environment (read at every call), the
callers take the numpy path, which gives the same bytes. The first call in a process imports numba and
compiles a kernel for its argument types, or loads it from numba's disk cache (about a second either way, see
docs/results-speed.md); the cache lives beside this file, or in numba's user cache folder, when one of them is
writable, and otherwise each process compiles again, silently.
"""

from __future__ import annotations

import os
import threading
from typing import Callable, Optional

import numpy as np

# Images gathered together in one pass over the tables, so each table entry is read once for all of them: the
# fastest of the counts tried (1 to 16) in CPU time on batches of 224×224 images, where 8 sources of 150 KB
# still mostly sit in a 1 MB L2 cache.
NIBBLE_IMAGES = 8
BYTE_IMAGES = 4

# The kernels once built: None before the first request, {} when numba cannot be imported.
_KERNELS = None
_LOCK = threading.Lock()


def _nibble_gather(x, out, bh, sh, bl, sl, m):  # pragma: no cover - runs compiled
    """(N, D) uint8 ``x`` through the nibble tables into (N, len(bh)) uint8 ``out`` (see the module docstring)."""
    n = x.shape[0]
    whole = n - n % NIBBLE_IMAGES
    for i in range(0, whole, NIBBLE_IMAGES):
        for j in range(bh.shape[0]):
            # unsigned indices: the tables hold in-range positions, so no negative-index wraparound is needed
            a, b, up, down, flip = np.uint64(bh[j]), np.uint64(bl[j]), sh[j], sl[j], m[j]
            for r in range(NIBBLE_IMAGES):  # a constant trip count: unrolled
                out[i + r, j] = (((x[i + r, a] << up) & 0xF0) | ((x[i + r, b] >> down) & 0x0F)) ^ flip
    for i in range(whole, n):
        for j in range(bh.shape[0]):
            hi = (x[i, np.uint64(bh[j])] << sh[j]) & 0xF0
            lo = (x[i, np.uint64(bl[j])] >> sl[j]) & 0x0F
            out[i, j] = (hi | lo) ^ m[j]


def _byte_gather(x, out, g, m):  # pragma: no cover - runs compiled
    """``out[i, j] = x[i, g[j]] ^ m[j]`` over (N, D) uint8; ``m`` may be None (no mask)."""
    n = x.shape[0]
    whole = n - n % BYTE_IMAGES
    for i in range(0, whole, BYTE_IMAGES):
        for j in range(g.shape[0]):
            a = np.uint64(g[j])
            if m is None:
                for r in range(BYTE_IMAGES):
                    out[i + r, j] = x[i + r, a]
            else:
                flip = m[j]
                for r in range(BYTE_IMAGES):
                    out[i + r, j] = x[i + r, a] ^ flip
    for i in range(whole, n):
        for j in range(g.shape[0]):
            if m is None:
                out[i, j] = x[i, np.uint64(g[j])]
            else:
                out[i, j] = x[i, np.uint64(g[j])] ^ m[j]


def jit(fn: Callable, cache: bool = True):
    """``fn`` compiled by numba (``nogil``, no bounds checks), cached on disk when a cache folder is writable.

    numba refuses ``cache=True`` when it finds no writable folder for the cache (a read-only install and
    home); the function is then compiled without a disk cache rather than failing.
    """
    import numba

    try:
        return numba.njit(nogil=True, boundscheck=False, cache=cache)(fn)
    except (RuntimeError, OSError):
        return numba.njit(nogil=True, boundscheck=False, cache=False)(fn)


def _build() -> dict:
    try:
        import numba  # noqa: F401
    except ImportError:
        return {}
    return {"nibble": jit(_nibble_gather), "byte": jit(_byte_gather)}


def disabled() -> bool:
    """Whether ``PATCHCRYPT_NO_JIT`` asks for the numpy path (any value but empty or 0)."""
    return os.environ.get("PATCHCRYPT_NO_JIT", "") not in ("", "0")


def _kernel(name: str) -> Optional[Callable]:
    global _KERNELS
    if disabled():
        return None
    if _KERNELS is None:
        with _LOCK:
            if _KERNELS is None:
                _KERNELS = _build()
    return _KERNELS.get(name)


def nibble_gather() -> Optional[Callable]:
    """The compiled nibble-map kernel ``kernel(x, out, bh, sh, bl, sl, m)``, or None when numba is not
    installed or ``PATCHCRYPT_NO_JIT`` is set (the caller then takes the numpy path)."""
    return _kernel("nibble")


def byte_gather() -> Optional[Callable]:
    """The compiled byte-map kernel ``kernel(x, out, g, m)`` (``m`` None for no mask), or None as
    :func:`nibble_gather`."""
    return _kernel("byte")
