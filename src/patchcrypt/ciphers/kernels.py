"""Compiled gather kernels (numba) for the maps of :mod:`patchcrypt.ciphers.program`, with a numpy fallback.

numpy has no 4-bit gather: applying a nibble map (``le``, ``ele``) with numpy takes two byte gathers and five
passes of shifts and masks over the batch. The kernel here reads the same tables
(:func:`~patchcrypt.ciphers.program.Program.tables`, nibble unit: ``bh, sh, bl, sl, m``) and writes each
output byte once, from its two source bytes:

    out[i, j] = ((x[i, bh[j]] << sh[j]) & 0xF0 | (x[i, bl[j]] >> sl[j]) & 0x0F) ^ m[j]

The kernel is serial and releases the GIL; the caller splits a batch across its own thread pool, as the numpy
path does. numba's parallel loops are not used: its threading layers are either not safe to launch from
several threads at once (workqueue) or not safe after ``fork`` (GNU OpenMP), and the library is called from
server threads and data-loader workers.

numba is optional. Without it, or with ``PATCHCRYPT_NO_JIT=1`` in the environment (read at every call), the
callers take the numpy path, which gives the same bytes. The first call compiles the kernel for its argument
types (well under a second); the machine code is cached on disk beside this file (or in numba's user cache
folder) when one of them is writable, else compiled again in each process, silently.
"""

from __future__ import annotations

import os
import threading
from typing import Callable, Optional

import numpy as np

# The nibble kernel once built: None before the first request, False when numba cannot be imported.
_NIBBLE = None
_LOCK = threading.Lock()


def _nibble_gather(x, out, bh, sh, bl, sl, m):  # pragma: no cover - runs compiled
    """(N, D) uint8 ``x`` through the nibble tables into (N, len(bh)) uint8 ``out`` (see the module docstring)."""
    for i in range(x.shape[0]):
        src = x[i]
        dst = out[i]
        for j in range(bh.shape[0]):
            # unsigned indices: the tables hold in-range positions, so no negative-index wraparound is needed
            hi = (src[np.uint64(bh[j])] << sh[j]) & 0xF0
            lo = (src[np.uint64(bl[j])] >> sl[j]) & 0x0F
            dst[j] = (hi | lo) ^ m[j]


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


def _build():
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return jit(_nibble_gather)


def disabled() -> bool:
    """Whether ``PATCHCRYPT_NO_JIT`` asks for the numpy path (any value but empty or 0)."""
    return os.environ.get("PATCHCRYPT_NO_JIT", "") not in ("", "0")


def nibble_gather() -> Optional[Callable]:
    """The compiled nibble-map kernel ``kernel(x, out, bh, sh, bl, sl, m)``, or None when numba is not
    installed or ``PATCHCRYPT_NO_JIT`` is set (the caller then takes the numpy path)."""
    global _NIBBLE
    if disabled():
        return None
    if _NIBBLE is None:
        with _LOCK:
            if _NIBBLE is None:
                _NIBBLE = _build()
    return _NIBBLE or None
