"""Image files and JPEG (DESIGN §6): Pillow (libjpeg-turbo) with explicit quality and chroma subsampling.

Arrays are uint8 (H, W, C) with C = 3 (RGB) or C = 1 (grayscale). Every failure to read or decode is a
:class:`~patchcrypt.errors.PatchcryptError` naming the file, never a Pillow traceback.

Chroma upsampling on decode matters for EtC. libjpeg's default ("fancy") upsampling interpolates 4:2:0
chroma across macroblock borders, so after block scrambling, negative-positive or colour shuffling each
16×16 block's border pixels mix in the chroma of an unrelated block, costing about 4 dB PSNR after
decryption at Q=90. ``upsampling="block"`` keeps every 16×16 macroblock independent: libjpeg-turbo's
simple upsampling (via simplejpeg) gives each macroblock's decoded 8×8 chroma samples, which are then
interpolated with libjpeg's own triangular filter inside the macroblock only (edges clamped). The filter
is symmetric and the colour steps are affine per pixel, so this commutes with rotation, flips,
negative-positive and colour shuffling of the block, and decrypted EtC images come within about 0.3 dB
of plain JPEG (``benchmarks/compression.py``). :attr:`patchcrypt.record.EncryptionRecord.jpeg_upsampling`
decides where: every path that decodes ciphertext JPEGs (decrypt, the server, readers of an encrypted tree,
training's round trip) asks it, so all of them see the same pixels.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from .atomic import atomic_write
from .bounded import image_file_max, read_bounded
from .errors import PatchcryptError, SizeMismatchError

# Pillow's `subsampling` argument: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0
SUBSAMPLING = {"444": 0, "422": 1, "420": 2}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
PathLike = Union[str, os.PathLike]

# Decompression bombs: a few hundred bytes of header can declare an image of billions of pixels, and the
# decoder allocates all of it before finding the data missing. Every decode reads the declared size from
# the header first and refuses anything above this many pixels (40 MP, e.g. 8,000×5,000).
DEFAULT_MAX_PIXELS = 40_000_000
MAX_PIXELS_ENV = "PATCHCRYPT_MAX_PIXELS"


def max_pixels() -> int:
    """The pixel limit per decoded image: ``$PATCHCRYPT_MAX_PIXELS`` when set, else 40,000,000."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise PatchcryptError(f"{MAX_PIXELS_ENV} must be a positive whole number of pixels, got {text!r}")
    return value


def image_size(data: bytes, name: str = "image") -> Tuple[int, int]:
    """(H, W) an encoded image declares in its header, read without decoding any pixels."""
    if data[:2] == b"\xff\xd8":
        import simplejpeg

        try:
            h, w, _, _ = simplejpeg.decode_jpeg_header(data)
            return int(h), int(w)
        except ValueError:
            pass  # let Pillow try (and name the problem) below
    try:
        # Image.open reads the header only; pixels are decoded by load(), which is never called here
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            return int(h), int(w)
    except Image.DecompressionBombError:
        raise PatchcryptError(f"{name}: image declares more pixels than Pillow allows; refused") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PatchcryptError(f"{name}: not a readable image ({_reason(exc)})") from None


def check_pixels(h: int, w: int, name: str, limit: Optional[int] = None) -> None:
    """Refuse an image of (``h``, ``w``) pixels over ``limit`` (an expected size), or over :func:`max_pixels`
    when ``limit`` is None."""
    if limit is not None:  # the caller knows the size to expect (e.g. the server: the model's input)
        if h * w > limit:
            raise SizeMismatchError(f"{name}: image declares {w}x{h} = {h * w:,} pixels, more than the "
                                    f"{limit:,} expected; refused before decoding")
        return
    limit = max_pixels()
    if h * w > limit:
        raise PatchcryptError(f"{name}: image declares {w}x{h} = {h * w:,} pixels, over the limit of {limit:,} "
                              f"(set {MAX_PIXELS_ENV} higher if the file is trusted)")


def _subsampling(value: Union[str, int]) -> int:
    key = str(value).replace(":", "")
    if key not in SUBSAMPLING:
        raise PatchcryptError(f"subsampling must be one of 444, 422, 420; got {value!r}")
    return SUBSAMPLING[key]


