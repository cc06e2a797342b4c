"""The learned attacks (GAN, ITN) in the registry; their networks live in :mod:`.learned`, imported on use
so that listing attacks does not load torch."""

from __future__ import annotations

import numpy as np

from ..errors import PatchcryptError
from .base import AttackResult
from .registry import AttackOptions, Threat, needs_pixel_correspondence, register_attack
from .target import Target


@register_attack("gan", Threat.CIPHERTEXT_MANY, "unpaired plain images and ciphertexts under one key: per-block "
                 "generator vs discriminator (Sirichotedumrong et al. 2019)", applies=needs_pixel_correspondence,
                 needs_train=True)
def run_gan(t: Target, test: np.ndarray, train: np.ndarray, o: AttackOptions) -> AttackResult:
    """Half of the attacker's images as plain examples, the other half's ciphertexts under the target's key."""
    from .learned import gan_attack

    half = len(train) // 2
    if half < 1:
        raise PatchcryptError(f"attack 'gan' does not apply to scheme {t.name!r}: needs at least two training images")
    return gan_attack(train[:half], t.encrypt(train[half:]), test, t.encrypt(test), t.name, t.block_size,
                      epochs=o.epochs, device=o.device, seed=o.seed, progress=o.progress)


@register_attack("itn", Threat.CIPHERTEXT_ONLY, "per-block generator trained with MSE on the attacker's own "
                 "pairs, each under its own key, tested on unseen keys (Ito et al. 2021)",
                 applies=needs_pixel_correspondence, needs_train=True)
def run_itn(t: Target, test: np.ndarray, train: np.ndarray, o: AttackOptions) -> AttackResult:
    """Every training image under its own key; test images under keys never seen (the target's own when
    per-image, else fresh ones: ITN learns to invert the algorithm, not one key)."""
    from .learned import itn_attack

    test_enc = t.encrypt(test) if t.per_image else t.encrypt_fresh_keys(test)
    return itn_attack(train, t.encrypt_fresh_keys, test, test_enc, t.name, t.block_size, epochs=o.epochs,
                      device=o.device, seed=o.seed, progress=o.progress)
