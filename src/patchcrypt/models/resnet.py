"""Baselines the seed compares against: a CIFAR ResNet-18, and the same behind a block-wise adaptation
network (Tanaka 2018; Madono et al. 2020).

ResNet-18 (He et al.) in its CIFAR form: 3×3 stem, no max-pool, BasicBlocks [2, 2, 2, 2] at 64–512 channels.
The adaptation network sees one M×M block at a time: a conv with kernel = stride = M maps each block to
M·M·C features, 1×1 convs (BN, ReLU) mix them within the block, and a pixel shuffle puts the M·M·C features
back as an M×M block, so it can learn to undo any per-block pixel permutation before the ResNet.
"""

from __future__ import annotations

from typing import Any, Sequence, Set

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import PatchcryptError
from .layers import CIFAR10_MEAN, CIFAR10_STD, BlockAdaptation, ClassifierMixin, InputNorm, check_image_input
from .registry import build, register_model

__all__ = ["ResNetCifar", "BlockAdaptation"]


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNetCifar(ClassifierMixin, nn.Module):
    """ResNet-18 for 32×32 images in 0..255, optionally behind a :class:`BlockAdaptation` (``block_size``)."""

    is_isotropic = False
    head_attr = "fc"  # the torchvision / CIFAR ResNet name, kept for state dicts

    def __init__(self, num_classes: int = 10, img_size: int = 32, in_chans: int = 3, width: int = 64,
                 layers: Sequence[int] = (2, 2, 2, 2), block_size: int = 0,
                 mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD) -> None:
        super().__init__()
        if block_size and img_size % block_size:
            raise PatchcryptError(f"img_size {img_size} is not a multiple of the block size {block_size}")
        self.num_classes, self.img_size, self.in_chans = num_classes, img_size, in_chans
        self.block_size = block_size or None
        self.patch_size = self.block_size  # the adaptation network's block; None for the plain ResNet
        self.input_norm = InputNorm(mean, std, in_chans)
        self.adaptation = BlockAdaptation(block_size, in_chans) if block_size else None
        self.conv1 = nn.Conv2d(in_chans, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        chans, stages, cin = [width * 2 ** i for i in range(len(layers))], [], width
        for i, (cout, n) in enumerate(zip(chans, layers)):
            blocks = [BasicBlock(cin, cout, 1 if i == 0 else 2)] + [BasicBlock(cout, cout) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.num_features = cin
        self.fc = nn.Linear(cin, num_classes)

    def no_weight_decay(self) -> Set[str]:
        """Parameter names trained without weight decay besides the biases and norms (1-D): none."""
        return set()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_image_input(x, self.in_chans, self.block_size)
        x = self.input_norm(x)
        if self.adaptation is not None:
            x = self.adaptation(x)
        x = F.relu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(N, num_features, h, w) feature maps → (N, num_classes) logits (or the pooled (N, num_features))."""
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return x if pre_logits else self.fc(x)


@register_model
def resnet18_cifar(**kw: Any) -> ResNetCifar:
    """CIFAR ResNet-18 (11.2 M parameters)."""
    if kw.get("block_size"):
        raise PatchcryptError("resnet18_cifar has no adaptation network; use resnet18_cifar_adapt")
    return build(ResNetCifar, dict(block_size=0), kw)


@register_model
def resnet18_cifar_adapt(**kw: Any) -> ResNetCifar:
    """CIFAR ResNet-18 behind a block-wise adaptation network (``block_size``, default 4)."""
    return build(ResNetCifar, dict(block_size=4), kw)


# the adaptation network's block must be the cipher's: the trainer passes the data's block size
resnet18_cifar_adapt.block_size_from_data = True  # type: ignore[attr-defined]
