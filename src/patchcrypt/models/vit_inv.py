"""Vision Transformers invariant to per-image block transforms (DESIGN §8): ``*_inv_*`` models.

An invariant ViT has no absolute position embedding (its class-token output does not depend on the order of
the patch tokens, so it is invariant to block scrambling) and a patch embedding invariant to the in-block
group of EtC's steps (:mod:`.invariant`). Its prediction on an image encrypted with per-image keys under any
variant it is declared for (:attr:`InvariantViT.invariant_schemes`) equals its prediction on the plain image,
to float tolerance: there is no key for the model to hold.

Args beyond :class:`~.vit.VisionTransformer`'s:
    invariance: "bs" (block order only), "bs-rf" (+ the 8 dihedral states), "bs-rf-np" (+ the 2
        polarities) or "etc" (+ the 6 colour orders: all of EtC's per-block states, 96).
    inv_embed: "canonical" (canonicalise each block, then embed linearly) or "pool" (pool the embedding
        over the orbit after a GELU).
    inv_pool, inv_set_depth: nested invariances only: how the sub-block embeddings of a patch are pooled
        ("mean", "attn", or "set": ``inv_set_depth`` position-free transformer blocks over the sub-blocks of
        each patch, with the ViT's head count and MLP ratio, then attention pooling); see
        :class:`~.invariant.NestedEmbed`.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Set, Tuple

import torch
import torch.nn as nn

from ..ciphers import INVARIANT_VARIANTS, NESTED_VARIANTS
from ..errors import PatchcryptError
from .invariant import NESTED_GROUPS, BlockGroup, CanonicalEmbed, NestedEmbed, OrbitPoolEmbed, group_steps
from .layers import CIFAR10_MEAN, CIFAR10_STD, HALF, check_image_input
from .registry import build, list_models, model_entrypoint, register_model
from .vit import VisionTransformer

__all__ = ["InvariantViT", "invariant_schemes", "per_image_warning"]


def invariant_schemes(invariance: str) -> Tuple[str, ...]:
    """The per-image scheme variants a model with this invariance is exactly invariant to."""
    steps = set(group_steps(invariance))
    return tuple(v for v, s in {**INVARIANT_VARIANTS, **NESTED_VARIANTS}.items() if set(s) <= steps)


class InvariantViT(VisionTransformer):
    """ViT without position embedding, with a block-group-invariant patch embedding; 0..255 input.

    ``patch_embed`` is a :class:`~.invariant.CanonicalEmbed` or :class:`~.invariant.OrbitPoolEmbed` mapping
    (N, C, H, W) → (N, n, D); the rest (class token, blocks, norm, head) is the plain ViT's.
    """

    # not "isotropic" in the keyed-model sense (models/keyed.py): no linear patch embedding a key could be
    # folded into, and no key to fold; the keyed transformations and the weights attack refuse it
    is_isotropic = False

    def __init__(self, img_size: int = 32, patch_size: int = 4, in_chans: int = 3, num_classes: int = 10,
                 embed_dim: int = 192, depth: int = 12, num_heads: int = 3, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, embed: str = "shared", mean: Sequence[float] = CIFAR10_MEAN,
                 std: Sequence[float] = CIFAR10_STD, invariance: str = "etc", inv_embed: str = "canonical",
                 pool_hidden: int = 0, sub_block: int = 4, inv_pool: str = "mean", inv_set_depth: int = 1) -> None:
        steps = group_steps(invariance)
        if inv_embed not in ("canonical", "pool"):
            raise PatchcryptError(f"inv_embed must be 'canonical' or 'pool', got {inv_embed!r}")
        if embed != "shared":
            raise PatchcryptError("an invariant ViT has one patch embedding for every position (embed='shared')")
        super().__init__(img_size, patch_size, in_chans, num_classes, embed_dim, depth, num_heads, mlp_ratio,
                         qkv_bias, drop_rate, attn_drop_rate, drop_path_rate, embed, mean, std)
        self.invariance, self.inv_embed = invariance, inv_embed
        del self.pos_embed                      # no absolute position: invariance to block order
        self.sub_block = sub_block if invariance in NESTED_GROUPS else self.patch_size
        if invariance in NESTED_GROUPS:
            group = BlockGroup(tuple(s for s in steps if s != "SBS"), sub_block, self.in_chans)
            self.patch_embed = _nested(group, self, inv_embed, pool_hidden, dict(
                pool=inv_pool, set_depth=inv_set_depth, set_heads=num_heads, set_mlp_ratio=mlp_ratio))
        elif inv_embed == "canonical":
            group = BlockGroup(steps, self.patch_size, self.in_chans)
            self.patch_embed = CanonicalEmbed(group, self.embed_dim, self.input_norm.mean, self.input_norm.std)
        else:
            self.patch_embed = OrbitPoolEmbed(BlockGroup(steps, self.patch_size, self.in_chans), self.embed_dim,
                                              pool_hidden)
        for m in self.patch_embed.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self._embed_path = "patch_embed.proj"

    @property
    def invariant_schemes(self) -> Tuple[str, ...]:
        """Scheme variants whose per-image ciphertexts give exactly the plain image's prediction."""
        return invariant_schemes(self.invariance)

    @property
    def embed(self) -> str:
        return "shared"

    def to_blockwise(self):
        raise PatchcryptError("an invariant ViT cannot have one embedding per position (positions are "
                              "scrambled per image)")

    def no_weight_decay(self) -> Set[str]:
        return {"cls_token"}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in 0..255 → (N, 1 + n, D) normalised tokens (class token first, no position)."""
        check_image_input(x, self.in_chans, self.patch_size, self.img_size)
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.norm(self.blocks(self.pos_drop(x)))


def _nested(group: BlockGroup, vit: "InvariantViT", inv_embed: str, hidden: int, pooling: dict) -> NestedEmbed:
    """The sub-block embedding of a nested invariance (canonical sub-blocks pooled per patch); ``pooling``:
    :class:`NestedEmbed`'s ``pool``, ``set_depth``, ``set_heads``, ``set_mlp_ratio``."""
    if inv_embed != "canonical":
        raise PatchcryptError(f"invariance {vit.invariance!r} embeds canonical sub-blocks (inv_embed='canonical')")
    return NestedEmbed(group, vit.patch_size, vit.embed_dim, vit.input_norm.mean, vit.input_norm.std, hidden,
                       **pooling)


