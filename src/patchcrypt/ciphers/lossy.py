"""Lossy files (JPEG) and the schemes whose decryption they break.

A scheme whose steps keep blocks whole (EtC and its subsets, ``etc-gray``; :attr:`SchemeSpec.survives_lossy`)
is made to be stored as JPEG. Any other scheme's JPEG files decrypt to a ruined image, so ``patchcrypt
encrypt --format jpeg`` refuses them unless ``--allow-lossy`` is given, and says how ruined with the figures
in :data:`LOSSY_PSNR`.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from ..errors import PatchcryptError
from .registry import get_scheme

LOSSY_FORMATS = ("jpeg", "jpg")
MEASURED_QUALITY = 90
# Mean PSNR (dB) against the original of 6 scikit-image photos at 224x224: (decrypted after JPEG, plain JPEG),
# at quality 90, M=16 for 4:2:0 and 4:2:2, M=8 for 4:4:4, for every registered scheme that does not survive
# lossy files. Printed by: .venv/bin/python benchmarks/lossy_formats.py
LOSSY_PSNR: Dict[Tuple[str, str], Tuple[float, float]] = {
    ("block-pixel", "420"): (12.7, 35.0), ("block-pixel", "422"): (14.3, 35.9), ("block-pixel", "444"): (30.0, 37.4),
    ("block-pixel-cs", "420"): (12.8, 35.0), ("block-pixel-cs", "422"): (14.4, 35.9),
    ("block-pixel-cs", "444"): (30.1, 37.4),
    ("le", "420"): (9.5, 35.0), ("le", "422"): (9.8, 35.9), ("le", "444"): (10.6, 37.4),
    ("ele", "420"): (9.5, 35.0), ("ele", "422"): (9.8, 35.9), ("ele", "444"): (10.9, 37.4),
    ("pe", "420"): (12.9, 35.0), ("pe", "422"): (14.5, 35.9), ("pe", "444"): (30.0, 37.4),
    ("step-bf", "420"): (13.1, 35.0), ("step-bf", "422"): (14.7, 35.9), ("step-bf", "444"): (30.1, 37.4),
    ("step-ps", "420"): (18.5, 35.0), ("step-ps", "422"): (20.0, 35.9), ("step-ps", "444"): (30.4, 37.4),
    ("step-ps-perblock", "420"): (18.6, 35.0), ("step-ps-perblock", "422"): (20.0, 35.9),
    ("step-ps-perblock", "444"): (30.4, 37.4),
    # AprilPyone & Kiya's transformations (ciphers/published.py): benchmarks/lossy_formats.py --scheme ak-...
    ("ak-shuffle", "420"): (18.5, 35.0), ("ak-shuffle", "422"): (20.0, 35.9), ("ak-shuffle", "444"): (30.4, 37.4),
    ("ak-flip", "420"): (13.0, 35.0), ("ak-flip", "422"): (14.7, 35.9), ("ak-flip", "444"): (30.0, 37.4),
    ("ak-ffx", "420"): (10.1, 35.0), ("ak-ffx", "422"): (10.2, 35.9), ("ak-ffx", "444"): (10.6, 37.4),
}


def block_size_measured(subsampling: str) -> int:
    """The block size :data:`LOSSY_PSNR` was measured at for ``subsampling`` (blocks aligned with the MCUs)."""
    return 8 if subsampling == "444" else 16


def decrypt_psnr_after_jpeg(scheme: str, images: Sequence[np.ndarray], key, block_size: int,
                            quality: int = MEASURED_QUALITY, subsampling: str = "420") -> Tuple[float, float]:
    """(mean PSNR of ``images`` encrypted, stored as JPEG, decoded as ``patchcrypt decrypt`` does and decrypted;
    mean PSNR of the same images stored as plain JPEG), in dB. ``images``: uint8 (H, W, C) each."""
    from ..codec import decode_image, encode_jpeg
    from ..metrics import psnr
    from ..record import EncryptionRecord
    from .registry import create_cipher

    cipher = create_cipher(scheme, None if scheme == "plain" else key, block_size=block_size)
    upsampling = EncryptionRecord(scheme=scheme, block_size=block_size,
                                  recorded_subsampling=subsampling).jpeg_upsampling
    dec, plain = [], []
    for img in images:
        enc = cipher.encrypt(img)
        mode = "L" if enc.shape[2] == 1 else "RGB"
        back = cipher.decrypt(decode_image(encode_jpeg(enc, quality, subsampling), mode, upsampling=upsampling))
        dec.append(min(psnr(img, back), 100.0))
        own = "L" if img.shape[2] == 1 else "RGB"
        plain.append(min(psnr(img, decode_image(encode_jpeg(img, quality, subsampling), own)), 100.0))
    return float(np.mean(dec)), float(np.mean(plain))


def check_lossy_format(scheme: str, block_size: Optional[int], file_format: str, subsampling: Optional[str] = None,
                       allow_lossy: bool = False) -> None:
    """Refuse to store ``scheme``'s ciphertexts in a lossy ``file_format`` when that breaks their decryption
    (unless ``allow_lossy``): one-line :class:`PatchcryptError` whose hint has the measured PSNR.
    ``subsampling``: the chroma subsampling asked for (None: the block-size rule, as ``encrypt`` applies it).

    >>> check_lossy_format("etc", 16, "jpeg"); check_lossy_format("block-pixel", 16, "png")
    >>> check_lossy_format("block-pixel", 16, "jpeg", allow_lossy=True)
    """
    from ..record import subsampling_for

    spec = get_scheme(scheme)
    if allow_lossy or str(file_format).lower() not in LOSSY_FORMATS or spec.survives_lossy:
        return
    subsampling = subsampling or subsampling_for(block_size)
    measured = LOSSY_PSNR.get((scheme, subsampling))
    if measured:
        how = (f"its JPEG files decrypt to {measured[0]:.1f} dB PSNR, plain JPEG to {measured[1]:.1f} dB (measured "
               f"on 6 photos, Q={MEASURED_QUALITY} {':'.join(subsampling)}, M={block_size_measured(subsampling)}, by "
               "benchmarks/lossy_formats.py)")
    else:
        how = "its decryption is not known to survive JPEG (not measured: benchmarks/lossy_formats.py --scheme)"
    raise PatchcryptError(f"scheme {scheme!r} changes pixels inside blocks, which JPEG does not survive: {how}; use "
                          "--format png, a scheme made for JPEG (etc, etc-gray), or --allow-lossy")
