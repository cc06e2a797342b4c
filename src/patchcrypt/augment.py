"""Augmentation kernels on uint8 image batches (N, C, H, W), on the batch's own device.

Functional, as kornia and torchvision v2 split them: the random parameters are drawn first
(:func:`crop_flip_params`, from a ``torch.Generator`` on any device), then applied (:func:`crop_flip`) with
two gathers and no padded copy, so a batch resident on a GPU never visits the host. :func:`random_crop_flip`
does both; it is the ``crop-flip`` augmentation of :func:`patchcrypt.train.train` (a random crop with
``pad`` pixels of edge padding, then a random horizontal flip) and of ``benchmarks/gpu_accuracy.py``.

These run on plain images, **before** encryption: moved pixels cross block boundaries, so the same
operation on ciphertext is no encryption of any image under the key (see :class:`patchcrypt.transforms.Encrypt`).

    >>> import torch
    >>> x = torch.arange(2 * 3 * 8 * 8).remainder(256).to(torch.uint8).reshape(2, 3, 8, 8)
    >>> y = random_crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    >>> y.shape, y.dtype
    (torch.Size([2, 3, 8, 8]), torch.uint8)
"""

from __future__ import annotations

from typing import Tuple

import torch

__all__ = ["crop_flip_params", "crop_flip", "random_crop_flip"]


def crop_flip_params(n: int, pad: int, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random crop offsets and flips for ``n`` images, drawn on ``generator``'s device.

    Returns:
        ``(dy, dx, flip)``: int64 (N,) row and column offsets in ``[0, 2 * pad]`` into the padded image, and
        bool (N,) horizontal flips (probability 1/2). Drawn in that order, one call each.
    """
    dev = generator.device
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=dev)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=dev)
    flip = torch.rand(n, generator=generator, device=dev) < 0.5
    return dy, dx, flip


def crop_flip(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int) -> torch.Tensor:
    """Crop every image of ``x`` at ``(dy, dx)`` of its edge-padded copy, then flip those with ``flip``.

    Args:
        x: (N, C, H, W) of any dtype on any device.
        dy, dx, flip: (N,) as :func:`crop_flip_params` returns (moved to ``x``'s device if elsewhere).
        pad: the padding the offsets refer to (edge replication: clamped gather indices, no padded copy).

    Returns a new (N, C, H, W) tensor of ``x``'s dtype and device: ``out[i, :, r, c] = x[i, :, clamp(dy[i] + r -
    pad), clamp(dx[i] + c' - pad)]`` with ``c' = W - 1 - c`` where ``flip[i]``.
    """
    n, c, h, w = x.shape
    dev = x.device
    rows = (dy.to(dev)[:, None] - pad + torch.arange(h, device=dev)).clamp_(0, h - 1)     # (N, H)
    cols = (dx.to(dev)[:, None] - pad + torch.arange(w, device=dev)).clamp_(0, w - 1)     # (N, W)
    cols = torch.where(flip.to(dev)[:, None], cols.flip(1), cols)
    out = x.gather(2, rows[:, None, :, None].expand(n, c, h, w))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with ``pad`` pixels of edge padding, then a random horizontal flip (probability 1/2).

    Args:
        x: uint8 (N, C, H, W) on any device; ``generator`` on that device keeps the draws there (a CPU
            generator with a GPU batch also works: the (N,) parameters are copied over).

    Returns a new (N, C, H, W) tensor of the same dtype and device.
    """
    return crop_flip(x, *crop_flip_params(len(x), pad, generator), pad)
