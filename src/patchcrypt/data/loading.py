"""The data side of ``patchcrypt train``: in RAM or streamed, at the model's image size.

:func:`open_training_data` lists the train and test images, decides the size the model sees and whether the
decoded set fits the memory budget, and returns a :class:`TrainData` whose :meth:`~TrainData.train_batches`
yields plain uint8 batches (N, C, H, W) for any list of index batches — from one array in RAM, or decoded per
batch by DataLoader workers (:mod:`patchcrypt.data.stream`). Both ways give the same images in the same order,
so a run does not depend on which was chosen (except per-image keys on the test set, drawn per epoch when
streamed).

Image size (timm's convention): ``--img-size`` or, by default, the size the model's name declares
(``vit_pico_patch4_32`` → 32). Plain photos of another size are resized on load: a random-resized crop for
training (``--augment resized-crop``, chosen by ``auto``), resize + centre crop for testing. Encrypted data
is never resized (that would cut through the blocks); its model is built at the data's size, and an image of
another size than its manifest's (or, where the manifest records none, the first image's) is an error naming
it. Where the manifest records digests, every file is checked against its digest as its bytes are read.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch

from ..errors import PatchcryptError, SizeMismatchError
from ..runtime import progress, to_nchw
from .imageset import ImageSet
from .readers import encrypted_size, eval_folder, has_splits, load_dataset, other_size, val_folder
from .resize import RESIZE_RULE, random_resized_crop, sample_rng
from .shards import is_shard_folder, open_shards
from .split import hold_out, split_test_mask, val_fraction
from .stream import FileSet, StreamDataset, default_workers, make_loader, memory_budget, open_files

Images = Union[ImageSet, FileSet]


def declared_size(model: str, model_kwargs: Optional[dict] = None) -> Optional[int]:
    """The input size a model's name declares (``vit_tiny_patch16_224`` → 224), an ``img_size`` in its
    keyword arguments, or None (e.g. ``resnet18_cifar``)."""
    if model_kwargs and model_kwargs.get("img_size"):
        return int(model_kwargs["img_size"])
    m = re.search(r"_(\d+)$", model)
    return int(m.group(1)) if m and "patch" in model else None


@dataclass
class TrainData:
    """Train and test images for one run, and how batches are made of them."""

    train: Images
    test: Images
    streaming: bool
    resized: bool          # plain images brought to the model's size on load (random-resized crop to train)
    workers: int
    seed: int
    random_crop: bool = False  # training images as random-resized crops (--augment resized-crop)
    eval_batch: int = 500      # test images per forward pass (streaming: the training batch size, so that
                               # activations, not only pixels, stay bounded)
    device: Any = None         # where in-RAM training images are held (None: the host); batches are made there
    val: Optional[Images] = None  # the validation split that chooses best.pt (None: the last epoch is chosen)
    val_name: Optional[str] = None  # what it is, in words ("val/", "10% of train/ held out")
    test_name: str = "test"        # what the test split is, in words ("test/", "val/", "10% held out")

    def choose_augment(self, augment: str, pre_encrypted: bool) -> str:
        """``--augment`` with ``auto`` resolved: none on encrypted data, a random-resized crop for resized
        photos, else crop-flip. Sets :attr:`random_crop` to match."""
        if augment == "auto":
            augment = "none" if pre_encrypted else "resized-crop" if self.resized else "crop-flip"
        self.random_crop = augment == "resized-crop"
        return augment

    def preprocessing(self) -> str:
        """How the images were brought to the model's size, in words (the run's summary records it)."""
        manifest = getattr(self.train, "manifest", None)
        if manifest is not None:
            pre = manifest.get("preprocessing")
            done = f"; encrypt --resize: {pre.get('rule')}" if isinstance(pre, dict) and pre.get("rule") else ""
            return f"none: encrypted images used as stored{done}"
        if not self.resized:
            return "none: the images are at the model's size"
        train = "random-resized crop and flip" if self.random_crop else RESIZE_RULE
        return f"to {self.shape[0]}: training {train}; test and validation {RESIZE_RULE}"

    @property
    def shape(self) -> Tuple[int, int, int]:
        return tuple(self.train.shape)  # type: ignore[return-value]

    def train_batches(self, batches: List[torch.Tensor], epoch: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 (N, C, H, W), int64 (N,)) per index batch, in order; random-resized crops when resized."""
        if self.streaming:
            items = [[(int(i), self.seed, epoch) if self.random_crop else int(i) for i in b] for b in batches]
            yield from make_loader(StreamDataset(self.train, random_crop=self.random_crop), items, self.workers)
            return
        if not hasattr(self, "_x"):
            self._x, self._y = to_nchw(self.train.images), torch.from_numpy(self.train.labels)
            if self.device is not None:  # copied once; index batches on the device gather there
                self._x, self._y = self._x.to(self.device), self._y.to(self.device)
        for b in batches:
            if self.random_crop:
                imgs, size = self.train.images, self.train.images.shape[1]
                x = to_nchw(np.stack([random_resized_crop(imgs[int(i)], size, sample_rng(self.seed, epoch, int(i)))
                                      for i in b]))
            else:
                x = self._x[b]
            yield x, self._y[b]

    def test_batches(self, batch_size: Optional[int] = None,
                     images: Optional[Images] = None) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """The test set (or ``images``, e.g. :attr:`val`) in order (resize + centre crop), ``batch_size`` at a
        time; streamed when streaming."""
        images = self.test if images is None else images
        n, batch_size = len(images), batch_size or self.eval_batch
        batches = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
        if self.streaming:
            yield from make_loader(StreamDataset(images), batches, self.workers)
            return
        x, y = to_nchw(images.images), torch.from_numpy(images.labels)
        for b in batches:
            yield x[b[0]:b[-1] + 1], y[b[0]:b[-1] + 1]


