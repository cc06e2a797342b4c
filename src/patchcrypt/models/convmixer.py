"""ConvMixer (Trockman & Kolter, "Patches Are All You Need?") with timm parameter names.

Patch embedding ``stem.0`` (conv, kernel = stride = patch), GELU, BatchNorm; then ``depth`` blocks of
a residual depthwise conv (``blocks.i.0.fn.0``) + GELU + BN, and a pointwise conv (``blocks.i.1``) + GELU + BN;
global average pooling and a linear ``head``. Images in 0..255; the model owns its ``input_norm``.
"""

from __future__ import annotations

from typing import Any, Sequence, Set

import torch
import torch.nn as nn

from .layers import (CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD, ClassifierMixin, InputNorm,
                     IsotropicMixin, check_image_input, check_patch_geometry, make_patch_embed)
from .registry import build, register_model

__all__ = ["ConvMixer"]


class Residual(nn.Module):
    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x) + x


class ConvMixer(IsotropicMixin, ClassifierMixin, nn.Module):
    """ConvMixer-``dim``/``depth`` classifier: (N, C, img_size, img_size) in 0..255 → (N, num_classes).

    Args:
        kernel_size: depthwise kernel (``padding="same"``).
        embed: "shared" (one stem conv), "blockwise" (one embedding per patch position) or "keyed" (the one
            stem conv behind a per-position key gather).
    """

    def __init__(self, dim: int = 256, depth: int = 8, kernel_size: int = 5, patch_size: int = 4,
                 img_size: int = 32, in_chans: int = 3, num_classes: int = 10, embed: str = "shared",
                 mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD) -> None:
        super().__init__()
        self.grid_size = check_patch_geometry(img_size, patch_size)
        self.num_classes, self.img_size, self.in_chans, self.patch_size = num_classes, img_size, in_chans, patch_size
        self.num_features = dim
        self.input_norm = InputNorm(mean, std, in_chans)
        self.stem = nn.Sequential(make_patch_embed(embed, in_chans, dim, patch_size, self.grid_size ** 2),
                                  nn.GELU(), nn.BatchNorm2d(dim))
        self._embed_path = "stem.0"
        self.blocks = nn.Sequential(*[nn.Sequential(
            Residual(nn.Sequential(nn.Conv2d(dim, dim, kernel_size, groups=dim, padding="same"), nn.GELU(),
                                   nn.BatchNorm2d(dim))),
            nn.Conv2d(dim, dim, kernel_size=1), nn.GELU(), nn.BatchNorm2d(dim)) for _ in range(depth)])
        self.pooling = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()

    def no_weight_decay(self) -> Set[str]:
        """Parameter names trained without weight decay besides the biases and norms (1-D): none."""
        return set()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_image_input(x, self.in_chans, self.patch_size, self.img_size)
        return self.blocks(self.stem(self.input_norm(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pooling(x).flatten(1)
        return x if pre_logits else self.head(x)


_CIFAR = dict(img_size=32, patch_size=4, num_classes=10)


@register_model
def convmixer_128_4_patch4_32(**kw: Any) -> ConvMixer:
    """CPU-sized ConvMixer-128/4, kernel 5."""
    return build(ConvMixer, dict(_CIFAR, dim=128, depth=4, kernel_size=5), kw)


@register_model
def convmixer_256_8_patch4_32(**kw: Any) -> ConvMixer:
    """ConvMixer-256/8 with kernel 5: the CIFAR-10 setting of the ConvMixer paper's small models."""
    return build(ConvMixer, dict(_CIFAR, dim=256, depth=8, kernel_size=5), kw)


@register_model
def convmixer_768_32_patch16_224(**kw: Any) -> ConvMixer:
    """ConvMixer-768/32 with 16×16 patches (the seed's 224×224 setting; timm's convmixer_768_32 uses p=7)."""
    return build(ConvMixer, dict(img_size=224, patch_size=16, num_classes=1000, dim=768, depth=32, kernel_size=7,
                                 mean=IMAGENET_MEAN, std=IMAGENET_STD), kw)
