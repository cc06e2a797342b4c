"""The encryption record: how a set of images was (or must be) encrypted, in one place.

A manifest (``patchcrypt.json``), a checkpoint, a run (``config.yaml`` / ``summary.json``), the server's
``GET /v1/model`` answer and the data owner's client settings each say the same things: scheme, block size,
key fingerprint, per-image keys, JPEG quality and chroma subsampling, image shape. :class:`EncryptionRecord`
reads each of them into one type, so the rules that follow from those facts (which subsampling an EtC JPEG
uses, whether a key fits, which cipher to build) are written once. A record never holds a key.

>>> rec = EncryptionRecord(scheme="block-pixel", block_size=16, key_fingerprint="0123456789abcdef")
>>> rec.subsampling
'420'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from .errors import KeyMismatchError, PatchcryptError


# what Cipher.describe() states that a record holds in its own fields (the rest are scheme options)
_DESCRIBED = ("scheme", "block_size", "key_fingerprint", "per_image", "pad", "steps")


def _shown(value: Any) -> str:
    return "none" if value is None else repr(value) if isinstance(value, str) else str(value)


def subsampling_for(block_size: Optional[int]) -> str:
    """The chroma subsampling an EtC JPEG of block size ``block_size`` uses when none was recorded.

    4:2:0 halves the chroma planes, so a block stays aligned with the 16×16 chroma MCUs only when M is a
    multiple of 16; otherwise 4:4:4 keeps every block's colour inside the block (no block size: 4:4:4).
    """
    return "420" if block_size and block_size % 16 == 0 else "444"


@dataclass(frozen=True)
class EncryptionRecord:
    """What the images are encrypted with (never the key itself).

    Attributes:
        scheme: registry name (``plain`` for none); None when the source records none.
        block_size: block size M, or None (plain).
        key_fingerprint: the key's 16-hex-digit fingerprint, or None.
        per_image: whether every image has its own nonce-derived key.
        jpeg_quality: EtC JPEG quality, or None for lossless images.
        recorded_subsampling: the subsampling the source states ("420", "422", "444"), or None; read it
            through :attr:`subsampling`, which falls back to :func:`subsampling_for`.
        image_shape: (H, W, C) of every image, or None when not one shape or not recorded.
        pad: whether images were padded to a multiple of the block size (manifests only).
        options: further cipher options (e.g. ``etc-gray``'s ``subsampling``/``color``).
        holder: how messages name the source ("the data was encrypted with", "the model expects", ...).
    """

    scheme: Optional[str] = None
    block_size: Optional[int] = None
    key_fingerprint: Optional[str] = None
    per_image: bool = False
    jpeg_quality: Optional[int] = None
    recorded_subsampling: Optional[str] = None
    image_shape: Optional[Tuple[int, int, int]] = None
    pad: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    holder: str = field(default="the data expects", compare=False)

    # -- constructors -----------------------------------------------------------------------------------
    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> "EncryptionRecord":
        """From a (validated) manifest dict as :func:`patchcrypt.data.manifest.read_manifest` returns it."""
        shape = manifest.get("image_shape")
        return cls(scheme=manifest["scheme"], block_size=manifest["block_size"],
                   key_fingerprint=manifest.get("key_fingerprint"), per_image=bool(manifest.get("per_image", False)),
                   jpeg_quality=manifest.get("jpeg_quality"), recorded_subsampling=manifest.get("subsampling"),
                   image_shape=tuple(shape) if shape else None, pad=bool(manifest.get("pad", False)),
                   options=dict(manifest.get("options") or {}), holder="the data was encrypted with")

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any]) -> "EncryptionRecord":
        """From a checkpoint dict (:func:`patchcrypt.models.load_checkpoint`)."""
        kw = ckpt.get("model_kwargs") or {}
        size, chans = kw.get("img_size"), kw.get("in_chans")
        return cls(scheme=ckpt.get("scheme"), block_size=ckpt.get("block_size"),
                   key_fingerprint=ckpt.get("key_fingerprint"), per_image=bool(ckpt.get("per_image")),
                   jpeg_quality=ckpt.get("jpeg_quality"), recorded_subsampling=ckpt.get("subsampling"),
                   image_shape=(int(size), int(size), int(chans)) if size and chans else None,
                   holder="the model expects")

    @classmethod
    def from_run(cls, config: Mapping[str, Any], summary: Optional[Mapping[str, Any]] = None) -> "EncryptionRecord":
        """From a run folder's ``config.yaml`` (a :class:`patchcrypt.train.TrainConfig` as a dict) and, where
        there is one, its ``summary.json``, whose values (what the run really used) win."""
        summary = summary or {}

        def pick(name: str, default: Any = None) -> Any:
            value = summary.get(name)
            return value if value is not None else config.get(name, default)

        return cls(scheme=pick("scheme") or "plain", block_size=pick("block_size"),
                   key_fingerprint=summary.get("key_fingerprint"), per_image=bool(pick("per_image", False)),
                   jpeg_quality=pick("jpeg_quality"), recorded_subsampling=summary.get("subsampling"),
                   holder="the run expects")

    @classmethod
    def from_server(cls, info: Mapping[str, Any]) -> "EncryptionRecord":
        """From the server's ``GET /v1/model`` answer (an announcement: compare it, never trust it)."""
        size = info.get("image_size")
        return cls(scheme=info.get("scheme"), block_size=info.get("block_size"),
                   key_fingerprint=info.get("key_fingerprint"), per_image=bool(info.get("per_image")),
                   jpeg_quality=info.get("jpeg_quality"), recorded_subsampling=info.get("subsampling"),
                   image_shape=tuple(size) if size else None, holder="the server's model expects")

    @classmethod
    def from_owner(cls, scheme: Optional[str], block_size: Optional[int], key_fingerprint: Optional[str] = None,
                   allow_weak_scheme: bool = False) -> "EncryptionRecord":
        """From the data owner's own settings (client side); validated by
        :func:`patchcrypt.ciphers.policy.check_owner_choice` (weak schemes refused unless allowed)."""
        from .ciphers.policy import check_owner_choice

        m = check_owner_choice(scheme, block_size, allow_weak_scheme)
        return cls(scheme=scheme, block_size=m, key_fingerprint=key_fingerprint, holder="you chose")

    @classmethod
    def from_cipher(cls, cipher, *, jpeg_quality: Optional[int] = None, subsampling: Optional[str] = None,
                    image_shape: Optional[Tuple[int, int, int]] = None,
                    holder: str = "the data was encrypted with") -> "EncryptionRecord":
        """From the cipher that encrypts (or encrypted) the images: scheme, block size, key fingerprint,
        per-image keys, padding and the scheme's further options, as :meth:`Cipher.describe` states them."""
        desc = cipher.describe()
        return cls(scheme=cipher.name, block_size=desc["block_size"], key_fingerprint=desc["key_fingerprint"],
                   per_image=bool(desc["per_image"]), jpeg_quality=jpeg_quality, recorded_subsampling=subsampling,
                   image_shape=tuple(image_shape) if image_shape else None, pad=bool(desc["pad"]),
                   options={k: v for k, v in desc.items() if k not in _DESCRIBED}, holder=holder)

    # -- writers: every file or answer that states these facts is written from a record ------------------
    def to_manifest(self) -> Dict[str, Any]:
        """The encryption facts of a manifest (``patchcrypt.json``); :func:`patchcrypt.data.manifest.
        build_manifest` adds the format, the files and the classes. Read back by :meth:`from_manifest`."""
        return {"scheme": self.scheme, "block_size": self.block_size, "options": dict(self.options),
                "image_shape": list(self.image_shape) if self.image_shape else None,
                "key_fingerprint": self.key_fingerprint, "per_image": self.per_image, "pad": self.pad,
                "jpeg_quality": self.jpeg_quality,
                "subsampling": self.subsampling if self.jpeg_quality is not None else None}

    def to_announcement(self) -> Dict[str, Any]:
        """The encryption facts of the server's ``GET /v1/model`` answer (nothing secret); the server adds the
        model name, classes and image size. Read back by :meth:`from_server`."""
        return {"scheme": self.scheme, "block_size": self.block_size, "key_fingerprint": self.key_fingerprint,
                "jpeg_quality": self.jpeg_quality, "per_image": self.per_image,
                "subsampling": self.subsampling if self.jpeg_quality is not None else None}

    def checkpoint_fields(self) -> Dict[str, Any]:
        """The encryption facts a checkpoint stores (:func:`patchcrypt.models.save_checkpoint`); read back by
        :meth:`from_checkpoint`."""
        return {"scheme": self.scheme, "block_size": self.block_size, "key_fingerprint": self.key_fingerprint,
                "per_image": self.per_image, "jpeg_quality": self.jpeg_quality,
                "subsampling": self.recorded_subsampling}

    def require_same(self, other: "EncryptionRecord",
                     fields: Tuple[str, ...] = ("scheme", "block_size", "key_fingerprint")) -> None:
        """Raise :class:`KeyMismatchError` (one line, naming the first differing fact) unless ``other`` states
        the same ``fields`` as this record. ``self`` is what is expected, ``other`` what was found.

        >>> want = EncryptionRecord(scheme="etc", block_size=16, holder="the model expects")
        >>> got = EncryptionRecord(scheme="etc", block_size=8, holder="the data was encrypted with")
        >>> want.require_same(got)
        Traceback (most recent call last):
        ...
        patchcrypt.errors.KeyMismatchError: block size: the data was encrypted with 8, but the model expects 16
        """
        for name in fields:
            want, got = getattr(self, name), getattr(other, name)
            if want != got:
                raise KeyMismatchError(f"{name.replace('_', ' ')}: {other.holder} {_shown(got)}, "
                                       f"but {self.holder} {_shown(want)}")

    # -- what follows from it ---------------------------------------------------------------------------
    @property
    def subsampling(self) -> str:
        """The chroma subsampling of EtC JPEGs: as recorded, else the block-size rule (:func:`subsampling_for`)."""
        return self.recorded_subsampling or subsampling_for(self.block_size)

    @property
    def jpeg_upsampling(self) -> str:
        """How every path decodes this record's ciphertext JPEGs (decrypt, the server, readers of an encrypted
        tree, training's and evaluation's JPEG round trip): the ``upsampling`` of
        :func:`patchcrypt.codec.decode_image`.

        "block" for encrypted images with 4:2:0 chroma and M a multiple of 16: every block is whole 16×16
        macroblocks, so chroma is interpolated only inside each one and never mixes a scrambled neighbour's
        colour in (see :mod:`patchcrypt.codec`). "fancy" (libjpeg's default) otherwise: plain images, and block
        sizes that do not align with the macroblocks. 4:4:4 and grayscale JPEGs and lossless files decode the
        same either way.

        >>> EncryptionRecord(scheme="etc", block_size=16).jpeg_upsampling
        'block'
        >>> EncryptionRecord(scheme="etc", block_size=16, recorded_subsampling="444").jpeg_upsampling
        'fancy'
        >>> EncryptionRecord(scheme="plain").jpeg_upsampling
        'fancy'
        """
        aligned = bool(self.block_size) and self.block_size % 16 == 0
        return "block" if not self.is_plain and aligned and self.subsampling == "420" else "fancy"

    @property
    def is_plain(self) -> bool:
        return self.scheme in (None, "plain")

    def check_key(self, key) -> None:
        """Raise :class:`KeyMismatchError` (one line, fingerprints only) unless ``key`` is the recorded one."""
        if self.key_fingerprint != key.fingerprint:
            raise KeyMismatchError(f"wrong key: {self.holder} key {self.key_fingerprint}, "
                                   f"this key is {key.fingerprint}")

    def cipher(self, key, verify: bool = True, **overrides: Any):
        """The cipher this record describes, for ``key`` (None for ``plain``); ``overrides`` replace options.

        With ``verify`` (the default) a key whose fingerprint differs from the recorded one is refused;
        ``verify=False`` is for a throwaway key that only shows what the scheme does.
        """
        from .ciphers import create_cipher

        if self.scheme is None:
            raise PatchcryptError("no scheme is recorded, so the encryption cannot be rebuilt")
        if self.block_size is None and self.scheme != "plain":
            raise PatchcryptError(f"scheme {self.scheme!r} is recorded without a block size")
        if verify and key is not None and self.key_fingerprint is not None:
            self.check_key(key)
        kw: Dict[str, Any] = dict(self.options)
        if self.per_image:
            kw["per_image"] = True
        if self.pad:
            kw["pad"] = True
        kw.update(overrides)
        return create_cipher(self.scheme, key, block_size=self.block_size or 1, **kw)

    def replace(self, **changes: Any) -> "EncryptionRecord":
        return dataclasses.replace(self, **changes)