def _split_files(path: Path, seed: int) -> Optional[Tuple[FileSet, FileSet]]:
    """Train and test :class:`FileSet` (a stratified 90/10 split of a tree without train/test, the same as
    the in-RAM split), or None when the source is not a tree of image files."""
    if is_shard_folder(path, "train"):  # WebDataset shards: encrypted (with a manifest) or a user's plain ones
        if (path / "train").is_dir():  # the test shards: test/, else val/ or validation/
            return open_shards(path, "train"), open_shards(path, eval_folder(path) or "test")
        full = open_shards(path)
    elif has_splits(path):
        train = open_files(path, "train")
        return None if train is None else (train, open_files(path, "test"))
    else:
        full = open_files(path)
    if full is None:
        return None
    is_test = split_test_mask(full.labels, seed)
    return full.take(np.flatnonzero(~is_test)), full.take(np.flatnonzero(is_test))


def split_validation(cfg: Any, path: Path, train: Images,
                     in_ram: bool) -> Tuple[Images, Optional[Images], Optional[str]]:
    """(train, validation, what the validation is) for ``cfg.val_split``: a folder of ``path`` (``auto``: a
    ``val/``/``validation/`` beside ``test/``), a held-out share of ``train`` (``0.1``), or none. The test split
    never chooses a checkpoint: a folder that is this data's test split is refused."""
    choice = str(cfg.val_split or "auto")
    share = val_fraction(choice)
    if share is not None:
        mask = hold_out(train.labels, share, cfg.seed)
        if not mask.any():
            raise PatchcryptError(f"--val-split {choice}: {len(train)} training images are too few to hold any out")
        return (train.take(np.flatnonzero(~mask)), train.take(np.flatnonzero(mask)),
                f"{100 * share:g}% of train/ held out")
    if choice == "none" or not path.is_dir():
        return train, None, None
    folder = val_folder(path) if choice == "auto" else choice
    if folder is None:
        return train, None, None
    if choice != "auto" and folder == eval_folder(path) or folder in ("train", "test"):
        raise PatchcryptError(f"--val-split {folder}: {folder}/ is this data's "
                              f"{'training' if folder == 'train' else 'test'} split and cannot choose the "
                              "checkpoint; give a share of train/ to hold out (e.g. --val-split 0.1)")
    if not (path / folder).is_dir():
        raise PatchcryptError(f"--val-split {folder}: {path} has no {folder}/ folder")
    if in_ram:
        val = load_dataset(path / folder, min_classes=0)
    else:
        val = open_files(path / folder)
    if list(val.classes) != list(train.classes):
        raise PatchcryptError(f"{path / folder}: its classes {val.classes} differ from train/'s {train.classes}")
    return train, val.subset(cfg.test_subset, cfg.seed), f"{folder}/"


