"""Load pretrained weights from a local file: a timm-layout state dict or a patchcrypt checkpoint.

One loader, :func:`load_weights`, used by ``create_model(..., pretrained=...)``, ``train --pretrained`` and
``keyed-model`` (a raw state dict).

Sources: ``.pth`` / ``.bin`` / ``.safetensors`` state dicts (with the usual wrappers ``{"model": ...}``,
``{"state_dict": ...}`` and ``module.`` prefixes), or a patchcrypt checkpoint / run folder. Shapes are
adapted where that keeps the weights' meaning: the position embedding is resized to the model's grid
(bicubic, class token kept), the patch kernel is resampled when the patch size differs, and the head is
replaced by the model's fresh one when the class count differs. Anything else that does not fit is one
line naming the first tensor. Nothing is downloaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import PatchcryptError
from .checkpoint import load_checkpoint
from .layers import conv_to_matrix, resample_patch_kernel

__all__ = ["PretrainedInfo", "load_weights", "read_weights", "read_state_dict", "adapt_state_dict"]

_EMBED_WEIGHTS = ("patch_embed.proj.weight", "stem.0.weight")   # ViT, ConvMixer (timm names)
_HEAD = ("head.weight", "head.bias")


@dataclass
class PretrainedInfo:
    """What :func:`load_weights` did: the source, and the adaptations made (one line each)."""

    source: str
    checkpoint: Optional[Dict[str, Any]] = None   # the patchcrypt checkpoint's metadata (no weights)
    notes: List[str] = field(default_factory=list)
    head_replaced: bool = False


def read_state_dict(path) -> Dict[str, torch.Tensor]:
    """The tensors of a ``.pth`` / ``.bin`` / ``.safetensors`` state dict (wrappers and ``module.`` removed)."""
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
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "Weights only load failed" in first:  # torch's long notice; say what it means instead
            first = "not a torch file, or it holds objects other than tensors (read with weights_only=True)"
        raise PatchcryptError(f"{path}: not a readable state dict ({first[:120]})") from None
    for wrapper in ("model", "state_dict", "model_state"):
        if isinstance(sd, dict) and wrapper in sd and isinstance(sd[wrapper], dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise PatchcryptError(f"{path}: not a state dict of tensors")
    return {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}


def read_weights(path) -> Tuple[Dict[str, torch.Tensor], Optional[Dict[str, Any]]]:
    """State dict and, for a patchcrypt checkpoint or run folder, the checkpoint's metadata (else None)."""
    path = Path(path)
    if not path.exists():
        raise PatchcryptError(f"{path}: no such weights file or run folder")
    if path.is_dir() or path.suffix not in (".pth", ".bin", ".safetensors"):
        ckpt = load_checkpoint(path)
        meta = {k: v for k, v in ckpt.items() if k not in ("state_dict", "extra")}
        return dict(ckpt["state_dict"]), meta
    return read_state_dict(path), None


def _resize_pos_embed(pe: torch.Tensor, grid_size: int) -> torch.Tensor:
    prefix = pe.shape[1] - int(math.isqrt(pe.shape[1] - 1)) ** 2
    grid = int(math.isqrt(pe.shape[1] - prefix))
    cls, patches = pe[:, :prefix], pe[:, prefix:]
    patches = patches.reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches.float(), size=(grid_size, grid_size), mode="bicubic",
                            align_corners=False).permute(0, 2, 3, 1).reshape(1, grid_size ** 2, -1)
    return torch.cat([cls[:, :1], patches.to(pe.dtype)], dim=1)


