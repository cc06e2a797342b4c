"""Readers for the image collections users have: ImageFolder trees, CIFAR-10 python batches,
Fashion-MNIST idx files, single image files. ``load_dataset`` picks the reader from what the path holds.

Decoded ImageFolder trees are cached as ``.npy`` in ``<cache>/trees/`` (``<cache>`` is ``$PATCHCRYPT_CACHE`` or
``~/.cache/patchcrypt``), keyed by a digest of every file's relative path, size and mtime (nanoseconds), so a
second load of CIFAR-10 is a file read and any moved, renamed or rewritten file gives a fresh decode. The
cache holds plain images: its files are written 0600 in 0700 folders, and a cache folder that is a symbolic
link or belongs to another user is refused. ``PATCHCRYPT_CACHE=off`` (the CLI's ``--no-cache``) turns it off;
the first write into a new cache folder says so on stderr, once.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..bounded import open_bounded
from ..atomic import atomic_write
from ..codec import IMAGE_SUFFIXES, check_pixels, decode_image, image_size, read_image, read_image_file
from ..errors import PatchcryptError, SizeMismatchError
from ..keys import Key
from ..record import EncryptionRecord
from .imageset import ImageSet
from .manifest import MANIFEST_NAME, find_manifest

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]

CIFAR_BATCH_MAX = 512 * 1024 * 1024  # a batch of 10,000 32x32 images is 31 MB; 60,000 in one is 185 MB


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
    elif is_cifar_batches(path):
        ds = _load_cifar_batches(_cifar_dir(path), _need_split(path, split, folders=False))
    elif idx_files(path):
        ds = _load_idx(path, _need_split(path, split, folders=False))
    else:
        ds = _load_tree(split_root(path, split), cache=cache, mode=mode)
    if len(ds.classes) < min_classes:
        raise PatchcryptError(f"{path}: found {len(ds.classes)} class(es); need at least {min_classes} "
                              "(one sub-folder per class)")
    return ds.subset(subset, seed)


# the folders a tree may hold besides train/: the first present of EVAL_FOLDERS is the evaluation ("test")
# split, as timm reads ImageFolder trees; val/ beside test/ is a validation split
EVAL_FOLDERS = ("test", "val", "validation")
VAL_FOLDERS = ("val", "validation")


def has_splits(path) -> bool:
    """Whether ``path`` holds separate train and test data (``train/`` with ``test/``, ``val/`` or
    ``validation/`` folders, CIFAR-10 python batches, or idx files), so that a reader needs ``split``."""
    path = Path(path)
    if not path.is_dir():
        return False
    return (any((path / s).is_dir() for s in ("train",) + EVAL_FOLDERS) or is_cifar_batches(path)
            or bool(idx_files(path)))


def eval_folder(path) -> Optional[str]:
    """The folder a tree is evaluated on: ``test/``, else ``val/``, else ``validation/`` (the layout of the
    classic transfer-learning example), else None."""
    return next((s for s in EVAL_FOLDERS if (Path(path) / s).is_dir()), None)


def val_folder(path) -> Optional[str]:
    """A validation folder (``val/`` or ``validation/``) of a tree that also has ``test/``, else None: without
    ``test/`` the validation folder is the evaluation split and cannot also choose the checkpoint."""
    path = Path(path)
    if not (path / "test").is_dir():
        return None
    return next((s for s in VAL_FOLDERS if (path / s).is_dir()), None)


def split_root(path: Path, split: Optional[str]) -> Path:
    """The folder of class sub-folders to read for ``split``: ``path/<split>`` when ``path`` holds
    ``train/``/``test/`` (the split is then required; "test" is the first of ``test/``, ``val/``,
    ``validation/`` present) or the split's folder exists, else ``path`` itself."""
    if any((path / s).is_dir() for s in ("train",) + EVAL_FOLDERS):
        split = _need_split(path, split)
        if split == "test":
            split = eval_folder(path) or "test"
        elif split in VAL_FOLDERS:
            split = next((s for s in VAL_FOLDERS if (path / s).is_dir()), split)
        root = path / split
        if not root.is_dir():
            raise PatchcryptError(f"{path}: has no {split}/ folder")
        return root
    if split is not None and (path / split).is_dir():
        return path / split
    return path


