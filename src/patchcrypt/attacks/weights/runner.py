"""The registered ``weights`` and ``weights-blind`` attacks: the key read off a keyed model, with the public
plain weights it was made from (a) or from the keyed weights alone (b), then used to decrypt."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Dict, Optional, Tuple

import numpy as np

from ...ciphers.base import SchemeSpec
from ...errors import PatchcryptError
from ...keys import Key
from ..base import AttackResult, require
from ..keymaps import decrypt_with, grid_symmetries, map_fraction, true_key_map
from ..registry import AttackOptions, Threat, register_attack
from ..target import Target
from .arrange import grid_from_pos_embed, inblock_from_embedding
from .pieces import RecoveredBlocks, keyed_tensors, masks, recover_with_plain, relative_states
from .scoring import inblock_up_to_global, score_up_to, true_blocks

if TYPE_CHECKING:
    import torch.nn as nn


def run_weights_attack(scheme: str, block_size: int, test_images: np.ndarray,
                       train_images: Optional[np.ndarray] = None, key: Optional[Key] = None,
                       per_image: bool = False, progress: Optional[bool] = None,
                       plain_model: Optional[nn.Module] = None,
                       keyed_model: Optional[nn.Module] = None, with_plain: bool = True,
                       reference_model: Optional[nn.Module] = None,
                       model: str = "vit_pico_patch4_32", seed: int = 0, width: float = 1.0,
                       restarts: int = 8, encrypt=None) -> AttackResult:
    """Recover the key from a keyed model and decrypt ``test_images`` (N, H, W, C) encrypted under it.

    The calling convention of the attack registry's named runners; ``train_images`` and ``progress`` are
    not used (the attacker's data here are weights).

    Args:
        plain_model: the plain model the keyed one is made from (a public checkpoint); when None, a
            ``model`` is built with ``seed`` (random weights: enough for attack (a) and for the relative
            states of (b), not for what (b) reads from trained smoothness).
        keyed_model: the server's keyed model; when None it is made from ``plain_model`` with ``key``.
        with_plain: attack (a) (uses the plain weights) or (b) (keyed weights alone).
        reference_model: for (b), a plain model of the same architecture the attacker trained on public
            images (another seed, other images); its structure is the template for the arrangement.
        width, restarts: of the grid arrangement in (b).
        encrypt: how ``test_images`` reach the attacker (default: the scheme under ``key``).
    ``extra``: key_map_fraction (exact), key_map_fraction_up_to_global (best over the global symmetry the
    weights cannot fix), block_order_fraction(_up_to_grid_symmetry), seconds; the result's ``key_map`` is
    the recovered map.
    """
    from ...ciphers import create_cipher, get_scheme

    require(not per_image, "weights", scheme, "per-image keys give every image its own transformation; no "
            "keyed model exists to steal")
    spec = get_scheme(scheme)
    require(spec.keyable is not None, "weights", scheme, "no keyed model can absorb it (nibble values, a colour "
            "conversion in front, or no key; see models.keyed)")
    key = key or Key.generate()
    n_img, h, w, c = test_images.shape
    plain_model, keyed_model = _models(scheme, key, block_size, h, c, plain_model, keyed_model, model, seed)
    t0 = time.perf_counter()
    truth = true_key_map(scheme, key, block_size, (h, w, c))
    extra: Dict[str, object] = {"with_plain_weights": bool(with_plain),
                                "embedding": getattr(keyed_model, "embed", "shared")}
    if with_plain:
        if plain_model is None:
            raise PatchcryptError("attack (a) needs the plain model the keyed one was made from")
        rec, info = recover_with_plain(keyed_model, plain_model.float().eval())
        extra.update(info)
        sigma_known = True
    else:
        rec, sigma_known = _recover_blind(keyed_model, reference_model, spec, (h, w, c), block_size, width,
                                          restarts, seed, extra)
    recovered = rec.image_map((h, w, c), block_size)
    seconds = time.perf_counter() - t0
    extra.update(_scores(rec, recovered, truth, scheme, key, block_size, (h, w, c), with_plain, sigma_known))
    enc = encrypt(test_images) if encrypt is not None else create_cipher(scheme, key, block_size=block_size).encrypt(
        test_images)
    dec = decrypt_with(recovered, enc, scheme)
    extra["seconds"] = seconds
    name = "weights" if with_plain else "weights-blind"
    return AttackResult(name, scheme, test_images, enc, dec, extra, key_map=recovered)


def _models(scheme: str, key: Key, block_size: int, img_size: int, channels: int, plain_model, keyed_model,
            model: str, seed: int):
    """(plain model or None, keyed model in float32 eval mode): the keyed one made from the plain one (built
    as ``model`` with ``seed`` when not given) when none is given."""
    import copy

    from ...models import create_model
    from ...models.keyed import key_model

    if keyed_model is None:
        if plain_model is None:
            plain_model = create_model(model, seed=seed, img_size=img_size, in_chans=channels, patch_size=block_size)
        keyed_model = copy.deepcopy(plain_model)
        key_model(keyed_model, key, scheme, block_size)
    return plain_model, keyed_model.float().eval()


def _recover_blind(keyed_model: nn.Module, reference_model: Optional[nn.Module], spec: SchemeSpec, shape,
                   block_size: int, width: float, restarts: int, seed: int,
                   extra: Dict[str, object]) -> Tuple[RecoveredBlocks, bool]:
    """Attack (b): the key pieces from the keyed weights alone (and the attacker's own reference model, if
    any); returns them and whether the block order is known exactly (no position embedding to move)."""
    h, w, c = shape
    gh, gw = h // block_size, w // block_size
    wk, pos = keyed_tensors(keyed_model)
    ref_w, ref_pos = keyed_tensors(reference_model.float()) if reference_model is not None else (None, None)
    extra["reference_model"] = reference_model is not None
    if pos is not None:
        sigma = grid_from_pos_embed(pos, gh, gw, width=width, restarts=restarts, seed=seed, reference=ref_pos)
    else:
        sigma = np.arange(gh * gw)
    if wk.shape[0] > 1:
        g, s, worst = relative_states(keyed_model)
        extra["worst_column_cosine"] = worst
    else:
        g1, s1 = inblock_from_embedding(wk[0], block_size, c, seed=seed,
                                        reference=None if ref_w is None else ref_w[0])
        if not any(st.shuffles_pixels for st in spec.steps):   # no pixel shuffle: only flips to find
            g1 = np.arange(len(g1))
        g, s = np.broadcast_to(g1, (gh * gw, len(g1))), np.broadcast_to(s1, (gh * gw, len(s1)))
    return RecoveredBlocks(sigma, np.ascontiguousarray(g), masks(s)), pos is None


def _scores(rec: RecoveredBlocks, recovered, truth, scheme: str, key: Key, block_size: int, shape,
            with_plain: bool, sigma_known: bool) -> Dict[str, float]:
    """The recovery against the true map: exact, and up to the global symmetry the weights cannot fix."""
    h, w, _ = shape
    gh, gw = h // block_size, w // block_size
    true_sigma = true_blocks(truth, shape, block_size)
    out = {"key_map_fraction": map_fraction(recovered, truth),
           "block_order_fraction": float((rec.sigma == true_sigma).mean()),
           "block_order_fraction_up_to_grid_symmetry": max(
               float((hh[rec.sigma] == true_sigma).mean()) for hh in grid_symmetries(gh, gw)),
           "inblock_fraction_up_to_global": inblock_up_to_global(rec, scheme, key, block_size, shape)}
    out["key_map_fraction_up_to_global"] = (out["key_map_fraction"] if with_plain else
                                            score_up_to(rec, truth, shape, block_size, sigma_known))
    return out


def _weights_applies(t: Target) -> Optional[str]:
    if t.keyed_model is not None:
        return None
    if t.per_image:
        return "per-image keys give every image its own transformation: no keyed model exists"
    if not t.registered:
        return ("no keyed model: patchcrypt makes keyed models for registered schemes only (models.keyed); "
                "a user scheme has none to read a key from")
    return "no keyed model absorbs this scheme (see models.keyed)"


def _run_on_target(t: Target, test: np.ndarray, o: AttackOptions, with_plain: bool) -> AttackResult:
    plain, keyed = t.keyed_model(test.shape[1], test.shape[3], seed=o.seed)
    return run_weights_attack(t.name, t.block_size, test, key=t.key, plain_model=plain, keyed_model=keyed,
                              with_plain=with_plain, seed=o.seed, encrypt=t.encrypt)


@register_attack("weights", Threat.MODEL_WEIGHTS, "the keyed model and the public plain weights it was made from: "
                 "match position-embedding rows and patch-embedding columns", applies=_weights_applies,
                 headline=("key_map_fraction",))
def run_weights(t: Target, test: np.ndarray, train: Optional[np.ndarray], o: AttackOptions) -> AttackResult:
    """Attack (a) on the target's keyed model (made from a plain model of random weights, ``o.seed``)."""
    return _run_on_target(t, test, o, True)


@register_attack("weights-blind", Threat.MODEL_WEIGHTS, "the keyed model alone: per-position embeddings compared "
                 "with one another, position embeddings arranged on the grid", applies=_weights_applies,
                 headline=("inblock_fraction_up_to_global", "block_order_fraction_up_to_grid_symmetry"))
def run_weights_blind(t: Target, test: np.ndarray, train: Optional[np.ndarray], o: AttackOptions) -> AttackResult:
    """Attack (b): the keyed model's weights alone."""
    return _run_on_target(t, test, o, False)


__all__ = ["run_weights_attack", "run_weights", "run_weights_blind"]
