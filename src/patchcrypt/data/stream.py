"""Streaming data sets: image files (or members of tar shards) decoded per batch in DataLoader workers.

:class:`FileSet` is what :class:`~patchcrypt.data.ImageSet` is without the pixels: where each image lives,
its label, the classes and the manifest. Nothing is decoded until a batch asks for it, so memory is bounded
by batch size × workers × prefetch, not by the size of the data set. :class:`StreamDataset` is the map-style
data set a ``torch.utils.data.DataLoader`` reads it through (decode, then resize/crop to the model's size);
:func:`make_loader` builds that loader over batches of indices chosen by the caller, so a streaming run visits
exactly the images, in exactly the order, that the in-RAM run does (the training loop draws the order; the
per-rank split under torchrun is ``order[rank::world]``, DistributedSampler's partition).

:func:`memory_budget` is the size in bytes a decoded data set may have before ``train`` and ``evaluate``
switch to streaming (``$PATCHCRYPT_MEMORY_BUDGET``, default 1 GiB).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..bounded import SHARD_MAX, open_bounded
from ..codec import decode_image, image_size, read_image_file
from ..errors import PatchcryptError
from .imageset import ImageSet
from .resize import centre_crop_resize, random_resized_crop, sample_rng
from .split import subset_positions

MEMORY_BUDGET_ENV = "PATCHCRYPT_MEMORY_BUDGET"
DEFAULT_MEMORY_BUDGET = 1 << 30  # decoded bytes; CIFAR-10 (184 MB) and 128-px photo sets stay in RAM


def parse_bytes(text: str, what: str = MEMORY_BUDGET_ENV) -> int:
    """"512M", "2G", "1.5GiB", "100000" → bytes (binary multiples)."""
    t = str(text).strip().upper().replace("_", "").removesuffix("IB").removesuffix("B")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if mult > 1 else t) * mult
    except ValueError:
        value = -1
    if value < 0:
        raise PatchcryptError(f"{what} must be a size such as 512M or 2G, got {text!r}")
    return int(value)


def memory_budget() -> int:
    """Bytes a decoded data set may take in RAM before streaming is chosen automatically."""
    text = os.environ.get(MEMORY_BUDGET_ENV, "").strip()
    return parse_bytes(text) if text else DEFAULT_MEMORY_BUDGET


@dataclass
class FileSet:
    """Images left on disk, with labels.

    Attributes:
        root: the folder ``files`` (or ``shards``) are relative to.
        files: relative path of every image (tree), or its name inside its shard.
        labels: int64 (N,), indices into ``classes``.
        classes: class names.
        shape: (H, W, C) every image is delivered at (after :class:`StreamDataset`'s resize), or None.
        manifest: the ``patchcrypt.json`` of an encrypted tree or shard set, else None.
        spans: int64 (N, 3) = (shard index, byte offset, byte length) for members of tar shards, else None.
        shards: shard paths relative to ``root`` (with ``spans``).
        digests: the SHA-256 the manifest records for every image (checked as its bytes are read), or None.

    An encrypted set (one with a manifest) is never resized: with :attr:`shape` set, an image of another
    size is an error naming it, found from its header before any pixel is decoded.
    """

    root: str
    files: List[str]
    labels: np.ndarray
    classes: List[str]
    shape: Optional[Tuple[int, int, int]] = None
    manifest: Optional[Dict] = None
    source: str = ""
    spans: Optional[np.ndarray] = field(default=None, repr=False)
    shards: Optional[List[str]] = None
    digests: Optional[List[str]] = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.files)

    def take(self, index: Sequence[int]) -> "FileSet":
        """The images at ``index`` (an int array), keeping everything else."""
        index = np.asarray(index, dtype=np.int64)
        return replace(self, files=[self.files[i] for i in index], labels=self.labels[index],
                       spans=None if self.spans is None else self.spans[index],
                       digests=None if self.digests is None else [self.digests[i] for i in index])

    def subset(self, n: Optional[int], seed: int = 0) -> "FileSet":
        """Class-balanced deterministic subset, the same images :meth:`ImageSet.subset` picks."""
        if n is None or n >= len(self):
            return self
        return self.take(subset_positions(self.labels, n, seed))

    def name(self, i: int) -> str:
        """A readable location of image ``i`` for error messages."""
        if self.spans is None:
            return str(Path(self.root) / self.files[i])
        return f"{Path(self.root) / self.shards[int(self.spans[i, 0])]}:{self.files[i]}"

    def read_bytes(self, i: int) -> bytes:
        """The encoded bytes of image ``i`` (a file, or a slice of a shard read by offset), checked against
        the manifest's digest where it records one."""
        from .readers import check_digest

        data = self._read(i)
        check_digest(data, None if self.digests is None else self.digests[i], self.name(i))
        return data

    def _read(self, i: int) -> bytes:
        try:
            if self.spans is None:
                return read_image_file(Path(self.root) / self.files[i])
            s, off, n = (int(v) for v in self.spans[i])
            with open_bounded(Path(self.root) / self.shards[s], SHARD_MAX, "shard") as f:
                f.seek(off)
                data = f.read(n)
            if len(data) != n:
                raise OSError(f"shard ends after {len(data)} of {n} bytes")
            return data
        except OSError as exc:
            raise PatchcryptError(f"{self.name(i)}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None

    def decode(self, i: int, mode: Optional[str] = None) -> np.ndarray:
        """Image ``i`` decoded, uint8 (H, W, C), at its own size (an encrypted one: exactly :attr:`shape`)."""
        data, limit = self.read_bytes(i), None
        if self.manifest is not None and self.shape is not None:
            limit = self._exact_size(i, data)
        return decode_image(data, mode, name=self.name(i), limit=limit)

    def _exact_size(self, i: int, data: bytes) -> int:
        """Pixels of encrypted image ``i``, whose header must declare :attr:`shape` (else one error line)."""
        from .readers import other_size

        h, w = image_size(data, self.name(i))
        if (h, w) != tuple(self.shape[:2]):
            raise other_size(self.name(i), (h, w), tuple(self.shape[:2]), "the data set's images are")
        return h * w

    def probe(self) -> Tuple[int, int, int]:
        """(H, W, C) of the first image (decoded)."""
        if not len(self):
            raise PatchcryptError(f"{self.source or self.root}: no images")
        return tuple(self.decode(0).shape)  # type: ignore[return-value]

    def materialize(self, workers: int = 4) -> ImageSet:
        """Decode every image (resized/cropped to :attr:`shape` as for evaluation) into an in-RAM ImageSet; a
        progress bar on a terminal (photos at 224 px decode at tens per second on a small machine)."""
        from ..runtime import progress

        ds = StreamDataset(self)
        first, _ = ds[0]
        out = np.empty((len(self),) + first.shape, dtype=np.uint8)
        out[0] = first

        def load(i: int) -> None:
            out[i] = ds[i][0]

        with ThreadPoolExecutor(max(1, workers)) as pool, \
                progress(total=len(self), desc=f"decode {Path(self.source or self.root).name}") as bar:
            bar.update(1)
            for _ in pool.map(load, range(1, len(self))):
                bar.update(1)
        return ImageSet(out, self.labels.copy(), list(self.classes), self.source or self.root, self.manifest,
                        list(self.files))


class StreamDataset:
    """Map-style data set over a :class:`FileSet` for ``torch.utils.data.DataLoader`` (picklable, no torch).

    An item is an index (evaluation: resize + centre crop) or ``(index, seed, epoch)`` (training: a
    random-resized crop drawn from :func:`~patchcrypt.data.resize.sample_rng`, when ``random_crop``).
    Returns (uint8 (H, W, C) at ``files.shape``, int label).
    """

    def __init__(self, files: FileSet, random_crop: bool = False):
        self.files = files
        self.random_crop = random_crop
        self.shape = files.shape
        self.mode = None if files.shape is None else ("L" if files.shape[2] == 1 else "RGB")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: Union[int, Tuple[int, int, int]]) -> Tuple[np.ndarray, int]:
        i, seed, epoch = (int(item), None, 0) if np.isscalar(item) else item
        img = self.files.decode(i, self.mode)
        if self.shape is not None:
            size = self.shape[0]
            if self.random_crop and seed is not None:
                img = random_resized_crop(img, size, sample_rng(seed, epoch, i))
            else:
                img = centre_crop_resize(img, size)
        return img, int(self.files.labels[i])


def collate_uint8(items: List[Tuple[np.ndarray, int]]) -> Tuple[Any, Any]:
    """[(uint8 (H, W, C), label)] → (uint8 torch (N, C, H, W), int64 torch (N,))."""
    import torch

    from ..runtime import to_nchw

    x = to_nchw(np.stack([img for img, _ in items]))
    return x, torch.tensor([y for _, y in items], dtype=torch.int64)


def make_loader(dataset: StreamDataset, batches: Sequence[Sequence[Any]], workers: int = 0):
    """A DataLoader yielding (uint8 (N, C, H, W), int64 (N,)) for each list of items in ``batches``, in order,
    decoded by ``workers`` processes (0: in this one)."""
    from torch.utils.data import DataLoader

    kw: Dict[str, Any] = {"prefetch_factor": 2} if workers > 0 else {}
    return _OneLineErrors(DataLoader(dataset, batch_sampler=[list(b) for b in batches], num_workers=workers,
                                     collate_fn=collate_uint8, **kw))


class _OneLineErrors:
    """Iterates a DataLoader; a PatchcryptError raised in a worker (which DataLoader re-raises with the
    worker's whole traceback in its message) comes out as the worker's one-line message again."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        try:
            yield from self.loader
        except PatchcryptError as exc:
            lines = [ln for ln in str(exc).splitlines() if ln.strip()]
            last = lines[-1] if lines else ""
            if "Original Traceback" in str(exc) and ": " in last:
                raise type(exc)(last.split(": ", 1)[1]) from None
            raise


def default_workers() -> int:
    """DataLoader workers: the CPUs this process may use, less one for the training loop (1..8)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n - 1))