def _need_split(path: Path, split: Optional[str], folders: bool = True) -> str:
    if split in VAL_FOLDERS and not folders:
        raise PatchcryptError(f"{path}: has no {split} split (only train and test)")
    if split not in ("train", "test") + VAL_FOLDERS:
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


# -- what an encrypted tree's manifest says about its files ---------------------------------------------------
def tree_manifest(root: Path) -> Tuple[Optional[Dict], str]:
    """(the manifest over the folder ``root``, the prefix of ``root``'s files in its ``files``: "" when the
    manifest is in ``root``, "train/" when it is in the parent of ``root`` = ``.../train``), or (None, "")."""
    found = find_manifest(root)
    if found is None:
        return None, ""
    return found[1], "" if found[0] == Path(root) else Path(root).name + "/"


def expected_digests(manifest: Optional[Dict], prefix: str, rels: Sequence[str], where) -> Optional[List[str]]:
    """The SHA-256 the manifest records for each of ``rels`` (``prefix`` + rel in its ``files``), or None when
    there is no manifest or it predates digests (version 1). A file it does not list (added, or moved from
    another class folder) is refused here, before anything is read."""
    if manifest is None or manifest.get("version", 1) < 2:
        return None
    files = manifest.get("files") or {}
    digests = [(files.get(prefix + r) or {}).get("sha256") for r in rels]
    bad = [r for r, d in zip(rels, digests) if d is None]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise PatchcryptError(f"{where}: {len(bad)} file(s) are not in the manifest of this encrypted data set "
                              f"(added, or moved from another folder): {shown}; refused")
    return digests


def check_digest(data: bytes, digest: Optional[str], name) -> None:
    """Refuse ``data`` (the bytes of the file ``name``) when its SHA-256 is not ``digest`` (None: unchecked)."""
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise PatchcryptError(f"{name}: the file's digest differs from the manifest (changed since encryption, "
                              "or swapped with another file); refused")


def encrypted_size(manifest: Optional[Dict]) -> Optional[Tuple[int, int]]:
    """(H, W) of every file of an encrypted data set, from its manifest's image shape (padded to the block
    grid under ``pad``; the grayscale composite for etc-gray); None when no manifest or no one shape."""
    shape = (manifest or {}).get("image_shape")
    if not shape:
        return None
    # only the scheme's geometry is asked for: a fixed throwaway key, whose key material is never derived
    cipher = EncryptionRecord.from_manifest(manifest).cipher(Key.from_bytes(bytes(32)), verify=False)
    h, w = cipher.padded_size(int(shape[0]), int(shape[1]))
    return tuple(cipher.encrypted_shape(h, w, int(shape[2]))[:2])  # type: ignore[return-value]


def other_size(name, got: Tuple[int, int], want: Tuple[int, int], whose: str = "its manifest says") -> PatchcryptError:
    """The error for an encrypted file of another size than the data set's: never resized or cropped."""
    return PatchcryptError(f"{name}: the file is {got[1]}x{got[0]} pixels, {whose} {want[1]}x{want[0]}; "
                           "encrypted images are never resized")


CACHE_VERSION = 2  # version 1 keyed a tree by count, total size, newest mtime and first/last name only


def _tree_signature(root: Path, items) -> str:
    """Digest of every file's relative path (which names its class), class index, size and mtime in
    nanoseconds: moving, renaming, replacing or touching any one file gives another cache entry."""
    h = hashlib.sha256(json.dumps(["patchcrypt-tree-cache", CACHE_VERSION, str(root.resolve())]).encode())
    for rel, ci in items:
        st = os.stat(root / rel)
        h.update(json.dumps([rel, ci, st.st_size, st.st_mtime_ns]).encode() + b"\n")
    return h.hexdigest()[:32]


