"""Packed image sets: a whole ``train/`` + ``test/`` ImageFolder tree of JPEGs in one ``.npz`` file.

The file keeps every image's original bytes (no re-encoding), so a decoded pack equals the decoded tree.
One file travels where tens of thousands of small files do not (copying to a training machine), and it
needs only numpy and Pillow to read: no pickle, no other package.

Arrays in the file:

    format    str      "patchcrypt-pack"
    version   int      1
    classes   str (K,) class names (sorted sub-folder names, as :func:`~patchcrypt.data.list_images`)
    splits    str (S,) split names, e.g. ["train", "test"]
    data      uint8 (B,) every file's bytes, concatenated
    offsets   int64 (N+1,) image i is data[offsets[i]:offsets[i+1]]
    labels    int64 (N,) class index per image
    split     uint8 (N,) index into ``splits``

Images are stored split by split, each in :func:`~patchcrypt.data.list_images` order, so a decoded split
has the same order and labels as ``load_dataset(root, split)``.
"""

from __future__ import annotations

import io
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np

from ..atomic import atomic_write
from ..bounded import SHARD_MAX, open_bounded
from ..codec import check_pixels, max_pixels, read_image_file
from ..errors import PatchcryptError
from .imageset import ImageSet
from .readers import list_images

PACK_FORMAT = "patchcrypt-pack"
PACK_VERSION = 1
PathLike = Union[str, os.PathLike]


def write_pack(root: PathLike, out: PathLike, splits: Sequence[str] = ("train", "test")) -> Dict[str, int]:
    """Pack the image files of ``root/<split>/<class>/*`` into one ``.npz`` at ``out`` (atomically).

    Returns:
        ``{"images": N, "bytes": size of the file, "<split>": count per split}``.
    """
    root = Path(root)
    classes = None
    blobs, labels, split_idx = [], [], []
    counts: Dict[str, int] = {}
    for s, name in enumerate(splits):
        folder = root / name
        if not folder.is_dir():
            raise PatchcryptError(f"{root}: has no {name}/ folder (expected {'/, '.join(splits)}/ with class folders)")
        cls, items = list_images(folder)
        if not cls:
            raise PatchcryptError(f"{folder}: no class sub-folders")
        if classes is None:
            classes = cls
        elif cls != classes:
            raise PatchcryptError(f"{folder}: classes {cls} differ from the first split's {classes}")
        for rel, ci in items:
            blobs.append(read_image_file(folder / rel))
            labels.append(ci)
            split_idx.append(s)
        counts[name] = len(items)
    sizes = np.fromiter((len(b) for b in blobs), dtype=np.int64, count=len(blobs))
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    data = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    buf = io.BytesIO()
    # uncompressed: JPEG bytes do not compress further, and loading stays a plain read
    np.savez(buf, format=np.array(PACK_FORMAT), version=np.array(PACK_VERSION), classes=np.array(classes),
             splits=np.array(list(splits)), data=data, offsets=offsets, labels=np.array(labels, dtype=np.int64),
             split=np.array(split_idx, dtype=np.uint8))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, buf.getvalue())
    out.chmod(0o644)  # public images, not key material
    return {"images": len(blobs), "bytes": len(buf.getvalue()), **counts}


def _open(path: Path):
    open_bounded(path, SHARD_MAX, "pack").close()  # a FIFO or a device is refused, never waited on
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise PatchcryptError(f"{path}: not a readable pack ({str(exc).splitlines()[0] if str(exc) else exc})") from None
    need = {"format", "version", "classes", "splits", "data", "offsets", "labels", "split"}
    if not need <= set(z.files) or str(z["format"]) != PACK_FORMAT:
        raise PatchcryptError(f"{path}: not a patchcrypt pack (missing {', '.join(sorted(need - set(z.files))) or 'format'})")
    if int(z["version"]) != PACK_VERSION:
        raise PatchcryptError(f"{path}: pack version {int(z['version'])}; this patchcrypt reads version {PACK_VERSION}")
    return z