__all__ = ["FileSet", "StreamDataset", "make_loader", "collate_uint8", "memory_budget", "parse_bytes",
           "default_workers", "MEMORY_BUDGET_ENV", "DEFAULT_MEMORY_BUDGET"]


def open_files(path: Union[str, Path], split: Optional[str] = None) -> Optional[FileSet]:
    """The images of an ImageFolder tree (or the ``split`` of one with ``train/``/``test/``) as a
    :class:`FileSet`, listed but not decoded; None for sources that are not image files (CIFAR-10 batches,
    idx files, one image), which :func:`~patchcrypt.data.load_dataset` reads whole.

    Same root, order and labels as :func:`~patchcrypt.data.load_dataset`.
    """
    from .readers import idx_files, is_cifar_batches, expected_digests, list_images, split_root, tree_manifest

    path = Path(path)
    if not path.is_dir() or is_cifar_batches(path) or idx_files(path):
        return None
    root = split_root(path, split)
    classes, items = list_images(root)
    if not items:
        raise PatchcryptError(f"{root}: no images found (expected class sub-folders of image files)")
    labels = np.array([c for _, c in items], dtype=np.int64)
    manifest, prefix = tree_manifest(root)
    files = [rel for rel, _ in items]
    return FileSet(str(root), files, labels, classes, manifest=manifest, source=str(root),
                   digests=expected_digests(manifest, prefix, files, root))


__all__ += ["open_files"]
