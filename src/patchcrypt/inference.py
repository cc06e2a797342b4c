"""Inference shared by training (test accuracy each epoch), evaluation and the server: images in, scores out.

Models take uint8 images (N, C, H, W) and normalise inside (DESIGN §6), so nothing here scales or
normalises; these helpers only move the channel axis, batch, and switch the model to eval mode.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch
import torch.nn as nn

from .runtime import progress, resolve_device, to_nchw


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) numpy → uint8 (N, C, H, W) torch (contiguous)."""
    return to_nchw(images)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 500,
                   desc: Optional[str] = None) -> torch.Tensor:
    """Logits (N, K) float32 on the CPU for uint8 (N, C, H, W) images, in eval mode, ``batch_size`` at a time;
    with ``desc``, a progress bar of that name on a terminal."""
    model.eval()
    out = []
    with progress(total=len(x), desc=desc or "", disable=None if desc else True) as bar:
        for i in range(0, len(x), batch_size):
            out.append(model(x[i:i + batch_size].to(device)).float().cpu())
            bar.update(len(out[-1]))
    return torch.cat(out) if out else torch.empty(0)


def predict(model: nn.Module, images: np.ndarray, batch_size: int = 256,
            device: Union[str, torch.device, None] = None, desc: Optional[str] = None) -> np.ndarray:
    """Logits (N, K) float32 numpy for uint8 images (N, H, W, C), batched, in eval mode.

    ``device``: a torch device, a name (``"cpu"``, ``"cuda:0"``) or None for CUDA when available; the model
    is moved there.
    """
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    model = model.to(dev)
    return predict_logits(model, to_tensor(images), dev, batch_size, desc).numpy()


def predict_proba(model: nn.Module, images: np.ndarray, device: torch.device) -> np.ndarray:
    """Class probabilities (N, K) float32 numpy for uint8 images (N, H, W, C), in one forward pass.

    The model must already be on ``device`` and in eval mode (the server sets both once, not per call);
    inference mode, since the server never needs gradients.
    """
    with torch.inference_mode():
        x = to_tensor(images).to(device)
        return torch.softmax(model(x).float(), 1).cpu().numpy()
