"""Learned attacks with a per-block generator: GAN (Sirichotedumrong et al. 2019) and ITN (Ito et al. 2021).

The generator sees one M×M block at a time, as the encryption does: a conv with kernel = stride = M maps a
block to features, 1×1 convs transform them, and a pixel shuffle writes an M×M block back. GAN: trained
unpaired, plain images against images encrypted under one shared key (the attacker has both kinds but no
pairs), with a small discriminator. ITN: trained on pairs, every training image under a different key, with
MSE; evaluated on images under keys it never saw. Both use :func:`patchcrypt.runtime.train_epoch`.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.layers import BlockAdaptation
from ..runtime import resolve_device, to_nchw, train_epoch
from .base import AttackResult


class BlockGenerator(BlockAdaptation):
    """Per-block generator: (N, C, H, W) uint8-range input → (N, C_out, H', W') in 0..255; the block-wise
    network of :class:`~patchcrypt.models.layers.BlockAdaptation`, ``width_factor`` times wider."""

    def __init__(self, block_size: int, in_chans: int = 3, out_chans: int = 3, width_factor: int = 2,
                 depth: int = 2, out_block: Optional[int] = None) -> None:
        super().__init__(block_size, in_chans, depth, out_chans, width_factor * in_chans * block_size * block_size,
                         out_block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 255.0 * torch.sigmoid(self.net(x.float() / 127.5 - 1.0))


class Discriminator(nn.Module):
    def __init__(self, in_chans: int = 3, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_chans, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 4, 2, 1), nn.BatchNorm2d(4 * width), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x / 127.5 - 1.0)


def _generate(gen: nn.Module, enc: np.ndarray, device, batch: int = 256) -> np.ndarray:
    gen.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(enc), batch):
            out.append(gen(to_nchw(enc[i:i + batch]).to(device)).round().clamp(0, 255).to(torch.uint8).cpu())
    return torch.cat(out).permute(0, 2, 3, 1).numpy()


def _batches(n: int, batch: int, gen: torch.Generator):
    order = torch.randperm(n, generator=gen)
    return [order[i:i + batch] for i in range(0, n, batch)]


def itn_attack(train_plain: np.ndarray, encrypt_per_image: Callable[[np.ndarray], np.ndarray],
               test_plain: np.ndarray, test_encrypted: np.ndarray, scheme: str, block_size: int,
               epochs: int = 5, batch: int = 64, lr: float = 1e-3, device: Optional[str] = None,
               seed: int = 0, progress: Optional[bool] = None) -> AttackResult:
    """ITN: ``encrypt_per_image`` encrypts each training image under its own fresh key."""
    dev = resolve_device(device)
    t0 = time.perf_counter()
    enc_train = encrypt_per_image(train_plain)
    c_in, c_out = enc_train.shape[-1], train_plain.shape[-1]
    out_block = block_size * train_plain.shape[1] // enc_train.shape[1] if enc_train.shape[1] != train_plain.shape[1] \
        else block_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = BlockGenerator(block_size, c_in, c_out, out_block=out_block).to(dev)
    opt = torch.optim.Adam(gen.parameters(), lr=lr)
    x_enc, x_plain = to_nchw(enc_train), to_nchw(train_plain).float()
    g = torch.Generator().manual_seed(seed)
    losses = []

    def loss_fn(idx):
        pred = gen(x_enc[idx].to(dev))
        return F.mse_loss(pred / 255.0, x_plain[idx].to(dev) / 255.0), len(idx)

    for epoch in range(epochs):
        gen.train()
        losses.append(train_epoch(loss_fn, opt, _batches(len(x_enc), batch, g), desc=f"itn {epoch + 1}/{epochs}",
                                  total=len(x_enc), disable=None if progress is None else not progress)["loss"])
    rec = _generate(gen, test_encrypted, dev)
    return AttackResult("itn", scheme, test_plain, test_encrypted, rec,
                        {"losses": losses, "epochs": epochs, "n_train": len(train_plain),
                         "seconds": time.perf_counter() - t0})


def gan_attack(train_plain: np.ndarray, train_encrypted: np.ndarray, test_plain: np.ndarray,
               test_encrypted: np.ndarray, scheme: str, block_size: int, epochs: int = 5, batch: int = 64,
               lr: float = 2e-4, device: Optional[str] = None, seed: int = 0,
               progress: Optional[bool] = None) -> AttackResult:
    """GAN: ``train_plain`` and ``train_encrypted`` are different images (unpaired), one shared key."""
    dev = resolve_device(device)
    t0 = time.perf_counter()
    c_in, c_out = train_encrypted.shape[-1], train_plain.shape[-1]
    out_block = block_size * train_plain.shape[1] // train_encrypted.shape[1] \
        if train_encrypted.shape[1] != train_plain.shape[1] else block_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = BlockGenerator(block_size, c_in, c_out, out_block=out_block).to(dev)
        disc = Discriminator(c_out).to(dev)
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999))
    x_enc, x_plain = to_nchw(train_encrypted), to_nchw(train_plain).float()
    g = torch.Generator().manual_seed(seed)
    losses, d_losses, d_acc = [], [], [0.0, 0]

    def loss_fn(idx):
        real = x_plain[torch.randint(0, len(x_plain), (len(idx),), generator=g)].to(dev)
        fake = gen(x_enc[idx].to(dev))
        # discriminator step (its own optimiser), then the generator's adversarial loss
        opt_d.zero_grad(set_to_none=True)
        d_loss = F.binary_cross_entropy_with_logits(disc(real), torch.ones(len(idx), 1, device=dev)) + \
            F.binary_cross_entropy_with_logits(disc(fake.detach()), torch.zeros(len(idx), 1, device=dev))
        d_loss.backward()
        opt_d.step()
        d_acc[0] += float(d_loss.detach()) * len(idx)
        d_acc[1] += len(idx)
        g_loss = F.binary_cross_entropy_with_logits(disc(fake), torch.ones(len(idx), 1, device=dev))
        return g_loss, len(idx)

    for epoch in range(epochs):
        gen.train()
        disc.train()
        d_acc[:] = [0.0, 0]
        losses.append(train_epoch(loss_fn, opt_g, _batches(len(x_enc), batch, g), desc=f"gan {epoch + 1}/{epochs}",
                                  total=len(x_enc), disable=None if progress is None else not progress)["loss"])
        d_losses.append(d_acc[0] / max(1, d_acc[1]))
    rec = _generate(gen, test_encrypted, dev)
    return AttackResult("gan", scheme, test_plain, test_encrypted, rec,
                        {"losses": losses, "discriminator_losses": d_losses, "epochs": epochs, "n_train": len(train_plain),
                         "seconds": time.perf_counter() - t0})