def adapt_state_dict(model: nn.Module, sd: Dict[str, torch.Tensor], source: str = "weights",
                     new_task: Optional[str] = None) -> Tuple[Dict[str, torch.Tensor], PretrainedInfo]:
    """Fit ``sd`` to ``model``: resample the patch kernel, resize the position embedding, drop a head of
    another class count (or any head when ``new_task`` says why), take the model's own normalisation where
    the file has none.

    Raises :class:`PatchcryptError` naming the first tensor whose name or shape does not fit.
    """
    info = PretrainedInfo(source)
    own = model.state_dict()
    sd = dict(sd)
    patch = getattr(model, "patch_size", None)
    for name in _EMBED_WEIGHTS:
        w = sd.get(name)
        if name in own and w is not None and w.ndim == 4 and patch and w.shape[-1] != patch:
            sd[name] = resample_patch_kernel(w, patch)
            info.notes.append(f"patch kernel resampled from {w.shape[-1]}x{w.shape[-1]} to {patch}x{patch}")
    pe = sd.get("pos_embed")
    if pe is not None and "pos_embed" in own and pe.shape != own["pos_embed"].shape and pe.ndim == 3 \
            and pe.shape[-1] == own["pos_embed"].shape[-1]:
        sd["pos_embed"] = _resize_pos_embed(pe, model.grid_size)
        info.notes.append(f"position embedding resized from {pe.shape[1] - 1} to {model.grid_size ** 2} patches")
    if "head.weight" in sd and "head.weight" in own and sd["head.weight"].shape != own["head.weight"].shape \
            and sd["head.weight"].shape[1:] == own["head.weight"].shape[1:]:
        info.notes.append(f"head replaced: {sd['head.weight'].shape[0]} → {own['head.weight'].shape[0]} classes "
                          "(a fresh, trained-from-scratch head)")
        info.head_replaced = True
        for k in _HEAD:
            sd.pop(k, None)
    elif new_task and "head.weight" in sd and "head.weight" in own:
        info.notes.append(f"head replaced: {new_task} (a fresh, trained-from-scratch head)")
        info.head_replaced = True
        for k in _HEAD:
            sd.pop(k, None)
    for prefix in ("patch_embed.proj.", "stem.0."):  # a shared embedding into a position-wise one: copy it
        w, b = sd.get(prefix + "weight"), sd.get(prefix + "bias")
        if w is not None and w.ndim == 4 and own.get(prefix + "weight") is not None \
                and own[prefix + "weight"].ndim == 3:
            n = own[prefix + "weight"].shape[0]
            sd[prefix + "weight"] = conv_to_matrix(w).expand(n, -1, -1).clone()
            sd[prefix + "bias"] = (b if b is not None else w.new_zeros(w.shape[0])).expand(n, -1).clone()
            info.notes.append(f"shared patch embedding copied to {n} position-wise embeddings")
    for name in ("input_norm.mean", "input_norm.std"):
        if name in own:
            sd.setdefault(name, own[name])
    for k, v in sd.items():  # the first tensor that does not fit, in the file's order
        if k not in own:
            raise PatchcryptError(f"{source}: tensor {k!r} is not in {type(model).__name__} "
                                  f"({_misfit_hint(own, sd)})")
        if v.shape != own[k].shape:
            raise PatchcryptError(f"{source}: tensor {k!r} has shape {tuple(v.shape)}, the model needs "
                                  f"{tuple(own[k].shape)} (different width or depth?)")
    missing = [k for k in own if k not in sd and not (info.head_replaced and k in _HEAD)]
    if missing:
        raise PatchcryptError(f"{source}: no tensor {missing[0]!r} for {type(model).__name__} "
                              f"({len(missing)} missing; different depth?)")
    return sd, info


def _misfit_hint(own: Dict[str, torch.Tensor], sd: Dict[str, torch.Tensor]) -> str:
    """Why a file's tensor has no place in the model: for a ViT, say when the file is no ViT at all."""
    if "pos_embed" in own and "patch_embed.proj.weight" in own \
            and ("pos_embed" not in sd or "patch_embed.proj.weight" not in sd):
        return "not a timm Vision Transformer state dict: no pos_embed / patch_embed"
    return "another architecture?"


def load_weights(model: nn.Module, path, classes: Optional[List[str]] = None) -> PretrainedInfo:
    """Load a timm-layout state dict or a patchcrypt checkpoint from ``path`` into ``model``, adapting shapes.

    ``classes``: the new task's class names; a patchcrypt checkpoint made for other classes gets a fresh head
    even when the count is the same (its head would map the new images to the old classes' names).
    Returns what was done (:class:`PretrainedInfo`); the model is changed in place.
    """
    sd, meta = read_weights(path)
    new_task = None
    if meta is not None and classes is not None and list(meta.get("classes") or []) != list(classes):
        old = list(meta.get("classes") or [])
        new_task = (f"pretrained on {', '.join(old[:3])}{', ...' if len(old) > 3 else ''}, "
                    f"fine-tuned on {', '.join(classes[:3])}{', ...' if len(classes) > 3 else ''}")
    sd, info = adapt_state_dict(model, sd, str(path), new_task)
    info.checkpoint = meta
    with torch.no_grad():
        model.load_state_dict(sd, strict=False)
    return info
