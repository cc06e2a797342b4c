"""``patchcrypt encrypt`` / ``patchcrypt decrypt``: image files and trees, with a manifest."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from ..ciphers.lossy import check_lossy_format
from ..codec import MAX_PIXELS_ENV
from ..files import EncryptOptions, parse_part, parse_salt, parse_size
from ..files import decrypt as decrypt_data, encrypt as encrypt_data
from ..errors import PatchcryptError
from ..keys import Key
from ..runtime import progress
from .app import app

MAX_PIXELS_HELP = (f"Refuse images whose header declares more pixels than this, before decoding "
                   f"(default 40000000; same as {MAX_PIXELS_ENV}).")


@contextmanager
def _memory_guard(what: str):
    """A MemoryError (an image too large for this machine) becomes one line and exit 2; the staging folder
    has already been removed, so the destination is as it was."""
    try:
        yield
    except MemoryError:
        raise PatchcryptError(f"out of memory while {what}; the destination was left as it was (lower "
                              "--max-pixels, or run on a machine with more memory)") from None


def _set_max_pixels(value: Optional[int]) -> None:
    if value is not None:
        if value < 1:
            raise PatchcryptError(f"--max-pixels must be positive, got {value}")
        os.environ[MAX_PIXELS_ENV] = str(value)  # read by every decoder in this process


@app.command()
def encrypt(
    src: Path = typer.Argument(..., help="An image file or a folder of images (e.g. an ImageFolder tree)."),
    dst: Path = typer.Argument(..., help="Output folder; mirrors SRC, plus patchcrypt.json."),
    key: Path = typer.Option(..., "--key", "-k", help="Key file (patchcrypt keygen)."),
    scheme: str = typer.Option(..., "--scheme", "-s", help="Scheme name (patchcrypt schemes)."),
    block_size: int = typer.Option(..., "--block-size", "-m", help="Block size M."),
    fmt: str = typer.Option("png", "--format", help="png (lossless) or jpeg (EtC)."),
    quality: int = typer.Option(90, "--quality", help="JPEG quality 1..100."),
    subsampling: Optional[str] = typer.Option(None, "--subsampling",
                                              help="444 or 420 (default: 420 when M is a multiple of 16)."),
    resize: Optional[str] = typer.Option(None, "--resize", help="Bring every image to N (NxN) or HxW first, by "
                                         "the rule train and evaluate use: aspect ratio kept, the short side "
                                         "resized to N/0.875, the centre cut out (recorded in the manifest)."),
    pad: bool = typer.Option(False, "--pad", help="Pad to a multiple of M by edge replication (recorded)."),
    per_image: bool = typer.Option(False, "--per-image", help="A fresh nonce (key) per image, stored in the "
                                   "manifest."),
    force: bool = typer.Option(False, "--force", help="Replace DST if it is a previous patchcrypt output."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", help=MAX_PIXELS_HELP),
    shard_size: Optional[int] = typer.Option(None, "--shard-size", help="Write WebDataset tar shards of this "
                                             "many images: DST/<split>/shard-NNNNNN.tar."),
    part: Optional[str] = typer.Option(None, "--part", help="I/N: write part I of N (then 'patchcrypt "
                                       "merge-manifests DST')."),
    salt: Optional[str] = typer.Option(None, "--salt", help="Per-image keys: the run's nonce salt (32 hex "
                                       "digits; default: drawn once per run)."),
    allow_lossy: bool = typer.Option(False, "--allow-lossy", help="Write JPEG even for a scheme whose decryption "
                                     "JPEG ruins (refused otherwise)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Leave out files that cannot be read (each named in "
                                  "one warning) instead of stopping; without it every such file is named in "
                                  "one error and nothing is written."),
) -> None:
    """Encrypt images with a key; writes DST and its manifest (never the key).

    Under torchrun every process encrypts its share of the files and rank 0 writes the manifest.
    """
    check_lossy_format(scheme, block_size, fmt, subsampling, allow_lossy)
    _set_max_pixels(max_pixels)
    k = Key.load(key)
    options = EncryptOptions(scheme, block_size, fmt, quality, subsampling, parse_size(resize), pad, per_image,
                             force, shard_size, parse_part(part), parse_salt(salt), skip_bad)
    with _memory_guard("encrypting"), progress(desc="encrypt", unit="file") as bar:
        manifest = encrypt_data(src, dst, k, options, progress=bar.update)
    if options.part:
        typer.echo(f"encrypted part {options.part[0]}/{options.part[1]} ({len(manifest['files'])} file(s)) into "
                   f"{dst}; join the parts with 'patchcrypt merge-manifests {dst}'")
    elif manifest:  # rank 0 (or one process)
        typer.echo(f"encrypted {manifest['file_count']} file(s) with {manifest['scheme']} (M={block_size}, key "
                   f"{k.fingerprint}) into {dst}" + (f" as {len(manifest['shards'])} shard(s)"
                                                    if manifest.get("shards") else ""))


@app.command()
def decrypt(
    src: Path = typer.Argument(..., help="A folder written by 'patchcrypt encrypt'."),
    dst: Path = typer.Argument(..., help="Output folder for the decrypted PNG files."),
    key: Path = typer.Option(..., "--key", "-k", help="The key the data was encrypted with."),
    scheme: Optional[str] = typer.Option(None, "--scheme", help="Expected scheme (checked against the manifest)."),
    force: bool = typer.Option(False, "--force", help="Replace DST if it is a previous patchcrypt output."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", help=MAX_PIXELS_HELP),
) -> None:
    """Decrypt a folder written by 'patchcrypt encrypt' (reads its manifest, checks every file's digest).

    PNG data decrypts bit for bit, except etc-gray colour images: exact only up
    to their YCbCr conversion. JPEG data decrypts up to the JPEG loss.
    """
    _set_max_pixels(max_pixels)
    k = Key.load(key)
    with _memory_guard("decrypting"), progress(desc="decrypt", unit="file") as bar:
        n = decrypt_data(src, dst, k, scheme, force, progress=bar.update)
    typer.echo(f"decrypted {n} file(s) into {dst}")
