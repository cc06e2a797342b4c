"""User-facing errors.

Everything the library raises on bad input a user can fix is a :class:`PatchcryptError`; the CLI prints
its message as one line on stderr and exits non-zero, without a traceback.
"""

from __future__ import annotations


class PatchcryptError(Exception):
    """An error caused by input the user can fix (bad file, wrong key, bad geometry, ...)."""


class SizeMismatchError(PatchcryptError):
    """An image's size is not the one expected: a data set of several sizes (each image is held to the
    first's), or an input larger than a model takes."""


class KeyMismatchError(PatchcryptError):
    """Data or a model was made for a different key, scheme or geometry."""