def _decode_rgb(blob: bytes, name: str, limit: Optional[int] = None) -> np.ndarray:
    """One packed file as RGB uint8 (H, W, 3), with Pillow only (a training machine may have nothing else).

    The size its header declares is checked before any pixel is decoded: against ``limit`` pixels (the
    first image's size) when given, else against :func:`~patchcrypt.codec.max_pixels`.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(blob)) as im:  # lazy: reads the header only
            check_pixels(im.size[1], im.size[0], name, limit)
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Image.DecompressionBombError as exc:  # Pillow refuses in open() what is far over its own limit
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(declared.group(1)):,} pixels" if declared else "more pixels than Pillow allows"
        raise PatchcryptError(f"{name}: image declares {size}, over the limit of {max_pixels():,}; refused "
                              "before decoding") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PatchcryptError(f"{name}: not a readable image ({str(exc).splitlines()[0] if str(exc) else exc})") from None


def read_pack(path: PathLike, splits: Optional[Sequence[str]] = None, workers: Optional[int] = None) -> Dict[str, ImageSet]:
    """Decode a pack into one :class:`ImageSet` per split (RGB, uint8 (N, H, W, 3)).

    Decoding uses Pillow only (libjpeg-turbo), in ``workers`` threads (default: up to 8 of the CPUs this
    process may use). Every image's header is read before its pixels: the first may declare at most :func:`~patchcrypt.codec.max_pixels` pixels
    (``$PATCHCRYPT_MAX_PIXELS``), every other one no more than the first; a larger one is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise PatchcryptError(f"{path}: no such pack file (make one with scripts/pack_cifar.py)")
    z = _open(path)
    data, offsets, labels, split = z["data"], z["offsets"], z["labels"], z["split"]
    classes = [str(c) for c in z["classes"]]
    names = [str(s) for s in z["splits"]]
    if len(offsets) != len(labels) + 1 or len(split) != len(labels) or int(offsets[-1]) != len(data):
        raise PatchcryptError(f"{path}: damaged pack (offsets, labels and data do not agree)")
    wanted = names if splits is None else list(splits)
    for s in wanted:
        if s not in names:
            raise PatchcryptError(f"{path}: no split {s!r}; the pack holds {', '.join(names)}")
    if workers is None:
        try:
            workers = max(1, min(8, len(os.sched_getaffinity(0))))
        except AttributeError:  # pragma: no cover - non-Linux
            workers = max(1, min(8, os.cpu_count() or 1))
    out: Dict[str, ImageSet] = {}
    for s in wanted:
        idx = np.flatnonzero(split == names.index(s))
        if len(idx) == 0:
            raise PatchcryptError(f"{path}: split {s!r} is empty")
        first = _decode_rgb(data[offsets[idx[0]]:offsets[idx[0] + 1]].tobytes(), f"{path}[{s} 0]")
        first_pixels = first.shape[0] * first.shape[1]
        images = np.empty((len(idx),) + first.shape, dtype=np.uint8)

        def decode_range(a: int, b: int) -> None:
            for j in range(a, b):
                i = idx[j]
                img = _decode_rgb(data[offsets[i]:offsets[i + 1]].tobytes(), f"{path}[{s} {j}]", first_pixels)
                if img.shape != first.shape:
                    raise PatchcryptError(f"{path}[{s} {j}]: image is {img.shape[1]}x{img.shape[0]}, the first "
                                          f"is {first.shape[1]}x{first.shape[0]}")
                images[j] = img

        bounds = np.linspace(0, len(idx), workers * 4 + 1).astype(int)
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda ab: decode_range(*ab), [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])
                                                          if b > a]))
        out[s] = ImageSet(images, labels[idx].astype(np.int64), classes, f"{path}:{s}")
    return out


__all__ = ["write_pack", "read_pack", "PACK_FORMAT", "PACK_VERSION"]
