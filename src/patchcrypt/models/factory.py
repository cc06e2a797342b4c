"""Model factory: ``create_model(name, **kw)`` builds a registered model, optionally from local weights.

The names live in :mod:`patchcrypt.models.registry`; weights are read by
:func:`patchcrypt.models.pretrained.load_weights` (nothing is downloaded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.nn as nn

from .pretrained import load_weights
from .registry import model_entrypoint

__all__ = ["create_model"]


def create_model(name: str, *, seed: Optional[int] = None, pretrained: Union[str, Path, None] = None,
                 **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``; ``kwargs`` override its defaults (num_classes, img_size, ...).

    Args:
        seed: if given, initialise the weights deterministically from it (the global torch RNG state is
            saved and restored, so callers' RNG streams are untouched).
        pretrained: optional local weights, loaded with :func:`~patchcrypt.models.pretrained.load_weights`:
            a timm-layout ``.pth`` / ``.bin`` / ``.safetensors`` state dict, or a patchcrypt checkpoint or
            run folder; shapes are adapted (position embedding, patch kernel, head of another class count).

    >>> create_model("vit_pico_patch4_32", seed=0, num_classes=3)(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 3])
    """
    fn = model_entrypoint(name)
    if seed is None:
        model = fn(**kwargs)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = fn(**kwargs)
    if pretrained is not None:
        load_weights(model, pretrained)
    return model