def _check_quality(quality: int) -> int:
    if not 1 <= int(quality) <= 100:
        raise PatchcryptError(f"JPEG quality must be in 1..100, got {quality}")
    return int(quality)


def to_pil(img: np.ndarray) -> Image.Image:
    """uint8 (H, W, 3) / (H, W, 1) / (H, W) array → PIL image (RGB or L)."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise PatchcryptError(f"images must be uint8, got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(img), mode="L")
    if img.ndim == 3 and img.shape[2] == 3:
        return Image.fromarray(np.ascontiguousarray(img), mode="RGB")
    raise PatchcryptError(f"expected an image (H, W, 3) or (H, W, 1), got shape {img.shape}")


def from_pil(im: Image.Image, mode: Optional[str] = None) -> np.ndarray:
    """PIL image → uint8 (H, W, C). ``mode`` "RGB" or "L" converts; None keeps L as C=1, else RGB."""
    if mode is None:
        mode = "L" if im.mode in ("L", "1", "I;16", "I", "F") else "RGB"
    if mode not in ("RGB", "L"):
        raise PatchcryptError(f"mode must be RGB or L, got {mode!r}")
    arr = np.asarray(im.convert(mode), dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def encode_jpeg(img: np.ndarray, quality: int = 90, subsampling: Union[str, int] = "420",
                optimize: bool = False) -> bytes:
    """Encode a uint8 image as baseline JPEG bytes. Grayscale (C=1) images give a grayscale JPEG.

    Args:
        img: (H, W, 3) RGB or (H, W, 1) / (H, W) grayscale, uint8.
        quality: IJG quality factor 1..100.
        subsampling: chroma subsampling "444", "422" or "420" (ignored for grayscale).
    """
    im = to_pil(img)
    buf = io.BytesIO()
    kw = dict(quality=_check_quality(quality), optimize=optimize)
    if im.mode == "RGB":
        kw["subsampling"] = _subsampling(subsampling)
    im.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def decode_image(data: bytes, mode: Optional[str] = None, name: str = "image",
                 upsampling: str = "fancy", limit: Optional[int] = None) -> np.ndarray:
    """Decode PNG/JPEG/... bytes to uint8 (H, W, C); truncated or non-image data is a clear error.

    >>> img = np.zeros((32, 32, 3), np.uint8)
    >>> decode_image(encode_jpeg(img, quality=90, subsampling="420"), upsampling="block").shape
    (32, 32, 3)
    >>> decode_image(b"not an image", name="x.jpg")
    Traceback (most recent call last):
    ...
    patchcrypt.errors.PatchcryptError: x.jpg: not a readable image (unknown image format)

    Args:
        upsampling: "fancy" (libjpeg's default, via Pillow) or "block" (chroma interpolated only inside each
            macroblock; for decrypting EtC JPEGs, see the module docstring). Non-JPEG data ignores it.
        limit: most pixels the header may declare (default :func:`max_pixels`); larger images are refused
            before any pixel is decoded.
    """
    if upsampling not in ("fancy", "block"):
        raise PatchcryptError(f"upsampling must be 'fancy' or 'block', got {upsampling!r}")
    if data[:2] == b"\xff\xd8":
        # libjpeg-turbo directly (same decoder as Pillow's, bit-identical output, ~7x less overhead per
        # small image); anything it cannot take (e.g. CMYK) goes to Pillow below
        img = _decode_jpeg_turbo(data, mode, name, upsampling == "block", limit)
        if img is not None:
            return img
    try:
        with Image.open(io.BytesIO(data)) as im:  # lazy: reads the header, decodes nothing yet
            check_pixels(im.size[1], im.size[0], name, limit)
            im.load()
            return from_pil(im, mode)
    except Image.DecompressionBombError:
        raise PatchcryptError(f"{name}: image declares more pixels than Pillow allows; refused") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PatchcryptError(f"{name}: not a readable image ({_reason(exc)})") from None


def _decode_jpeg_turbo(data: bytes, mode: Optional[str], name: str, fast_upsample: bool,
                       limit: Optional[int] = None) -> Optional[np.ndarray]:
    import simplejpeg

    try:
        h, w, colour, sub = simplejpeg.decode_jpeg_header(data)
    except ValueError as exc:
        raise PatchcryptError(f"{name}: not a readable image ({_reason(exc)})") from None
    check_pixels(h, w, name, limit)  # before libjpeg allocates the declared frame
    if colour not in ("Gray", "YCbCr", "RGB"):  # CMYK and the like: Pillow converts them
        if fast_upsample:
            raise PatchcryptError(f"{name}: JPEG colour space {colour} cannot be decoded block-wise")
        return None
    if mode is None:
        mode = "L" if colour == "Gray" else "RGB"
    try:
        arr = simplejpeg.decode_jpeg(data, colorspace="GRAY" if mode == "L" else "RGB", fastdct=False,
                                     fastupsample=fast_upsample, strict=True)
    except (ValueError, OSError) as exc:
        raise PatchcryptError(f"{name}: not a readable image ({_reason(exc)})") from None
    if fast_upsample and sub == "420" and mode == "RGB" and arr.shape[0] % 16 == 0 and arr.shape[1] % 16 == 0:
        arr = _interpolate_chroma_in_macroblocks(arr)
    return np.ascontiguousarray(arr if arr.ndim == 3 else arr[:, :, None])


# JFIF (full-range) colour conversion, as libjpeg does it; Cb and Cr are centred on 0 here (offset 128)
RGB2YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
YCC2RGB = np.array([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]])


def _triangle_upsample(c: np.ndarray, axis: int) -> np.ndarray:
    """Double ``axis`` (8 samples of one macroblock) with weights 3/4 and 1/4, edge samples repeated."""
    n = c.shape[axis]
    prev = np.concatenate([np.take(c, [0], axis), np.take(c, range(n - 1), axis)], axis)
    nxt = np.concatenate([np.take(c, range(1, n), axis), np.take(c, [n - 1], axis)], axis)
    out = np.stack([0.75 * c + 0.25 * prev, 0.75 * c + 0.25 * nxt], axis + 1)
    shape = list(c.shape)
    shape[axis] *= 2
    return out.reshape(shape)


def _interpolate_chroma_in_macroblocks(rgb: np.ndarray) -> np.ndarray:
    """Replace replicated 4:2:0 chroma (2×2 equal samples) by triangular interpolation inside each 16×16 MCU.

    The chroma samples are read back from the RGB pixels (mean of each 2×2 cell, which removes most of the
    RGB rounding) and luma per pixel, so this needs no access to libjpeg's internal YCbCr planes.
    """
    h, w, _ = rgb.shape
    ycc = rgb.astype(np.float32) @ RGB2YCC.T.astype(np.float32)
    chroma = ycc[..., 1:].reshape(h // 2, 2, w // 2, 2, 2).mean((1, 3))
    tiles = chroma.reshape(h // 16, 8, w // 16, 8, 2)
    ycc[..., 1:] = _triangle_upsample(_triangle_upsample(tiles, 1), 3).reshape(h, w, 2)
    return np.clip(np.rint(ycc @ YCC2RGB.T.astype(np.float32)), 0, 255).astype(np.uint8)


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "unknown image format"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def read_image(path: PathLike, mode: Optional[str] = None, upsampling: str = "fancy",
               limit: Optional[int] = None) -> np.ndarray:
    """Read an image file to uint8 (H, W, C) (C = 3, or 1 for grayscale files unless ``mode="RGB"``);
    ``upsampling`` as in :func:`decode_image`; ``limit``: most pixels its header may declare (default
    :func:`max_pixels`)."""
    data = read_image_file(path, limit)
    return decode_image(data, mode, name=str(path), upsampling=upsampling, limit=limit)


def read_image_file(path: PathLike, limit: Optional[int] = None) -> bytes:
    """The encoded bytes of an image file, undecoded: a regular file (or a link to one) of at most
    :func:`patchcrypt.bounded.image_file_max` bytes for ``limit`` pixels (default :func:`max_pixels`), checked
    before a byte is read, opened so that a FIFO cannot hang (``/dev/zero`` or a FIFO is one error line)."""
    return read_bounded(path, image_file_max(max_pixels() if limit is None else limit), "image")


def image_bytes(img: np.ndarray, fmt: str = "png", quality: int = 90,
                subsampling: Union[str, int] = "420") -> bytes:
    """Encode to PNG (lossless) or JPEG bytes."""
    fmt = fmt.lower().lstrip(".")
    if fmt in ("jpg", "jpeg"):
        return encode_jpeg(img, quality, subsampling)
    if fmt != "png":
        raise PatchcryptError(f"output format must be png or jpeg, got {fmt!r}")
    return encode_png(img)


def encode_png(img: np.ndarray, level: int = 1) -> bytes:
    """Lossless 8-bit PNG (RGB or grayscale), no filtering, zlib ``level``: fast for many small images."""
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] not in (1, 3):
        raise PatchcryptError(f"PNG needs uint8 (H, W, 3) or (H, W, 1), got {img.dtype} {img.shape}")
    h, w, c = img.shape
    # compressed a band of rows at a time, CRC updated as it goes: a 40 MP image costs its compressed size
    # twice (parts, then the file), not five copies of its raw rows
    comp = zlib.compressobj(level)
    parts = []
    rows = max(1, (1 << 20) // (1 + w * c))
    for a in range(0, h, rows):
        band = np.empty((min(rows, h - a), 1 + w * c), dtype=np.uint8)
        band[:, 0] = 0  # filter type "none" on every row
        band[:, 1:] = img[a:a + rows].reshape(-1, w * c)
        parts.append(comp.compress(band))
    parts.append(comp.flush())
    crc = zlib.crc32(b"IDAT")
    for part in parts:
        crc = zlib.crc32(part, crc)

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = struct.pack(">IIBBBBB", w, h, 8, 2 if c == 3 else 0, 0, 0, 0)
    idat_len = struct.pack(">I", sum(len(p) for p in parts))
    return b"".join([b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", header), idat_len, b"IDAT", *parts,
                     struct.pack(">I", crc), chunk(b"IEND", b"")])


def resize_image(img: np.ndarray, size: Tuple[int, int], method: str = "bicubic") -> np.ndarray:
    """Resize a uint8 (H, W, C) image to ``size`` = (H, W) (``method`` "bicubic" or "nearest"); the image
    itself when already that size."""
    if img.shape[:2] == tuple(size):
        return img
    resample = {"bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[method]
    im = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
    out = np.asarray(im.resize((size[1], size[0]), resample))
    return out[:, :, None] if out.ndim == 2 else out


def as_display(img: np.ndarray, shape: Optional[tuple] = None) -> np.ndarray:
    """An encrypted uint8 (H, W, C) image as RGB for a figure: a grayscale composite (``etc-gray``) repeated
    to three channels, and resized (nearest, so blocks stay sharp) to ``shape[:2]`` when given."""
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return img if shape is None else resize_image(img, tuple(shape[:2]), "nearest")


def write_image(path: PathLike, img: np.ndarray, quality: int = 90, subsampling: Union[str, int] = "420") -> int:
    """Write an image, format from the suffix (.png or .jpg/.jpeg), atomically. Returns the file size."""
    path = Path(path)
    data = image_bytes(img, path.suffix or "png", quality, subsampling)
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise PatchcryptError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return len(data)


def jpeg_roundtrip(images: np.ndarray, quality: int = 90, subsampling: Union[str, int] = "420",
                   upsampling: str = "fancy") -> np.ndarray:
    """Encode every image as JPEG and decode it again: (N, H, W, C) or (H, W, C) uint8 → same shape.

    >>> flat = np.full((2, 16, 16, 3), 128, np.uint8)
    >>> out = jpeg_roundtrip(flat, quality=90)
    >>> out.shape, out.dtype, int(np.abs(out.astype(int) - 128).max()) <= 1
    ((2, 16, 16, 3), dtype('uint8'), True)
    """
    images = np.asarray(images)
    if images.ndim == 3:
        return jpeg_roundtrip(images[None], quality, subsampling, upsampling)[0]
    if images.ndim != 4:
        raise PatchcryptError(f"expected (N, H, W, C) images, got shape {images.shape}")
    out = np.empty_like(images)
    mode = "L" if images.shape[3] == 1 else "RGB"
    for i, img in enumerate(images):
        out[i] = decode_image(encode_jpeg(img, quality, subsampling), mode, upsampling=upsampling)
    return out


def bits_per_pixel(nbytes: int, height: int, width: int) -> float:
    """File size in bits per image pixel.

    >>> bits_per_pixel(1024, 32, 32)
    8.0
    """
    return 8.0 * nbytes / (height * width)
