"""Grayscale-based EtC (Chuman, Sirichotedumrong, Kiya): colour components side by side as one image.

Encryption: RGB → YCbCr (JFIF, full range), optionally 4:2:0 chroma (2×2 means), and the components are
placed side by side as one grayscale image, which is then block-scrambled, rotated/flipped and
negative–positive transformed on 8×8 blocks and compressed as a grayscale JPEG.

Layout of the composite (H rows):
    4:4:4  →  [ Y | Cb | Cr ]             width 3W
    4:2:0  →  [ Y | Cb over Cr ]          width W + W/2  (Cb and Cr are H/2 × W/2 each)

The keyed part is an exact bijection on the composite (``encrypt_components``/``decrypt_components``).
The colour conversion in front of it is the usual 8-bit YCbCr conversion, which is not injective on
uint8 RGB, so **an RGB round trip is not bit for bit**: it is exact up to that conversion (a few grey
levels with 4:4:4; more with 4:2:0, whose chroma is a 2×2 mean). Grayscale input (``color=False``) has no
conversion and round-trips exactly.

The conversion is computed in integer arithmetic (JFIF coefficients scaled by 10^6, exact sums, then
round half to even), the same operations in numpy and torch on any device, so numpy and torch inputs give
identical ciphertexts and decryptions. A floating-point matrix product would not: its rounding depends on
the library's summation order and flips values that fall on a .5 tie.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..codec import RGB2YCC as _RGB2YCC
from ..codec import YCC2RGB as _YCC2RGB
from ..errors import PatchcryptError
from .base import Cipher, SchemeSpec, _is_torch, _to_batch

# JFIF coefficients as exact integers (×10^6): every coefficient has at most 6 decimals.
_SCALE = 1_000_000
_RGB2YCC_INT = np.rint(_RGB2YCC * _SCALE).astype(np.int64)
_YCC2RGB_INT = np.rint(_YCC2RGB * _SCALE).astype(np.int64)
_CHROMA_OFFSET = 128


def _mix(z, mat: np.ndarray, offsets, cat):
    """out[..., k] = Σ_j mat[k, j]·z[..., j] + offsets[k] on int64 arrays/tensors (..., 3), exactly."""
    cols = [z[..., j:j + 1] for j in range(3)]
    return cat([cols[0] * int(mat[k, 0]) + cols[1] * int(mat[k, 1]) + cols[2] * int(mat[k, 2]) + int(offsets[k])
                for k in range(3)], -1)


def _round_div(v, d: int, torch_in: bool):
    """v / d rounded half to even, for int64 v (numpy or torch) and a positive int d; exact."""
    if torch_in:
        import torch

        q = torch.div(v, d, rounding_mode="floor")
    else:
        q = v // d
    twice_r = 2 * (v - q * d)
    up = (twice_r > d) | ((twice_r == d) & (q % 2 == 1))
    return q + (up.long() if torch_in else up)


def _ops(torch_in: bool):
    """(concatenate, clip, int64 NHWC view, uint8 cast) for numpy or torch."""
    if torch_in:
        import torch

        from ..runtime import to_nchw

        return (torch.cat, lambda a, lo, hi: a.clamp(lo, hi), lambda b: b.permute(0, 2, 3, 1).long(),
                lambda a: to_nchw(a.to(torch.uint8)))
    return np.concatenate, np.clip, lambda b: b.astype(np.int64), lambda a: a.astype(np.uint8)


# -- the public colour conversion (no key) -----------------------------------------------------------------
SUBSAMPLINGS = ("420", "444")
DEFAULT_SUBSAMPLING = "420"


def _check_subsampling(subsampling: str) -> None:
    if subsampling not in SUBSAMPLINGS:
        raise PatchcryptError(f"etc-gray subsampling must be 420 or 444, not {subsampling!r}")


def composite_shape(height: int, width: int, subsampling: str = DEFAULT_SUBSAMPLING) -> Tuple[int, int]:
    """(Hc, Wc) of the grayscale composite of an RGB ``height`` x ``width`` image."""
    _check_subsampling(subsampling)
    return (height, width + width // 2) if subsampling == "420" else (height, 3 * width)


def to_composite(batch, subsampling: str = DEFAULT_SUBSAMPLING, torch_in: Optional[bool] = None):
    """RGB uint8 batch → its Y|Cb|Cr composite, uint8: numpy (N, H, W, 3) → (N, H, Wc, 1), torch (N, 3, H, W) →
    (N, 1, H, Wc) (``torch_in``: the layout, read off the type when None). The public, keyless part of etc-gray;
    4:2:0 needs even H and W.

    >>> to_composite(np.full((1, 2, 2, 3), 200, np.uint8))[0, :, :, 0].tolist()   # grey: Y | Cb over Cr
    [[200, 200, 128], [200, 200, 128]]
    """
    _check_subsampling(subsampling)
    torch_in = _is_torch(batch) if torch_in is None else torch_in
    cat, clip, as_int, as_u8 = _ops(torch_in)
    x = as_int(batch)
    ycc = clip(_round_div(_mix(x, _RGB2YCC_INT, (0, _CHROMA_OFFSET * _SCALE, _CHROMA_OFFSET * _SCALE),
                               cat), _SCALE, torch_in), 0, 255)
    y, cb, cr = ycc[..., 0:1], ycc[..., 1:2], ycc[..., 2:3]
    if subsampling == "420":
        n, h, w, _ = ycc.shape
        cb = _round_div(cb.reshape(n, h // 2, 2, w // 2, 2, 1).sum((2, 4)), 4, torch_in)
        cr = _round_div(cr.reshape(n, h // 2, 2, w // 2, 2, 1).sum((2, 4)), 4, torch_in)
        out = cat([y, cat([cb, cr], 1)], 2)
    else:
        out = cat([y, cb, cr], 2)
    return as_u8(out)


def from_composite(comp, subsampling: str = DEFAULT_SUBSAMPLING, torch_in: Optional[bool] = None):
    """Composite uint8 batch → RGB uint8 batch (numpy NHWC / torch NCHW), the inverse of :func:`to_composite`
    up to the rounding of the 8-bit YCbCr conversion (and the 2x2 chroma means of 4:2:0)."""
    _check_subsampling(subsampling)
    torch_in = _is_torch(comp) if torch_in is None else torch_in
    cat, clip, as_int, as_u8 = _ops(torch_in)
    z = as_int(comp)
    n, h, wc, _ = z.shape
    if subsampling == "420":
        w = wc * 2 // 3
        y, c = z[:, :, :w], z[:, :, w:]
        cb, cr = c[:, : h // 2], c[:, h // 2:]
        up = (lambda a: a.repeat_interleave(2, 1).repeat_interleave(2, 2)) if torch_in else \
            (lambda a: a.repeat(2, axis=1).repeat(2, axis=2))
        cb, cr = up(cb), up(cr)
    else:
        w = wc // 3
        y, cb, cr = z[:, :, :w], z[:, :, w:2 * w], z[:, :, 2 * w:]
    ycc = cat([y, cb - _CHROMA_OFFSET, cr - _CHROMA_OFFSET], 3)
    rgb = clip(_round_div(_mix(ycc, _YCC2RGB_INT, (0, 0, 0), cat), _SCALE, torch_in), 0, 255)
    return as_u8(rgb)


class EtcGrayCipher(Cipher):
    """``etc-gray``: options ``subsampling`` ("420" default, or "444") and ``color`` (False for gray input)."""

    def __init__(self, spec: SchemeSpec, key, block_size: int, per_image: bool = False, pad: bool = False,
                 subsampling: str = DEFAULT_SUBSAMPLING, color: bool = True):
        _check_subsampling(subsampling)
        super().__init__(spec, key, block_size, per_image=per_image, pad=pad)
        self.subsampling = subsampling
        self.color = bool(color)

    def describe(self):
        d = super().describe()
        d.update(subsampling=self.subsampling, color=self.color)
        return d

    @property
    def _unit(self) -> int:
        """Side lengths must be multiples of this (16 for 4:2:0 chroma on 8×8 blocks)."""
        return 2 * self.block_size if (self.color and self.subsampling == "420") else self.block_size

    def composite_shape(self, height: int, width: int) -> Tuple[int, int]:
        if not self.color:
            return height, width
        return composite_shape(height, width, self.subsampling)

    def encrypted_shape(self, height: int, width: int, channels: int) -> Tuple[int, int, int]:
        return (*self.composite_shape(height, width), 1)

    def transformations_log10(self, height: int, width: int, channels: int = 3) -> float:
        """Transformation count of the keyed steps on the grayscale composite of an H×W image."""
        hc, wc = self.composite_shape(height, width)
        return super().transformations_log10(hc, wc, 1)

    def _label(self, symbol, shape):
        return (*super()._label(symbol, shape), "subsampling", self.subsampling if self.color else "gray")

    def _check(self, h: int, w: int) -> None:
        u = self._unit
        if h % u or w % u:
            why = " (4:2:0 chroma on 8x8 blocks)" if u != self.block_size else ""
            raise PatchcryptError(f"image size {h}x{w} is not a multiple of {u}{why} (use --pad or --resize)")

    # -- colour conversion (numpy NHWC or torch NCHW uint8 in, same layout uint8 out; integer arithmetic) --
    def to_composite(self, batch, torch_in: bool):
        """RGB uint8 batch → composite uint8 batch (numpy (N, H, Wc, 1) / torch (N, 1, H, Wc)); see
        :func:`to_composite` (the same conversion, without a key)."""
        return to_composite(batch, self.subsampling, torch_in)

    def from_composite(self, comp, torch_in: bool):
        """Composite uint8 batch → RGB uint8 batch (inverse of :meth:`to_composite` up to rounding)."""
        return from_composite(comp, self.subsampling, torch_in)

    # -- application -------------------------------------------------------------------------------------
    def _apply(self, batch, direction, nonces, shape, torch_in):
        h, w, c = shape
        if direction == "enc":
            want = 3 if self.color else 1
            if c != want:
                kind = "colour (3-channel)" if self.color else "grayscale (1-channel)"
                raise PatchcryptError(f"etc-gray with color={self.color} needs {kind} images, got {c} channel(s)")
            self._check(h, w)
            comp = self._banded(self.to_composite, batch, torch_in, h, to_comp=True) if self.color else batch
            hc, wc = self.composite_shape(h, w)
            return self._apply_keyed(comp, "enc", nonces, (hc, wc, 1), torch_in)
        # decrypt: input is the encrypted composite
        if c != 1:
            raise PatchcryptError(f"etc-gray ciphertexts are grayscale, got {c} channels")
        comp = self._apply_keyed(batch, "dec", nonces, (h, w, 1), torch_in)
        return self._banded(self.from_composite, comp, torch_in, h, to_comp=False) if self.color else comp

    # Rows converted at a time on large numpy images: the exact integer conversion works in int64, 8 bytes
    # per value for each of several intermediates, so a whole 40 MP image would need gigabytes.
    _ROWS = 256

    def _banded(self, convert, batch, torch_in: bool, h: int, to_comp: bool):
        """``convert`` (to or from the composite) applied a band of rows at a time on numpy batches; exact,
        since 4:2:0 chroma pairs rows 2i and 2i + 1 only and the band is even."""
        if torch_in or h <= self._ROWS:
            return convert(batch, torch_in)
        n, _, width = batch.shape[:3]
        half = self.subsampling == "420"
        w = width if to_comp else (width * 2 // 3 if half else width // 3)
        out = np.empty((n, h) + (self.composite_shape(h, w)[1:] + (1,) if to_comp else (w, 3)), np.uint8)
        for r in range(0, h, self._ROWS):
            r1 = min(h, r + self._ROWS)
            if to_comp:
                part = convert(batch[:, r:r1], False)
                _put_composite_rows(out, part, r, r1, w, h, half)
            else:
                out[:, r:r1] = convert(_composite_rows(batch, r, r1, w, h, half), False)
        return out

    def _pad_unit(self) -> int:
        return self._unit

    def _components(self, x, direction: str, nonces):
        torch_in = _is_torch(x)
        batch, unbatch = _to_batch(x, torch_in)
        shape = (*batch.shape[2:], batch.shape[1]) if torch_in else batch.shape[1:]
        if shape[2] != 1:
            raise PatchcryptError(f"a composite is grayscale, got {shape[2]} channels")
        return unbatch(self._apply_keyed(batch, direction, nonces, tuple(shape), torch_in))

    def encrypt_components(self, composite, nonces=None):
        """The exact keyed bijection on a grayscale composite (numpy (N, Hc, Wc, 1) or torch (N, 1, Hc, Wc))."""
        return self._components(composite, "enc", nonces)

    def decrypt_components(self, encrypted, nonces=None):
        """Inverse of :meth:`encrypt_components`."""
        return self._components(encrypted, "dec", nonces)


def _composite_rows(comp: np.ndarray, r0: int, r1: int, w: int, h: int, half: bool) -> np.ndarray:
    """The composite of image rows r0..r1 alone (the layout :meth:`EtcGrayCipher.to_composite` gives them)."""
    if not half:
        return comp[:, r0:r1]
    chroma = np.concatenate([comp[:, r0 // 2:r1 // 2, w:], comp[:, h // 2 + r0 // 2:h // 2 + r1 // 2, w:]], 1)
    return np.concatenate([comp[:, r0:r1, :w], chroma], 2)


def _put_composite_rows(out: np.ndarray, part: np.ndarray, r0: int, r1: int, w: int, h: int, half: bool) -> None:
    """Write the composite of image rows r0..r1 (``part``) into its place in the whole composite ``out``."""
    if not half:
        out[:, r0:r1] = part
        return
    k = (r1 - r0) // 2
    out[:, r0:r1, :w] = part[:, :, :w]
    out[:, r0 // 2:r0 // 2 + k, w:] = part[:, :k, w:]
    out[:, h // 2 + r0 // 2:h // 2 + r0 // 2 + k, w:] = part[:, k:, w:]
