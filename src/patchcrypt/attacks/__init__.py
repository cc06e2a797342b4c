"""Attack suite (DESIGN §8): ciphertext-only (FR, jigsaw, GAN, ITN) and known-plaintext (KPA).

``run_attack(name, ...)`` prepares what the attacker sees for a scheme and key and runs it;
``create_attack(name)`` returns that runner bound to one attack; ``list_attacks()`` names them.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Dict, List, Optional

import numpy as np

from ..ciphers import create_cipher, get_scheme
from ..errors import PatchcryptError
from ..keys import Key
from ..metrics import batch_quality
from .base import AttackResult, require
from .fr import fr_attack
from .jigsaw import jigsaw_attack
from .kpa import kpa_attack
from .learned import gan_attack, itn_attack

ATTACKS: Dict[str, str] = {
    "fr": "ciphertext only: fold values so negative-positive flips cancel (Chang et al. 2020)",
    "jigsaw": "ciphertext only: reassemble scrambled blocks in every allowed state (Chuman et al.)",
    "gan": "unpaired plain and encrypted images, one key: per-block generator vs discriminator",
    "itn": "pairs under a different key each: per-block generator with MSE, tested on unseen keys",
    "kpa": "known plaintext: recover the key map from k pairs, decrypt the rest",
}


def list_attacks() -> List[str]:
    return list(ATTACKS)


def run_attack(name: str, scheme: str, block_size: int, test_images: np.ndarray,
               train_images: Optional[np.ndarray] = None, key: Optional[Key] = None, per_image: bool = False,
               pairs: int = 1, epochs: int = 5, device: Optional[str] = None, seed: int = 0,
               progress: Optional[bool] = None) -> AttackResult:
    """Encrypt ``test_images`` (N, H, W, C) with (scheme, key) and attack them.

    ``train_images`` are the attacker's own images: plain/encrypted training data for GAN/ITN, the known
    pairs for KPA (the first ``pairs`` of them). A fresh key is drawn when ``key`` is None.
    """
    if name not in ATTACKS:
        raise PatchcryptError(f"unknown attack {name!r}; valid: {', '.join(ATTACKS)}")
    get_scheme(scheme)
    key = key or Key.generate()
    h, w = test_images.shape[1:3]
    cipher = create_cipher(scheme, key, block_size=block_size, per_image=per_image)
    unit = 1 if get_scheme(scheme).pixel_based else block_size
    if h % unit or w % unit:
        raise PatchcryptError(f"image size {h}x{w} is not a multiple of the block size {block_size}")

    def encrypt(images: np.ndarray) -> np.ndarray:
        return cipher.encrypt(images, cipher.new_nonces(len(images)) if per_image else None)

    if name == "fr":
        return fr_attack(test_images, encrypt(test_images), scheme)
    if name == "jigsaw":
        require(not get_scheme(scheme).unit == "nibble", "jigsaw", scheme, "values are split into 4-bit halves "
                "and permuted inside each block, so block edges carry no match")
        require(not per_image, "jigsaw", scheme, "scoring needs one block order (per-image keys: one per image)")
        steps = {s.symbol for s in get_scheme(scheme).steps}
        require("BS" in steps, "jigsaw", scheme, "there are no scrambled blocks to reassemble")
        enc = encrypt(test_images)
        if scheme != "etc-gray":
            source = block_source(cipher, test_images.shape[1:], block_size)
            return jigsaw_attack(test_images, enc, scheme, block_size, source)
        # etc-gray: the puzzle is the grayscale Y|Cb|Cr composite; the solution is converted back to RGB
        plain_comp = cipher.to_composite(test_images, False)
        res = jigsaw_attack(plain_comp, enc, scheme, block_size, block_source(cipher, enc.shape[1:], block_size))
        res.extra["composite_ssim_mean"] = float(batch_quality(plain_comp, res.reconstructed)["ssim_mean"])
        return type(res)("jigsaw", scheme, test_images, enc, cipher.from_composite(res.reconstructed, False),
                         res.extra)
    if train_images is None or len(train_images) == 0:
        raise PatchcryptError(f"attack {name!r} needs the attacker's own images (training data)")
    if name == "kpa":
        require(not per_image, "kpa", scheme, "with per-image keys no two images share key material")
        require(scheme != "plain", "kpa", scheme, "there is no key to recover")
        if pairs < 1 or pairs > len(train_images):
            raise PatchcryptError(f"--pairs must be between 1 and {len(train_images)}, got {pairs}")
        known = train_images[:pairs]
        return kpa_attack(known, encrypt(known), test_images, encrypt(test_images), scheme, block_size)
    if name in ("gan", "itn"):
        require(scheme != "etc-gray", name, scheme, "the ciphertext is a grayscale Y|Cb|Cr composite of another "
                "shape, and the per-block generator maps each encrypted block to the plain block in its place")
    if name == "gan":
        half = len(train_images) // 2
        require(half >= 1, "gan", scheme, "needs at least two training images")
        return gan_attack(train_images[:half], encrypt(train_images[half:]), test_images, encrypt(test_images),
                          scheme, block_size, epochs=epochs, device=device, seed=seed, progress=progress)
    # itn: every training image under its own key; test images under keys never seen
    per_key = create_cipher(scheme, Key.generate(), block_size=block_size, per_image=True)
    return itn_attack(train_images, lambda a: per_key.encrypt(a, per_key.new_nonces(len(a))), test_images,
                      encrypt(test_images) if per_image else per_key.encrypt(
                          test_images, per_key.new_nonces(len(test_images))),
                      scheme, block_size, epochs=epochs, device=device, seed=seed, progress=progress)


def block_source(cipher, shape, block_size: int) -> np.ndarray:
    """For scoring: ``source[k]`` = the plain block that encrypted block k holds, read off the compiled map.

    ``shape`` is the (H, W, C) the keyed steps act on (for etc-gray, its grayscale composite).
    """
    from ..blocks import block_layout, locate_in_blocks
    from ..ciphers.base import Cipher

    h, w, c = (int(v) for v in shape)
    layout = block_layout(h, w, c, block_size)
    block_of, _ = locate_in_blocks(layout)
    return block_of[Cipher.program(cipher, (h, w, c)).map.g[layout[:, 0]]]


def create_attack(name: str, **defaults) -> Callable[..., AttackResult]:
    """The runner for one attack, with default options bound (see :func:`run_attack`)."""
    if name not in ATTACKS:
        raise PatchcryptError(f"unknown attack {name!r}; valid: {', '.join(ATTACKS)}")
    return partial(run_attack, name, **defaults)


def reconstruction_grid(result: AttackResult, path, count: int = 6) -> None:
    """PNG grid, one row per image: plain | encrypted | reconstructed."""
    from ..codec import write_image
    from .base import as_display

    rows = []
    for p, e, r in list(zip(result.plain, result.encrypted, result.reconstructed))[:count]:
        shape = p.shape
        gap = np.full((shape[0], 2, 3), 255, np.uint8)
        rows.append(np.concatenate([p, gap, as_display(e, shape), gap, r], axis=1))
        rows.append(np.full((2, rows[-1].shape[1], 3), 255, np.uint8))
    grid = np.concatenate(rows[:-1], axis=0)
    scale = 96 // result.plain.shape[1] if result.plain.shape[1] < 96 else 1  # small images: enlarge
    if scale > 1:
        grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    write_image(path, grid)


__all__ = ["run_attack", "create_attack", "list_attacks", "AttackResult", "ATTACKS", "reconstruction_grid"]
