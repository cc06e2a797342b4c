"""Reading a file from outside without trusting what it is: regular files only, size bounded before reading.

A path a user (or a crafted tree) hands us may be a link to ``/dev/zero`` (endless bytes: reading it whole
filled 19.6 GB), a FIFO (an ``open`` that never returns), a 30 GB sparse file, or a folder. Every file
patchcrypt reads goes through :func:`open_bounded`: opened with ``O_NONBLOCK`` so a FIFO cannot hang the
open, then checked *on the open descriptor* (no race with a swapped path) to be a regular file, or a link
to one, of at most the cap for its kind. Anything else is one :class:`PatchcryptError` line, before a
byte is read.

Caps per kind (see docs/limits-and-safety.md): metadata (manifests, salt files, markers, run configs,
metrics) :data:`METADATA_MAX`; a data set manifest :data:`MANIFEST_MAX`; a tar shard :data:`SHARD_MAX`
(read member by member); an image file :func:`image_file_max` of the pixel limit, the bytes of the
largest uncompressed image the limit allows.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO, Union

from .errors import PatchcryptError

PathLike = Union[str, "os.PathLike[str]"]

METADATA_MAX = 8 * 1024 * 1024  # a manifest of ~60,000 files, a salt, a marker, a config: all far below
MANIFEST_MAX = 256 * 1024 * 1024  # a data set manifest lists every file (~2 million entries at most)
SHARD_MAX = 1 << 40  # a tar shard is read member by member (each capped), never whole: this refuses only nonsense
# the worst case of a file within the pixel limit: 16-bit RGBA uncompressed (8 bytes a pixel, e.g. TIFF or
# a PNG stored without compression), plus headers, colour profiles and metadata blocks
_BYTES_PER_PIXEL = 8
_IMAGE_OVERHEAD = 16 * 1024 * 1024


def image_file_max(pixels: int) -> int:
    """Most bytes an image file of at most ``pixels`` pixels may have: 8 bytes a pixel plus 16 MB."""
    return int(pixels) * _BYTES_PER_PIXEL + _IMAGE_OVERHEAD


def open_bounded(path: PathLike, cap: int, what: str = "file") -> BinaryIO:
    """An open binary file for ``path`` once it is known to be a regular file of at most ``cap`` bytes.

    Args:
        path: the file; a symbolic link is followed (a link to a regular file is fine).
        cap: most bytes it may have.
        what: what the file is, for the error line ("image", "manifest", ...).

    Returns:
        a file object positioned at 0 (the caller closes it; ``with`` works).

    Raises:
        PatchcryptError: missing, a folder, a FIFO, a device, a socket, or larger than ``cap``.
    """
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise PatchcryptError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise PatchcryptError(f"{path}: is a folder, not a {what} file") from None
    except OSError as exc:
        raise PatchcryptError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise PatchcryptError(f"{path}: is a folder, not a {what} file")
        if not stat.S_ISREG(st.st_mode):
            raise PatchcryptError(f"{path}: {what} is not a regular file ({_kind(st.st_mode)}); refused")
        if st.st_size > cap:
            raise PatchcryptError(f"{path}: {what} is {st.st_size:,} bytes, over the {cap:,} allowed; refused")
        # regular files ignore O_NONBLOCK; the descriptor is an ordinary blocking file from here on
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: PathLike, cap: int, what: str = "file") -> bytes:
    """The bytes of ``path``, a regular file (or a link to one) of at most ``cap`` bytes (see
    :func:`open_bounded`); a file that grew past ``cap`` since it was checked is refused too."""
    with open_bounded(path, cap, what) as f:
        try:
            # the size found on open, plus one byte: read(cap + 1) would allocate the whole cap up front
            data = f.read(os.fstat(f.fileno()).st_size + 1)
            while len(data) <= cap:  # the file grew since: the rest a megabyte at a time, never past the cap
                more = f.read(min(1 << 20, cap + 1 - len(data)))
                if not more:
                    break
                data += more
        except OSError as exc:
            raise PatchcryptError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    if len(data) > cap:
        raise PatchcryptError(f"{path}: {what} is over the {cap:,} bytes allowed; refused")
    return data


def read_text_bounded(path: PathLike, cap: int = METADATA_MAX, what: str = "file") -> str:
    """:func:`read_bounded` decoded as UTF-8 (a file that is not UTF-8 is one error line)."""
    try:
        return read_bounded(path, cap, what).decode("utf-8")
    except UnicodeDecodeError:
        raise PatchcryptError(f"{path}: {what} is not UTF-8 text") from None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device such as /dev/zero"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"
