"""What the model sees: the train/test split of a folder, and how a uint8 batch is encrypted on the fly.

Three ways in (DESIGN §6, §7): plain data + key (the batch is encrypted on its device after augmentation),
a tree written by ``patchcrypt encrypt`` (no key; already ciphertext), and EtC JPEG (``--jpeg-quality``:
encrypt → JPEG → decode per batch, decoded as ``patchcrypt decrypt`` decodes the record's JPEGs).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from ..ciphers import get_scheme
from ..ciphers.nested import NESTED_STEPS
from ..data import ImageSet, load_dataset
from ..data.readers import has_splits
from ..data.split import split_test_mask
from ..errors import PatchcryptError
from ..keys import Key
from ..record import EncryptionRecord
from ..transforms import Encrypt, JpegRoundTrip
from .config import TrainConfig


@dataclass
class Pipeline:
    """How a uint8 batch becomes model input: optional on-the-fly encryption, then an optional JPEG round trip.

    ``encrypt_seconds`` adds up the time spent in :class:`~patchcrypt.transforms.Encrypt` (the trainer resets
    it every epoch).
    """

    encrypt: Optional[Encrypt] = None
    jpeg: Optional[JpegRoundTrip] = None
    encrypt_seconds: float = 0.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) uint8 → encrypted (and JPEG'd) batch on the same device."""
        if self.encrypt is not None:
            t0 = time.perf_counter()
            x = self.encrypt(x)
            self.encrypt_seconds += time.perf_counter() - t0
        if self.jpeg is not None:
            x = self.jpeg(x)
        return x


def split_sets(cfg: TrainConfig) -> Tuple[ImageSet, ImageSet]:
    """Train and test :class:`ImageSet` of ``cfg.data``: its train/test folders, else a deterministic
    stratified 90/10 split (seeded with ``cfg.seed``); ``cfg.subset``/``cfg.test_subset`` applied."""
    path = Path(cfg.data)
    if not path.exists():
        raise PatchcryptError(f"{path}: no such data folder")
    if has_splits(path):
        train = load_dataset(path, "train", min_classes=2)
        test = load_dataset(path, "test", min_classes=2)
    else:  # one tree: a deterministic stratified 90/10 split
        full = load_dataset(path, min_classes=2)
        is_test = split_test_mask(full.labels, cfg.seed)
        train, test = full.take(np.flatnonzero(~is_test)), full.take(np.flatnonzero(is_test))
    return train.subset(cfg.subset, cfg.seed), test.subset(cfg.test_subset, cfg.seed)


def resolve_encryption(cfg: TrainConfig, train: ImageSet) -> Tuple[Pipeline, EncryptionRecord, bool]:
    """Decide the encryption path; returns the pipeline, the record a checkpoint stores (which images the
    model expects) and whether the data came encrypted (the server's view) rather than encrypted here."""
    manifest = train.manifest
    if manifest is not None:  # pre-encrypted by the data owner: the server's view
        if cfg.key and cfg.init != "keyed":
            warnings.warn("the data is already encrypted (patchcrypt.json found); --key is ignored")
        if cfg.scheme and cfg.scheme != manifest["scheme"]:
            raise PatchcryptError(f"the data was encrypted with {manifest['scheme']!r}, not {cfg.scheme!r}")
        if cfg.block_size and cfg.block_size != manifest["block_size"]:
            raise PatchcryptError(f"the data was encrypted with block size {manifest['block_size']}, "
                                  f"not {cfg.block_size}")
        if cfg.augment not in ("auto", "none", "mixup"):
            raise PatchcryptError(f"augmentation {cfg.augment!r} is not valid on encrypted images "
                                  "(use mixup or none)")
        return Pipeline(), EncryptionRecord.from_manifest(manifest), True
    scheme = cfg.scheme or "plain"
    spec = get_scheme(scheme)  # unknown scheme: clear error listing the valid ones
    if scheme == "plain":
        record = EncryptionRecord(scheme="plain", jpeg_quality=cfg.jpeg_quality)
        return Pipeline(jpeg=_round_trip(record)), record, False
    if not cfg.key:
        raise PatchcryptError(f"scheme {scheme!r} on plain data needs --key (the data owner's key file)")
    block_size = spec.resolve_block_size(cfg.block_size)  # the one rule: a scheme's own size, else asked for
    key = Key.load(cfg.key)
    options = scheme_options(scheme, cfg.model_kwargs)
    encrypt = Encrypt(key, scheme, block_size=block_size, per_image=cfg.per_image, **options)
    record = EncryptionRecord(scheme=scheme, block_size=block_size, key_fingerprint=key.fingerprint,
                              per_image=cfg.per_image, jpeg_quality=cfg.jpeg_quality, options=options,
                              holder="the run encrypts with")
    return Pipeline(encrypt, _round_trip(record)), record, False


def scheme_options(scheme: str, model_kwargs) -> dict:
    """The cipher options a run takes from its model: a nested scheme (sub-blocks moved inside the patches)
    encrypts at the model's ``sub_block``, so a nested-invariant model of m sees ciphertexts of m (without it
    the cipher's default m = 4 would be used, to which a model of another m is not invariant)."""
    if "sub_block" in (model_kwargs or {}) and NESTED_STEPS & set(get_scheme(scheme).symbols):
        return {"sub_block": int(model_kwargs["sub_block"])}
    return {}


def _round_trip(record: EncryptionRecord) -> Optional[JpegRoundTrip]:
    """The JPEG round trip of the record's images (its subsampling and decoding rule), or None without JPEG."""
    return None if record.jpeg_quality is None else JpegRoundTrip.for_record(record)
