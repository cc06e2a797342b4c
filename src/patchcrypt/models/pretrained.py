"""Load a timm-layout Vision Transformer state dict from a local ``.pth`` / ``.bin`` / ``.safetensors`` file.

Handles the usual wrappers (``{"model": ...}``, ``{"state_dict": ...}``, ``module.`` prefixes), resizes the
position embedding to the model's grid (bicubic, class token kept), resamples the patch kernel when the
patch size differs, and replaces the head when the class count differs. Nothing is downloaded.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import PatchcryptError
from .layers import resample_patch_kernel


def read_state_dict(path) -> Dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise PatchcryptError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise PatchcryptError(f"{path}: not a readable state dict ({str(exc).splitlines()[0][:120]})") from None
    for wrapper in ("model", "state_dict", "model_state"):
        if isinstance(sd, dict) and wrapper in sd and isinstance(sd[wrapper], dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise PatchcryptError(f"{path}: not a state dict of tensors")
    return {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}


def load_pretrained(model: nn.Module, path) -> nn.Module:
    """Load timm ViT weights from ``path`` into ``model`` (a :class:`VisionTransformer`), adapting shapes."""
    sd = read_state_dict(path)
    if "pos_embed" not in sd or "patch_embed.proj.weight" not in sd or not hasattr(model, "pos_embed"):
        raise PatchcryptError(f"{path}: not a timm Vision Transformer state dict (no pos_embed / patch_embed)")
    own = model.state_dict()
    w = sd["patch_embed.proj.weight"]
    if w.shape[-1] != model.patch_size:
        sd["patch_embed.proj.weight"] = resample_patch_kernel(w, model.patch_size)
    pe = sd["pos_embed"]
    if pe.shape != own["pos_embed"].shape:
        prefix = pe.shape[1] - int(math.isqrt(pe.shape[1] - 1)) ** 2
        grid = int(math.isqrt(pe.shape[1] - prefix))
        cls, patches = pe[:, :prefix], pe[:, prefix:]
        patches = patches.reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
        patches = F.interpolate(patches.float(), size=(model.grid_size, model.grid_size), mode="bicubic",
                                align_corners=False).permute(0, 2, 3, 1).reshape(1, model.grid_size ** 2, -1)
        sd["pos_embed"] = torch.cat([cls[:, :1], patches.to(pe.dtype)], dim=1)
    if "head.weight" in sd and sd["head.weight"].shape != own["head.weight"].shape:
        del sd["head.weight"], sd["head.bias"]  # new task: keep the model's fresh head
    for name in ("input_norm.mean", "input_norm.std"):
        sd.setdefault(name, own[name])
    unexpected = sorted(k for k in sd if k not in own)
    if unexpected:
        raise PatchcryptError(f"{path}: weights not in {type(model).__name__}: {', '.join(unexpected[:5])}"
                              + (" ..." if len(unexpected) > 5 else ""))
    for k, v in sd.items():
        if v.shape != own[k].shape:
            raise PatchcryptError(f"{path}: {k} has shape {tuple(v.shape)}, the model needs {tuple(own[k].shape)} "
                                  "(different width or depth?)")
    missing = model.load_state_dict(sd, strict=False).missing_keys
    missing = [k for k in missing if not k.startswith("head.")]
    if missing:
        raise PatchcryptError(f"{path}: weights missing for {', '.join(missing[:5])}")
    return model