def per_image_warning(model_name: str, scheme: Optional[str], invariance: Optional[str] = None) -> Optional[str]:
    """One line for training with per-image keys on a model that cannot be invariant to them (or None).

    ``invariance`` overrides the registered default of an ``_inv`` model (its ``invariance`` keyword).
    """
    inv_names = ", ".join(n for n in list_models("*_inv_*"))
    if getattr(model_entrypoint(model_name), "invariance", None) is None:
        return (f"{model_name} cannot be invariant to per-image keys (every image its own block order "
                f"and states): it will not learn a consistent feature; invariant models: {inv_names}")
    invariance = invariance or model_entrypoint(model_name).invariance
    allowed = invariant_schemes(invariance)
    if scheme is not None and scheme not in allowed:
        return (f"{model_name} (invariance={invariance!r}) is not invariant to per-image {scheme!r}: "
                f"it is exact for {', '.join(allowed)}")
    return None


_CIFAR = dict(img_size=32, patch_size=4, num_classes=10)
_IMAGENET = dict(img_size=224, patch_size=16, num_classes=1000, mean=HALF, std=HALF)


def _inv(defaults: dict, kwargs: dict) -> InvariantViT:
    return build(InvariantViT, {"invariance": "etc", "inv_embed": "canonical", **defaults}, kwargs)


def _declare(fn, invariance: str = "etc"):
    fn.invariance = invariance  # the default invariance; a caller may pass another (see per_image_warning)
    return register_model(fn)


def _declare_nested(fn):
    return _declare(fn, "etc-nested")


@_declare
def vit_pico_inv_patch4_32(**kw: Any) -> InvariantViT:
    """vit_pico_patch4_32 (D=64, depth 4, 2 heads, MLP 2×) made invariant; default: all of EtC's states."""
    return _inv(dict(_CIFAR, embed_dim=64, depth=4, num_heads=2, mlp_ratio=2.0), kw)


@_declare
def vit_nano_inv_patch4_32(**kw: Any) -> InvariantViT:
    """vit_nano_patch4_32 (D=128, depth 6, 4 heads, MLP 2×) made invariant."""
    return _inv(dict(_CIFAR, embed_dim=128, depth=6, num_heads=4, mlp_ratio=2.0), kw)


@_declare
def vit_tiny_inv_patch16_224(**kw: Any) -> InvariantViT:
    """ViT-Tiny at 224×224 with 16×16 patches (M = 16), made invariant."""
    return _inv(dict(_IMAGENET, embed_dim=192, depth=12, num_heads=3), kw)


# -- nested invariance (etc-nested: patch order at M, EtC on m x m sub-blocks inside every patch) -------------
def _nested_inv(defaults: dict, kwargs: dict) -> InvariantViT:
    return build(InvariantViT, {"invariance": "etc-nested", "inv_embed": "canonical", "sub_block": 4, **defaults},
                 kwargs)


@_declare_nested
def vit_pico_inv_nested_patch8_32(**kw: Any) -> InvariantViT:
    """ViT-pico (D=64, depth 4) at 32×32 with 8×8 patches (M = 8), invariant to etc-nested with m = 4 (or
    ``sub_block=2``): 16 patch tokens, each pooled from its canonical sub-blocks."""
    return _nested_inv(dict(_CIFAR, patch_size=8, embed_dim=64, depth=4, num_heads=2, mlp_ratio=2.0), kw)


@_declare_nested
def vit_pico_inv_nested_patch16_128(**kw: Any) -> InvariantViT:
    """ViT-pico at 128×128 with 16×16 patches (M = 16, m = 4), invariant to etc-nested (flowers5-128)."""
    return _nested_inv(dict(_CIFAR, img_size=128, patch_size=16, num_classes=5, embed_dim=64, depth=4,
                            num_heads=2, mlp_ratio=2.0), kw)


@_declare_nested
def vit_tiny_inv_nested_patch16_224(**kw: Any) -> InvariantViT:
    """ViT-Tiny at 224×224 with 16×16 patches (M = 16, m = 4), invariant to etc-nested."""
    return _nested_inv(dict(_IMAGENET, embed_dim=192, depth=12, num_heads=3), kw)
