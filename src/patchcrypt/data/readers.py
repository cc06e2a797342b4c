"""Readers for the image collections users have: ImageFolder trees, CIFAR-10 python batches,
Fashion-MNIST idx files, single image files. ``load_dataset`` picks the reader from what the path holds.

Decoded ImageFolder trees are cached as ``.npy`` (``$PATCHCRYPT_CACHE`` or ``~/.cache/patchcrypt``), keyed by
the tree's path, file count, total size and newest mtime, so a second load of CIFAR-10 is a file read.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from ..codec import IMAGE_SUFFIXES, read_image
from ..errors import PatchcryptError
from .imageset import ImageSet
from .manifest import MANIFEST_NAME, read_manifest

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]


def load_dataset(path, split: Optional[str] = None, subset: Optional[int] = None, cache: bool = True,
                 min_classes: int = 0, mode: Optional[str] = None, seed: int = 0) -> ImageSet:
    """Load images and labels from ``path``.

    Args:
        path: an ImageFolder root with ``train/`` and ``test/`` (then ``split`` picks one), a class-folder
            tree, a CIFAR-10 python-batches folder, a Fashion-MNIST folder of idx/idx.gz files, or one image.
        split: "train" or "test" where the source has both.
        subset: keep a class-balanced subset of this many images (deterministic in ``seed``).
        min_classes: refuse sources with fewer classes (2 for training).
        mode: "RGB" or "L" to convert; default keeps colour images RGB and grayscale ones C=1.
    """
    path = Path(path)
    if not path.exists():
        raise PatchcryptError(f"{path}: no such file or folder")
    if path.is_file():
        ds = ImageSet(read_image(path, mode)[None], np.array([-1], dtype=np.int64), [], str(path), None,
                      [path.name])
    elif _is_cifar_batches(path):
        ds = _load_cifar_batches(_cifar_dir(path), _need_split(path, split))
    elif _idx_files(path):
        ds = _load_idx(path, _need_split(path, split))
    else:
        root = path
        if (path / "train").is_dir() or (path / "test").is_dir():
            split = _need_split(path, split)
            root = path / split
            if not root.is_dir():
                raise PatchcryptError(f"{path}: has no {split}/ folder")
        elif split is not None and (path / split).is_dir():
            root = path / split
        ds = _load_tree(root, cache=cache, mode=mode)
    if len(ds.classes) < min_classes:
        raise PatchcryptError(f"{path}: found {len(ds.classes)} class(es); need at least {min_classes} "
                              "(one sub-folder per class)")
    return ds.subset(subset, seed)


def _need_split(path: Path, split: Optional[str]) -> str:
    if split not in ("train", "test"):
        raise PatchcryptError(f"{path}: holds train and test data; choose a split (train or test)")
    return split


# -- ImageFolder trees ------------------------------------------------------------------------------------
def list_images(root: Path) -> Tuple[List[str], List[Tuple[str, int]]]:
    """Classes (sorted sub-folder names) and (relative path, class index) for every image file under them.

    Images directly in ``root`` (no class folders) get class index -1 and an empty class list.
    """
    root = Path(root)
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    items = []
    for ci, name in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(root / name):
            dirnames.sort()
            rel = Path(dirpath).relative_to(root)
            items += [((rel / f).as_posix(), ci) for f in sorted(filenames) if f.lower().endswith(IMAGE_SUFFIXES)]
    if not classes:
        items = [(f, -1) for f in sorted(os.listdir(root)) if f.lower().endswith(IMAGE_SUFFIXES)]
    return classes, items


def _tree_signature(root: Path, items) -> str:
    size, newest = 0, 0.0
    for rel, _ in items:
        st = os.stat(root / rel)
        size += st.st_size
        newest = max(newest, st.st_mtime)
    text = json.dumps([str(root.resolve()), len(items), size, newest, items[0][0], items[-1][0]])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _cache_dir() -> Path:
    return Path(os.environ.get("PATCHCRYPT_CACHE") or Path.home() / ".cache" / "patchcrypt")


def _load_tree(root: Path, cache: bool = True, mode: Optional[str] = None) -> ImageSet:
    classes, items = list_images(root)
    if not items:
        raise PatchcryptError(f"{root}: no images found (expected class sub-folders of image files)")
    manifest = read_manifest(root)
    files = [rel for rel, _ in items]
    labels = np.array([c for _, c in items], dtype=np.int64)
    key = _tree_signature(root, items) + (f"-{mode}" if mode else "")
    cached = _cache_dir() / f"tree-{key}.npy"
    if cache and cached.is_file():
        try:
            images = np.load(cached)
            if len(images) == len(items):
                return ImageSet(images, labels, classes, str(root), manifest, files)
        except (OSError, ValueError):
            pass  # a damaged cache entry is rebuilt below
    images = _decode_all([root / f for f in files], mode)
    if cache:
        _save_cache(cached, images)
    return ImageSet(images, labels, classes, str(root), manifest, files)


def _decode_all(paths: List[Path], mode: Optional[str]) -> np.ndarray:
    from ..runtime import progress

    first = read_image(paths[0], mode)
    out = np.empty((len(paths),) + first.shape, dtype=np.uint8)
    out[0] = first

    def load(i: int) -> None:
        img = read_image(paths[i], mode if mode else ("L" if first.shape[2] == 1 else "RGB"))
        if img.shape != first.shape:
            raise PatchcryptError(f"{paths[i]}: image is {img.shape[1]}x{img.shape[0]}, others are "
                                  f"{first.shape[1]}x{first.shape[0]} (resize the data set first)")
        out[i] = img

    chunk = 256
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool, \
            progress(total=len(paths), desc="decode", unit="img") as bar:
        for start in range(1, len(paths), chunk):
            idx = range(start, min(start + chunk, len(paths)))
            list(pool.map(load, idx))
            bar.update(len(idx))
    return out


def _save_cache(path: Path, images: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, images)
        os.replace(tmp, path)
    except OSError:
        pass  # caching is an optimisation; a read-only home must not stop the load


# -- CIFAR-10 python batches ------------------------------------------------------------------------------
def _cifar_dir(path: Path) -> Path:
    return path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path


def _is_cifar_batches(path: Path) -> bool:
    d = _cifar_dir(path)
    return (d / "data_batch_1").is_file() or (d / "test_batch").is_file()


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise PatchcryptError(f"{path}: not a readable CIFAR-10 batch ({exc})") from None


def _load_cifar_batches(d: Path, split: str) -> ImageSet:
    names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    names = [n for n in names if (d / n).is_file()]
    if not names:
        raise PatchcryptError(f"{d}: no CIFAR-10 {split} batches")
    images, labels = [], []
    for n in names:
        b = _unpickle(d / n)
        data = np.asarray(b[b"data"], dtype=np.uint8)
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(b[b"labels"], dtype=np.int64))
    meta = d / "batches.meta"
    classes = ([c.decode() for c in _unpickle(meta)[b"label_names"]] if meta.is_file()
               else [str(i) for i in range(10)])
    return ImageSet(np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels), classes, str(d))


# -- Fashion-MNIST / MNIST idx files ----------------------------------------------------------------------
def _idx_files(path: Path) -> List[Path]:
    return sorted(p for p in path.iterdir() if "idx" in p.name and p.is_file())


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
        zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
        if zero != 0 or dtype != 0x08:
            raise ValueError("not an unsigned-byte idx file")
        dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
        data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
        return data.reshape(dims)
    except (OSError, ValueError, struct.error, EOFError) as exc:
        raise PatchcryptError(f"{path}: not a readable idx file ({exc})") from None


def _load_idx(path: Path, split: str) -> ImageSet:
    prefix = "train" if split == "train" else "t10k"
    files = _idx_files(path)
    img = [p for p in files if p.name.startswith(f"{prefix}-images")]
    lab = [p for p in files if p.name.startswith(f"{prefix}-labels")]
    if not img or not lab:
        raise PatchcryptError(f"{path}: missing {prefix}-images/-labels idx files")
    images = _read_idx(img[0])
    labels = _read_idx(lab[0]).astype(np.int64)
    if images.ndim != 3 or len(images) != len(labels):
        raise PatchcryptError(f"{path}: idx images {images.shape} do not match labels {labels.shape}")
    return ImageSet(np.ascontiguousarray(images[:, :, :, None]), labels, list(FASHION_CLASSES), str(path))


def load_image_folder(root, mode: Optional[str] = None) -> ImageSet:
    """Decode a class-folder tree (no split handling); see :func:`load_dataset`."""
    return _load_tree(Path(root), mode=mode)


__all__ = ["load_dataset", "load_image_folder", "list_images", "MANIFEST_NAME", "FASHION_CLASSES"]
