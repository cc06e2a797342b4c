"""Encryption as a transform for your own training loop (plain PyTorch, timm's train script, Lightning).

    >>> from patchcrypt import Key
    >>> from patchcrypt.transforms import Encrypt
    >>> enc = Encrypt(Key.generate(), "block-pixel", block_size=16)
    >>> import torch
    >>> x = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)   # a batch after augmentation, on any device
    >>> enc(x).shape
    torch.Size([2, 3, 32, 32])

:class:`Encrypt` is the same cipher as ``patchcrypt encrypt`` (bit for bit), applied on the tensor's own
device: the compiled index map and XOR mask are moved to the device once and the batch never visits the
host. :class:`JpegRoundTrip` compresses and decodes a batch as EtC JPEGs are (after :class:`Encrypt`, as
``patchcrypt train --jpeg-quality`` does). :class:`EncryptedImageFolder` wraps an ImageFolder tree with on-the-fly encryption for a
``DataLoader``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .ciphers import create_cipher
from .codec import jpeg_roundtrip
from .errors import PatchcryptError
from .keys import Key
from .runtime import to_nchw

if TYPE_CHECKING:
    from .record import EncryptionRecord

__all__ = ["Encrypt", "JpegRoundTrip", "EncryptedImageFolder"]


class Encrypt(nn.Module):
    """Encrypt uint8 image tensors block-wise with ``key``: a callable module, picklable for DataLoader workers.

    Place it **after** augmentation. Augmentations (random crops, flips, colour jitter, resizing) are
    defined on images: applied to ciphertext they move pixels across block boundaries and between the
    positions a key assigns, so the result is no longer an encryption of any image under the key (and the
    keyed model, or a model trained on ciphertext, sees data the key never produced). Augment the plain
    image, then encrypt; the data owner does both, and only ciphertext leaves. (Mixup is the exception: a
    convex combination commutes with the byte-level schemes' affine maps, so it may follow encryption.)

    Args:
        key: the owner's :class:`~patchcrypt.keys.Key` (or a path to a key file). The module holds it in
            memory; a pickle of the module (what a DataLoader worker receives) contains the key, so never
            save one to disk.
        scheme: a registered scheme name (``patchcrypt info`` lists them).
        block_size: M; H and W must be multiples of M.
        per_image: a fresh key per image (a random nonce mixed in per call; not reproducible, and not
            learnable by a keyed model).
        options: further options of the scheme's cipher (e.g. ``sub_block`` of the nested schemes).

    Shape:
        uint8 (C, H, W) or (N, C, H, W) on CPU or CUDA → the same shape, dtype and device.
    """

    def __init__(self, key: Union[Key, str, Path], scheme: str, block_size: int, per_image: bool = False,
                 **options: Any) -> None:
        super().__init__()
        if not isinstance(key, Key):
            key = Key.load(key)
        self.scheme, self.block_size, self.per_image = scheme, int(block_size), bool(per_image)
        self.cipher = create_cipher(scheme, key, block_size=block_size, per_image=per_image, **options)

    def forward(self, x: torch.Tensor, nonces: Optional[Sequence[bytes]] = None) -> torch.Tensor:
        """Encrypt ``x``; ``nonces`` (per-image keys only): one per image to reproduce a stored encryption."""
        if not isinstance(x, torch.Tensor):
            raise PatchcryptError(f"Encrypt takes a uint8 torch tensor (C, H, W) or (N, C, H, W), got {type(x).__name__}")
        if x.dtype != torch.uint8:
            raise PatchcryptError(f"Encrypt takes uint8 images (encrypt before ToTensor/normalisation), got {x.dtype}")
        n = 1 if x.ndim == 3 else x.shape[0]
        if self.per_image and nonces is None:
            nonces = self.cipher.new_nonces(n)
        return self.cipher.encrypt(x, nonces)

    def extra_repr(self) -> str:  # the fingerprint, never the key
        return (f"scheme={self.scheme!r}, block_size={self.block_size}, per_image={self.per_image}, "
                f"key={self.cipher.fingerprint}")


class EncryptedImageFolder(torch.utils.data.Dataset):
    """An ImageFolder tree (``root/<class>/<image>``) read as uint8 (C, H, W) tensors, augmented, encrypted.

    Args:
        root: the class-folder tree (or a root with ``train/`` and ``test/`` and ``split``).
        encrypt: an :class:`Encrypt` (None: plain images, e.g. the same loop as a reference).
        augment: a callable on uint8 (C, H, W) tensors applied *before* encryption (e.g. torchvision v2
            ``RandomCrop``/``RandomHorizontalFlip``).
        split: "train" or "test" when ``root`` holds both.

    Items: (uint8 (C, H, W) tensor, int label). ``classes`` lists the class names. Images are decoded once
    (the project's cached reader), so items are cheap; encryption runs in the DataLoader workers.
    """

    def __init__(self, root: Union[str, Path], encrypt: Optional[Encrypt] = None,
                 augment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                 split: Optional[str] = None) -> None:
        from .data import load_dataset

        ds = load_dataset(root, split, min_classes=1)
        if ds.manifest is not None:
            raise PatchcryptError(f"{root}: already encrypted (patchcrypt.json); read it as a plain ImageFolder")
        self.images = torch.from_numpy(ds.images).permute(0, 3, 1, 2)   # (N, C, H, W) view, no copy
        self.labels: List[int] = ds.labels.tolist()
        self.classes: List[str] = list(ds.classes)
        self.encrypt, self.augment = encrypt, augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        x = self.images[i].contiguous()
        if self.augment is not None:
            x = self.augment(x)
        if self.encrypt is not None:
            x = self.encrypt(x)
        return x, self.labels[i]


class JpegRoundTrip(nn.Module):
    """Encode every image as a JPEG and decode it again: what EtC images look like after JPEG compression.

    Args:
        quality: JPEG quality 1..100.
        subsampling: chroma subsampling "444", "422" or "420" (an EtC record's ``subsampling``).
        upsampling: how chroma is decoded, as :func:`patchcrypt.codec.decode_image` takes it: "block" for
            EtC JPEGs whose blocks are whole 4:2:0 macroblocks (as ``patchcrypt decrypt`` decodes them),
            "fancy" (libjpeg's default) otherwise. :meth:`for_record` picks both from an encryption record.

    Shape:
        uint8 (C, H, W) or (N, C, H, W) on any device → the same shape and device (the codec runs on the host).
    """

    def __init__(self, quality: int, subsampling: str = "444", upsampling: str = "fancy") -> None:
        super().__init__()
        self.quality, self.subsampling, self.upsampling = int(quality), subsampling, upsampling

    @classmethod
    def for_record(cls, record: "EncryptionRecord") -> "JpegRoundTrip":
        """The round trip of ``record``'s EtC JPEGs: its quality, subsampling and decoding rule."""
        if record.jpeg_quality is None:
            raise PatchcryptError("the record has no JPEG quality: its images are not JPEG compressed")
        return cls(record.jpeg_quality, record.subsampling, record.jpeg_upsampling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8:
            raise PatchcryptError("JpegRoundTrip takes uint8 torch tensors (C, H, W) or (N, C, H, W)")
        batch = x if x.ndim == 4 else x[None]
        arr = jpeg_roundtrip(batch.permute(0, 2, 3, 1).cpu().numpy(), self.quality, self.subsampling,
                             self.upsampling)
        out = to_nchw(arr).to(x.device)
        return out if x.ndim == 4 else out[0]

    def extra_repr(self) -> str:
        return f"quality={self.quality}, subsampling={self.subsampling!r}, upsampling={self.upsampling!r}"