def _test_name(path: Path) -> str:
    """The test split in words: the folder read (``val/`` for train/ + val/ trees), else a held-out 10%."""
    folder = eval_folder(path) if path.is_dir() else None
    return f"{folder}/" if folder else "the test split" if has_splits(path) else "10% of the images held out"


def _encrypted_side(files: FileSet, probe: Tuple[int, int, int]) -> int:
    """The side of an encrypted set's square images: its manifest's size (the first image, ``probe``, must
    have it), else the first image's. Never a size to resize to: every image must have it exactly."""
    h, w = probe[:2]
    want = encrypted_size(files.manifest)
    if want is not None and (h, w) != want:
        raise other_size(files.name(0), (h, w), want)
    if h != w:
        raise PatchcryptError(f"{files.source or files.root}: the encrypted images are {w}x{h}; the models take "
                              "square images (encrypted images are never resized)")
    return h


def _target_size(cfg: Any, files: FileSet, probe: Tuple[int, int, int]) -> int:
    h = probe[0]
    if files.manifest is not None:
        h = _encrypted_side(files, probe)
        if cfg.img_size and cfg.img_size != h:
            raise PatchcryptError(f"--img-size {cfg.img_size}: the data is encrypted at {h}x{h} and encrypted "
                                  "images cannot be resized (resize the plain images before encrypting)")
        return h
    return int(cfg.img_size or declared_size(cfg.model, cfg.model_kwargs) or h)


def open_training_data(cfg: Any, load_in_ram) -> TrainData:
    """Train and test data for ``cfg`` (a :class:`~patchcrypt.train.TrainConfig`).

    ``load_in_ram(cfg)`` is the in-RAM reader (``(train, test)`` ImageSets, subsets applied); it is used for
    sources that are not image trees, and for trees already at the model's size that fit the budget.
    """
    path = Path(cfg.data)
    if not path.exists():
        raise PatchcryptError(f"{path}: no such data folder")
    if cfg.img_size is not None and cfg.img_size < 1:
        raise PatchcryptError(f"--img-size must be positive, got {cfg.img_size}")
    workers = default_workers() if cfg.workers is None else int(cfg.workers)
    sets = _split_files(path, cfg.seed)
    if sets is None:  # CIFAR-10 batches, idx files: arrays already; nothing to stream
        if cfg.stream:
            warnings.warn(f"{path} is not a folder of image files; it is read into memory (--stream ignored)")
        return _with_validation(cfg, path, *load_in_ram(cfg), False, False, 0)
    train, test = sets
    if len(set(train.classes)) < 2:
        raise PatchcryptError(f"{path}: found {len(train.classes)} class(es); need at least 2 (one sub-folder "
                              "per class)")
    train, test = train.subset(cfg.subset, cfg.seed), test.subset(cfg.test_subset, cfg.seed)
    train, val, val_name = split_validation(cfg, path, train, in_ram=False)
    probe = train.probe()
    size = _target_size(cfg, train, probe)
    resized = probe[:2] != (size, size)
    shape = (size, size, probe[2])
    train, test = replace(train, shape=shape), replace(test, shape=shape)
    val = None if val is None else replace(val, shape=shape)
    names = dict(val_name=val_name, test_name=_test_name(path))
    decoded = (len(train) + len(test) + (len(val) if val is not None else 0)) * size * size * probe[2]
    streaming = cfg.stream if cfg.stream is not None else decoded > memory_budget()
    if streaming:
        return TrainData(train, test, True, resized, workers, cfg.seed, eval_batch=cfg.batch_size, val=val, **names)
    if not resized and train.spans is None:
        try:
            # cached decode of a tree at the model's size, as before
            return _with_validation(cfg, path, *load_in_ram(cfg), False, False, workers)
        except SizeMismatchError:  # images of mixed sizes: resize them below
            resized = train.manifest is None
            if not resized:
                raise
    val = None if val is None else val.materialize(max(1, workers))
    return TrainData(train.materialize(max(1, workers)), test.materialize(max(1, workers)), False, resized,
                     workers, cfg.seed, val=val, **names)


