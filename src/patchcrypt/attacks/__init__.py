"""Attack suite (DESIGN §8): every attack registered with its threat model and the schemes it applies to.

``run_attack(name, scheme, ...)`` encrypts images with a scheme (a registered one or a user's own class,
see :mod:`patchcrypt.attacks.target`) and attacks them; ``run_all(scheme, ...)`` runs every registered
attack and says "n/a" with the reason for the others; ``create_attack(name)`` returns one runner with
defaults bound; ``list_attacks()`` names them; ``register_attack(AttackSpec(...))`` adds one
(:mod:`patchcrypt.attacks.registry`).
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Optional

import numpy as np

from ..errors import PatchcryptError
from ..metrics import batch_quality
from .base import AttackResult
from .fr import fr_attack
from .jigsaw import jigsaw_attack, why_not_jigsaw
from .kpa import kpa_attack
from .registry import (ATTACKS, THREAT_HOLDERS, AttackOptions, AttackSpec, Threat, all_of, format_headline,
                       get_attack, headline_of, list_attacks, named_runner, needs_key, needs_pixel_correspondence,
                       needs_shared_key, needs_steps, register_attack, run_all, run_attack)
from .target import Target, load_user_scheme, make_target


# -- the attacks of DESIGN §8 -------------------------------------------------------------------------------
def _fr(t: Target, test: np.ndarray, train: Optional[np.ndarray], o: AttackOptions) -> AttackResult:
    return fr_attack(test, t.encrypt(test), t.name)


def _jigsaw_applies(t: Target) -> Optional[str]:
    if t.steps is None:
        return needs_steps(t)
    if t.spec.unit == "nibble":
        return "values are split into 4-bit halves and permuted inside each block, so block edges carry no match"
    if t.per_image:
        return "scoring needs one block order (per-image keys: one per image)"
    if t.composite and not t.has_composite_view:
        return "the ciphertext is a composite of another shape and the scheme gives no to_composite/from_composite"
    return why_not_jigsaw(t.steps)


def _jigsaw(t: Target, test: np.ndarray, train: Optional[np.ndarray], o: AttackOptions) -> AttackResult:
    enc = t.encrypt(test)
    if not t.composite:
        return jigsaw_attack(test, enc, t.name, t.block_size, t.block_source(test.shape[1:]), steps=t.steps)
    # a composite (etc-gray): the puzzle is the grayscale Y|Cb|Cr image; the solution is converted back to RGB
    plain_comp = t.cipher.to_composite(test, False)
    res = jigsaw_attack(plain_comp, enc, t.name, t.block_size, t.block_source(enc.shape[1:]), steps=t.steps)
    res.extra["composite_ssim_mean"] = float(batch_quality(plain_comp, res.reconstructed)["ssim_mean"])
    return AttackResult("jigsaw", t.name, test, enc, t.cipher.from_composite(res.reconstructed, False), res.extra)


def _gan(t: Target, test: np.ndarray, train: np.ndarray, o: AttackOptions) -> AttackResult:
    from .learned import gan_attack

    half = len(train) // 2
    if half < 1:
        raise PatchcryptError(f"attack 'gan' does not apply to scheme {t.name!r}: needs at least two training images")
    return gan_attack(train[:half], t.encrypt(train[half:]), test, t.encrypt(test), t.name, t.block_size,
                      epochs=o.epochs, device=o.device, seed=o.seed, progress=o.progress)


def _itn(t: Target, test: np.ndarray, train: np.ndarray, o: AttackOptions) -> AttackResult:
    from .learned import itn_attack

    # every training image under its own key; test images under keys never seen (the target's own when
    # per-image, else fresh ones: ITN learns to invert the algorithm, not one key)
    test_enc = t.encrypt(test) if t.per_image else t.encrypt_fresh_keys(test)
    return itn_attack(train, t.encrypt_fresh_keys, test, test_enc, t.name, t.block_size, epochs=o.epochs,
                      device=o.device, seed=o.seed, progress=o.progress)


def _kpa_applies(t: Target) -> Optional[str]:
    reason = needs_shared_key(t) or needs_steps(t) or needs_key(t)
    if reason:
        return reason
    if t.composite:
        return "the colour conversion in front is lossy; not a value map"
    if not t.spec.value_map:
        from ..ciphers.base import MOVE_OR_FLIP_STEPS

        odd = sorted(t.steps - MOVE_OR_FLIP_STEPS)
        return f"step(s) {', '.join(odd)} are not moves or v -> 255 - v flips, which is all the solver models"
    return None


def _kpa(t: Target, test: np.ndarray, train: np.ndarray, o: AttackOptions) -> AttackResult:
    if o.pairs < 1 or o.pairs > len(train):
        raise PatchcryptError(f"--pairs must be between 1 and {len(train)}, got {o.pairs}")
    known = train[:o.pairs]
    return kpa_attack(known, t.encrypt(known), test, t.encrypt(test), t.name, t.block_size, spec=t.spec)


register_attack(AttackSpec(
    "fr", Threat.CIPHERTEXT_ONLY, "fold values so negative-positive flips cancel (Chang et al. 2020)", _fr))
register_attack(AttackSpec(
    "jigsaw", Threat.CIPHERTEXT_ONLY, "reassemble scrambled blocks in every allowed state (Chuman et al.)",
    _jigsaw, applies=_jigsaw_applies, headline=("ssim_mean", "nc")))
register_attack(AttackSpec(
    "gan", Threat.CIPHERTEXT_MANY, "unpaired plain images and ciphertexts under one key: per-block generator vs "
    "discriminator (Sirichotedumrong et al. 2019)", _gan, applies=needs_pixel_correspondence, needs_train=True))
register_attack(AttackSpec(
    "itn", Threat.CIPHERTEXT_ONLY, "per-block generator trained with MSE on the attacker's own pairs, each under "
    "its own key, tested on unseen keys (Ito et al. 2021)", _itn, applies=needs_pixel_correspondence,
    needs_train=True))
register_attack(AttackSpec(
    "kpa", Threat.KNOWN_PLAINTEXT, "recover the key map from k plain/encrypted pairs, decrypt the rest", _kpa,
    applies=_kpa_applies, needs_train=True, headline=("key_recovered_fraction", "ssim_mean")))

# -- attacks from their own modules ------------------------------------------------------------------------
# New attacks are registered here. A runner written against scheme names,
#     fn(scheme, block_size, test_images, train_images, key=None, per_image=False, progress=None, ...)
# is wrapped by named_runner ("module:function" is imported on first use; the options it accepts among
# pairs/epochs/device/seed are passed on). Applicability comes from the scheme's facts. Per-image keys are
# the control for attacks on shared key material: leave needs_shared_key out so the table shows them fail.
def _keyable(t: Target) -> Optional[str]:
    if t.per_image:
        return "per-image keys give every image its own transformation: no keyed model exists"
    return None if t.spec.keyable else "no keyed model absorbs this scheme (see models.keyed)"


def _cpa_applies(t: Target) -> Optional[str]:
    return needs_key(t) or ("the colour conversion in front is lossy; crafted values do not survive it"
                            if t.composite else None)


def _many_applies(t: Target) -> Optional[str]:
    from .many import method_for, supported

    reason = needs_steps(t) or needs_key(t)
    if reason:
        return reason
    if method_for(t.spec) is None:
        return ("no method for this scheme yet (per-block nibble keys, or a user scheme); it handles "
                + ", ".join(supported()))
    return None


register_attack(AttackSpec(
    "many", Threat.CIPHERTEXT_MANY, "N ciphertexts under one key + public plain images: in-block statistics and "
    "a jigsaw summed over all N recover the shared key map", named_runner("patchcrypt.attacks.many:run_many_attack"),
    applies=_many_applies, needs_train=True, registered_only=True,
    headline=("key_fraction", "key_fraction_up_to_mirror", "ssim_mean")))
register_attack(AttackSpec(
    "cpa", Threat.CHOSEN_PLAINTEXT, "crafted images whose values name their own position: one or a few "
    "encryptions reveal the whole key map", named_runner("patchcrypt.attacks.cpa:run_cpa"),
    applies=all_of(needs_steps, _cpa_applies), registered_only=True,
    headline=("key_map_fraction", "queries", "exact_decryptions")))
register_attack(AttackSpec(
    "weights", Threat.MODEL_WEIGHTS, "the keyed model and the public plain weights it was made from: match "
    "position-embedding rows and patch-embedding columns", named_runner(
        "patchcrypt.attacks.weights:run_weights_attack", with_plain=True),
    applies=_keyable, registered_only=True, headline=("key_map_fraction", "exact_decryptions")))
register_attack(AttackSpec(
    "weights-blind", Threat.MODEL_WEIGHTS, "the keyed model alone: per-position embeddings compared with one "
    "another, position embeddings arranged on the grid", named_runner(
        "patchcrypt.attacks.weights:run_weights_attack", with_plain=False),
    applies=_keyable, registered_only=True,
    headline=("inblock_fraction_up_to_global", "block_order_fraction_up_to_grid_symmetry")))


def create_attack(name: str, **defaults) -> Callable[..., AttackResult]:
    """The runner for one attack, with default options bound (see :func:`run_attack`)."""
    get_attack(name)
    return partial(run_attack, name, **defaults)


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


def reconstruction_grid(result: AttackResult, path, count: int = 6, show_plain: bool = True) -> None:
    """PNG grid, one row per image: plain | encrypted | reconstructed.

    Pass ``show_plain=False`` unless the key is a throwaway one made for the figure: a plain image beside
    its ciphertext under a real key gives that key away. The row is then encrypted | reconstructed.
    """
    from ..codec import write_image
    from ..codec import as_display

    rows = []
    for p, e, r in list(zip(result.plain, result.encrypted, result.reconstructed))[:count]:
        shape = p.shape
        gap = np.full((shape[0], 2, 3), 255, np.uint8)
        rows.append(np.concatenate(([p, gap] if show_plain else []) + [as_display(e, shape), gap, r], axis=1))
        rows.append(np.full((2, rows[-1].shape[1], 3), 255, np.uint8))
    grid = np.concatenate(rows[:-1], axis=0)
    scale = 96 // result.plain.shape[1] if result.plain.shape[1] < 96 else 1  # small images: enlarge
    if scale > 1:
        grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    write_image(path, grid)


__all__ = ["run_attack", "run_all", "create_attack", "list_attacks", "get_attack", "register_attack", "AttackSpec",
           "AttackOptions", "Threat", "THREAT_HOLDERS", "Target", "make_target", "load_user_scheme", "AttackResult",
           "ATTACKS", "named_runner", "headline_of", "format_headline", "reconstruction_grid", "block_source",
           "all_of", "needs_key", "needs_pixel_correspondence", "needs_shared_key", "needs_steps"]
