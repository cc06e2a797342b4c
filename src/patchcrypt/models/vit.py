"""Vision Transformer (Dosovitskiy et al. 2021) with timm parameter names.

Class token, learned position embedding, pre-norm blocks, GELU MLP. State-dict keys match timm's
``VisionTransformer`` (``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.{i}.norm1``,
``blocks.{i}.attn.qkv``, ``blocks.{i}.attn.proj``, ``blocks.{i}.norm2``, ``blocks.{i}.mlp.fc1``,
``blocks.{i}.mlp.fc2``, ``norm``, ``head``) plus our ``input_norm.mean`` / ``input_norm.std`` buffers, so timm
ViT state dicts load with :func:`~patchcrypt.models.pretrained.load_weights` (or ``create_model(...,
pretrained=path)``).

Default input normalisation: CIFAR-10 mean/std for the 32×32 models, 0.5/0.5 (timm's ViT default) for the
224×224 ones; override with ``mean=..., std=...``.
"""

from __future__ import annotations

from typing import Any, Sequence, Set

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import PatchcryptError
from .layers import (CIFAR10_MEAN, CIFAR10_STD, HALF, ClassifierMixin, DropPath, InputNorm, IsotropicMixin,
                     check_image_input, check_patch_geometry, make_patch_embed)
from .registry import build, register_model

__all__ = ["VisionTransformer"]


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection, via ``scaled_dot_product_attention``."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, d)))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """(N, C, H, W) → (N, n, D) tokens; ``proj`` is the shared conv, a :class:`BlockwiseEmbed` or a
    :class:`KeyedEmbed`."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int, embed: str) -> None:
        super().__init__()
        self.grid_size = check_patch_geometry(img_size, patch_size)
        self.num_patches = self.grid_size ** 2
        self.proj = make_patch_embed(embed, in_chans, embed_dim, patch_size, self.num_patches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(IsotropicMixin, ClassifierMixin, nn.Module):
    """ViT classifier taking images in 0..255 (uint8 or float), (N, C, img_size, img_size) → (N, num_classes).

    Args:
        img_size, patch_size: square images and patches; ``patch_size`` must divide ``img_size`` and equal
            the encryption block size M.
        embed: ``"shared"`` (one conv, the isotropic ViT), ``"blockwise"`` (one embedding per position) or
            ``"keyed"`` (one conv behind a per-position key gather, :class:`~patchcrypt.models.layers.KeyedEmbed`).
        mean, std: input normalisation in 0..1 units (see :class:`InputNorm`).
        drop_rate: dropout after the position embedding, in attention output and MLP, and before the head.
    """

    num_prefix_tokens = 1

    def __init__(self, img_size: int = 32, patch_size: int = 4, in_chans: int = 3, num_classes: int = 10,
                 embed_dim: int = 192, depth: int = 12, num_heads: int = 3, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, embed: str = "shared", mean: Sequence[float] = CIFAR10_MEAN,
                 std: Sequence[float] = CIFAR10_STD) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise PatchcryptError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.num_classes, self.img_size, self.in_chans, self.patch_size = num_classes, img_size, in_chans, patch_size
        self.num_features = self.embed_dim = embed_dim
        self.input_norm = InputNorm(mean, std, in_chans)
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, embed)
        self.grid_size = self.patch_embed.grid_size
        self._embed_path = "patch_embed.proj"
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.patch_embed.num_patches, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()  # also under a meta device
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate,
                                            rates[i]) for i in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        # timm's default ViT init: truncated normal(0.02) for linears and the position embedding
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias) if m.bias is not None else None

    def no_weight_decay(self) -> Set[str]:
        """Parameter names trained without weight decay besides every bias and norm (1-D), as timm's ViT."""
        return {"pos_embed", "cls_token"}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images in 0..255 → (N, 1 + n, D) normalised tokens (class token first)."""
        check_image_input(x, self.in_chans, self.patch_size, self.img_size)
        x = self.patch_embed(self.input_norm(x))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.norm(self.blocks(self.pos_drop(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(N, 1 + n, D) tokens → (N, num_classes) logits from the class token (or (N, D) if pre_logits)."""
        x = self.head_drop(x[:, 0])
        return x if pre_logits else self.head(x)


_CIFAR = dict(img_size=32, patch_size=4, num_classes=10)
_IMAGENET = dict(img_size=224, patch_size=16, num_classes=1000, mean=HALF, std=HALF)


def _vit(defaults: dict, kwargs: dict) -> VisionTransformer:
    return build(VisionTransformer, defaults, kwargs)


@register_model
def vit_pico_patch4_32(**kw: Any) -> VisionTransformer:
    """CPU-sized: D=64, depth 4, 2 heads, MLP 2×."""
    return _vit(dict(_CIFAR, embed_dim=64, depth=4, num_heads=2, mlp_ratio=2.0), kw)


@register_model
def vit_nano_patch4_32(**kw: Any) -> VisionTransformer:
    """CPU-sized: D=128, depth 6, 4 heads, MLP 2×."""
    return _vit(dict(_CIFAR, embed_dim=128, depth=6, num_heads=4, mlp_ratio=2.0), kw)


@register_model
def vit_tiny_patch4_32(**kw: Any) -> VisionTransformer:
    return _vit(dict(_CIFAR, embed_dim=192, depth=12, num_heads=3), kw)


@register_model
def vit_small_patch4_32(**kw: Any) -> VisionTransformer:
    return _vit(dict(_CIFAR, embed_dim=384, depth=12, num_heads=6), kw)


@register_model
def vit_small_depth7_patch4_32(**kw: Any) -> VisionTransformer:
    """GPU-sized for CIFAR-10: ViT-Small's width (D=384, 6 heads, MLP 4×) at depth 7 (12.5M parameters)."""
    return _vit(dict(_CIFAR, embed_dim=384, depth=7, num_heads=6), kw)


@register_model
def vit_base_patch4_32(**kw: Any) -> VisionTransformer:
    return _vit(dict(_CIFAR, embed_dim=768, depth=12, num_heads=12), kw)


@register_model
def vit_tiny_patch16_224(**kw: Any) -> VisionTransformer:
    return _vit(dict(_IMAGENET, embed_dim=192, depth=12, num_heads=3), kw)


@register_model
def vit_small_patch16_224(**kw: Any) -> VisionTransformer:
    return _vit(dict(_IMAGENET, embed_dim=384, depth=12, num_heads=6), kw)


@register_model
def vit_base_patch16_224(**kw: Any) -> VisionTransformer:
    return _vit(dict(_IMAGENET, embed_dim=768, depth=12, num_heads=12), kw)