def _with_validation(cfg: Any, path: Path, train: ImageSet, test: ImageSet, streaming: bool, resized: bool,
                     workers: int) -> TrainData:
    """:class:`TrainData` of sets read into memory, with the validation split ``cfg.val_split`` asks for."""
    train, val, val_name = split_validation(cfg, path, train, in_ram=True)
    if val is not None and val.shape != train.shape:  # the resize path below takes mixed sizes
        raise PatchcryptError(f"{val_name}: its images are {val.shape[1]}x{val.shape[0]}, others are "
                              f"{train.shape[1]}x{train.shape[0]}")
    return TrainData(train, test, streaming, resized, workers, cfg.seed, val=val, val_name=val_name,
                     test_name=_test_name(path))


def open_eval_stream(path: Union[str, Path], split: Optional[str], img_size: Optional[int],
                     stream: Optional[bool] = None) -> Optional[FileSet]:
    """The data ``evaluate`` should stream (a :class:`FileSet` delivering ``img_size`` images), or None for the
    in-RAM path: shards always stream; a tree streams when its decoded size exceeds the memory budget, when
    its plain images need resizing to the model's size, or when ``stream`` says so."""
    path = Path(path)
    if stream is False:
        return None
    if is_shard_folder(path, split):
        if split == "test" and path.is_dir():
            split = eval_folder(path) or split  # train/ + val/: the test shards are in val/
        files = open_shards(path, split if split and (path / split).is_dir() else None)
    else:
        files = open_files(path, split if has_splits(path) else None)
    if files is None:
        return None
    h, w, c = files.probe()
    size = _encrypted_side(files, (h, w, c)) if files.manifest is not None else img_size or h
    resize = (h, w) != (size, size)
    if not (stream or files.spans is not None or resize or len(files) * size * size * c > memory_budget()):
        return None
    return replace(files, shape=(size, size, c))


def stream_logits(files: FileSet, logits_of, batch_size: int = 256, workers: Optional[int] = None):
    """(logits (N, K) numpy, labels (N,)) of ``logits_of(ImageSet of one batch)`` over a streamed FileSet."""
    n = len(files)
    batches = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
    out, labels = [], []
    loader = make_loader(StreamDataset(files), batches, default_workers() if workers is None else workers)
    with progress(total=n, desc="evaluate") as bar:  # a bar on a terminal
        for x, y in loader:
            batch = ImageSet(x.permute(0, 2, 3, 1).contiguous().numpy(), y.numpy(), files.classes, files.source,
                             files.manifest)
            out.append(logits_of(batch))
            labels.append(y.numpy())
            bar.update(len(y))
    return np.concatenate(out), np.concatenate(labels)


__all__ = ["TrainData", "open_training_data", "split_validation", "declared_size",
           "open_eval_stream", "stream_logits"]