def cache_enabled() -> bool:
    """Whether tree loads may use the decode cache: not when ``$PATCHCRYPT_CACHE`` is ``off``."""
    return os.environ.get("PATCHCRYPT_CACHE", "").strip().lower() != "off"


def turn_cache_off() -> None:
    """No decode cache for this process and the worker processes it starts (the CLI's ``--no-cache``)."""
    os.environ["PATCHCRYPT_CACHE"] = "off"


def _cache_root() -> Path:
    return Path(os.environ.get("PATCHCRYPT_CACHE") or Path.home() / ".cache" / "patchcrypt")


def _cache_dir() -> Path:
    """Where decoded trees live: a folder of our own under the cache root, so that its mode can be 0700
    even when ``$PATCHCRYPT_CACHE`` names a folder the user shares for other things."""
    return _cache_root() / "trees"


def _check_cache_dirs() -> None:
    """Refuse a cache root (or its ``trees/``) that is a symbolic link or belongs to another user: whoever
    controls it chooses what a later load returns, and reads the plain images written there."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    for d in (_cache_root(), _cache_dir()):
        how = None
        if d.is_symlink():
            how = "is a symbolic link"
        elif uid is not None and d.exists() and d.stat().st_uid != uid:
            how = "belongs to another user"
        if how:
            raise PatchcryptError(f"{d}: the decode cache folder {how}; refused (set PATCHCRYPT_CACHE to a "
                                  "folder of your own, or to off: no cache)")


def _private_dir(path: Path) -> bool:
    """Create ``path`` (and a missing cache root) readable by the owner only; tighten it if it exists.
    Returns whether ``path`` was created now."""
    root = _cache_root()
    if not root.exists():
        root.mkdir(mode=0o700, parents=True)
        os.chmod(root, 0o700)  # mkdir's mode is filtered by the umask; be explicit
    created = not path.exists()
    path.mkdir(mode=0o700, exist_ok=True)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)
    return created


def _cache_notice(folder: Path, nbytes: int, what: str) -> None:
    """Say once, when a cache folder is first made, that decoded copies of the images are kept and how to stop it."""
    print(f"note: caching decoded {what} images in {folder} ({nbytes / 1e6:,.1f} MB for this data set; a file "
          "per data set, no size limit, kept until you delete it); --no-cache or PATCHCRYPT_CACHE=off to turn off",
          file=sys.stderr, flush=True)


def _load_tree(root: Path, cache: bool = True, mode: Optional[str] = None) -> ImageSet:
    classes, items = list_images(root)
    if not items:
        raise PatchcryptError(f"{root}: no images found (expected class sub-folders of image files)")
    manifest, prefix = tree_manifest(root)
    files = [rel for rel, _ in items]
    digests = expected_digests(manifest, prefix, files, root)
    labels = np.array([c for _, c in items], dtype=np.int64)
    cache = cache and cache_enabled()
    if cache:
        _check_cache_dirs()
    upsampling = EncryptionRecord.from_manifest(manifest).jpeg_upsampling if manifest else "fancy"
    # "-checked": the entry was written by a decode that verified every digest, so a hit needs no re-read
    key = _tree_signature(root, items) + (f"-{mode}" if mode else "") + ("-block" if upsampling == "block" else "") \
        + ("-checked" if digests else "")
    cached = _cache_dir() / f"tree-{key}.npy"
    if cache and cached.is_file():
        try:
            images = np.load(cached)
            if len(images) == len(items):
                return ImageSet(images, labels, classes, str(root), manifest, files)
        except (OSError, ValueError):
            pass  # a damaged cache entry is rebuilt below
    images = _decode_all([root / f for f in files], mode, upsampling, digests, encrypted_size(manifest))
    if cache:
        _save_cache(cached, images, "encrypted" if manifest else "plain")
    return ImageSet(images, labels, classes, str(root), manifest, files)


def _read_checked(path: Path, mode: Optional[str], upsampling: str, limit: Optional[int],
                  digest: Optional[str], size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """One image file decoded, its bytes checked against ``digest`` (None: unchecked) as they are read, and
    its header against ``size`` (an encrypted set's (H, W); None: unchecked) before any pixel is decoded."""
    data = read_image_file(path, limit)
    check_digest(data, digest, path)
    got = None if size is None else image_size(data, str(path))
    if got is not None and got != tuple(size):
        raise other_size(path, got, size)
    return decode_image(data, mode, name=str(path), upsampling=upsampling, limit=limit)


def _decode_all(paths: List[Path], mode: Optional[str], upsampling: str = "fancy",
                digests: Optional[List[str]] = None, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Every image of ``paths`` (each checked against ``digests``, when given), all of the first one's size,
    which must be ``size`` (an encrypted data set's, from its manifest) when given."""
    from ..runtime import progress

    first = _read_checked(paths[0], mode, upsampling, None, digests[0] if digests else None, size)
    out = np.empty((len(paths),) + first.shape, dtype=np.uint8)
    out[0] = first

    def load(i: int) -> None:
        # no larger than the first: a 40 MP file among 32x32 ones is refused from its header, not decoded
        img = _read_checked(paths[i], mode if mode else ("L" if first.shape[2] == 1 else "RGB"), upsampling,
                            first.shape[0] * first.shape[1], digests[i] if digests else None, size)
        if img.shape != first.shape:
            raise SizeMismatchError(f"{paths[i]}: image is {img.shape[1]}x{img.shape[0]}, others are "
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


def _save_cache(path: Path, images: np.ndarray, what: str = "plain") -> None:
    """Write decoded images (``what``: plain or encrypted) as mode 0600 in a 0700 folder, atomically."""
    try:
        if _private_dir(path.parent):
            _cache_notice(path.parent, images.nbytes, what)
        atomic_write(path, lambda f: np.save(f, images), mode=0o600)
        # earlier versions kept entries beside the root, readable by others: drop this tree's old copy
        (_cache_root() / path.name).unlink(missing_ok=True)
    except OSError:
        pass  # caching is an optimisation; a read-only home must not stop the load


# -- CIFAR-10 python batches ------------------------------------------------------------------------------
def _cifar_dir(path: Path) -> Path:
    return path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path


def is_cifar_batches(path: Path) -> bool:
    d = _cifar_dir(path)
    return (d / "data_batch_1").is_file() or (d / "test_batch").is_file()


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR-10 python batches hold: dicts, lists, bytes, str, ints and numpy arrays.

    ``pickle.load`` would call any importable function a crafted file names (running code on load). Arrays
    in these files are pickled as ``numpy.core.multiarray._reconstruct(numpy.ndarray, ...)`` plus a
    ``numpy.dtype`` (``numpy.core.numeric._frombuffer`` at protocol 5); pickles written by Python 3 at
    protocol 2 also carry bytes as ``_codecs.encode(text, "latin1")``. Those are the only globals resolved;
    anything else is refused.
    """

    # numpy's own functions, whatever their module is called in this numpy version
    _RECONSTRUCT = np.zeros(1).__reduce__()[0]
    _FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5 pickles: array from the bytes that follow
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
        ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise pickle.UnpicklingError(f"refused: the file asks for {module}.{name}, which a CIFAR-10 batch "
                                     "never holds")


def _latin1_encode(text, encoding: str = "latin1", errors: str = "strict") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refused: unexpected _codecs.encode call")
    return text.encode("latin1")


def _unpickle(path: Path) -> dict:
    try:
        with open_bounded(path, CIFAR_BATCH_MAX, "CIFAR-10 batch") as f:
            data = _BatchUnpickler(f, encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError,
            IndexError, MemoryError) as exc:
        raise PatchcryptError(f"{path}: not a readable CIFAR-10 batch ({_first_line(exc)})") from None
    if not isinstance(data, dict):
        raise PatchcryptError(f"{path}: not a CIFAR-10 batch (holds a {type(data).__name__}, not a dict)")
    return data


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _batch_arrays(b: dict, path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 32, 32, 3), labels int64 (N,)) of one batch dict, checked."""
    try:
        data = np.asarray(b[b"data"])
        labels = np.asarray(b[b"labels"])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"data is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
        if labels.ndim != 1 or len(labels) != len(data) or labels.dtype.kind not in "iu":
            raise ValueError(f"labels {labels.dtype} {labels.shape} do not match data {data.shape}")
        if len(labels) and (labels.min() < 0 or labels.max() > 9):
            raise ValueError("labels outside 0..9")
    except (KeyError, TypeError, ValueError) as exc:
        raise PatchcryptError(f"{path}: not a CIFAR-10 batch ({_first_line(exc)})") from None
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)


def _load_cifar_batches(d: Path, split: str) -> ImageSet:
    names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    names = [n for n in names if (d / n).is_file()]
    if not names:
        raise PatchcryptError(f"{d}: no CIFAR-10 {split} batches")
    images, labels = [], []
    for n in names:
        x, y = _batch_arrays(_unpickle(d / n), d / n)
        images.append(x)
        labels.append(y)
    meta = d / "batches.meta"
    classes = [str(i) for i in range(10)]
    if meta.is_file():
        names = _unpickle(meta).get(b"label_names")
        if not (isinstance(names, list) and 1 <= len(names) <= 10
                and all(isinstance(c, (bytes, str)) for c in names)):
            raise PatchcryptError(f"{meta}: not a CIFAR-10 batches.meta (no list of up to 10 label names)")
        classes = [c.decode("utf-8", "replace") if isinstance(c, bytes) else c for c in names]
    return ImageSet(np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels), classes, str(d))


# -- Fashion-MNIST / MNIST idx files ----------------------------------------------------------------------
def idx_files(path: Path) -> List[Path]:
    return sorted(p for p in path.iterdir() if "idx" in p.name and p.is_file())


def _read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte idx file (optionally gzipped) as a uint8 array of its declared shape.

    Reads exactly the declared number of bytes, and refuses a declaration the file cannot hold (deflate
    expands at most 1032:1), so a crafted header or a gzip bomb cannot make it allocate more.
    """
    gz = path.suffix == ".gz"
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            zero, dtype, ndim = struct.unpack(">HBB", head)
            if zero != 0 or dtype != 0x08 or not 1 <= ndim <= 4:
                raise ValueError("not an unsigned-byte idx file")
            dims = struct.unpack(f">{ndim}I", f.read(4 * ndim))
            count = int(np.prod(dims, dtype=np.int64))
            size = path.stat().st_size
            if count > (1032 * size if gz else size):
                raise ValueError(f"header declares {count:,} bytes of data, more than the file holds")
            if ndim == 3:
                check_pixels(dims[1], dims[2], str(path), None)
            raw = f.read(count + 1)
        if len(raw) != count:
            raise ValueError(f"holds {len(raw):,} bytes of data, the header declares {count:,}")
        return np.frombuffer(raw, dtype=np.uint8).reshape(dims)
    except (OSError, ValueError, struct.error, EOFError) as exc:
        raise PatchcryptError(f"{path}: not a readable idx file ({exc})") from None


def _load_idx(path: Path, split: str) -> ImageSet:
    prefix = "train" if split == "train" else "t10k"
    files = idx_files(path)
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


__all__ = ["load_dataset", "load_image_folder", "list_images", "has_splits", "MANIFEST_NAME", "FASHION_CLASSES"]
