"""The model of a run (fresh, resumed or prepared for fine-tuning), its optimiser and its schedule."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn

from ..data import ImageSet
from ..data.loading import declared_size
from ..errors import PatchcryptError
from ..models import check_block_size, create_model
from ..models.checkpoint import KWARG_BOUNDS
from ..models.registry import model_entrypoint
from ..record import EncryptionRecord
from .config import TrainConfig
from .dist import Dist
from .finetune import prepare_finetune


def build_model(cfg: TrainConfig, record: EncryptionRecord, pre_encrypted: bool, train_set: ImageSet,
                resume_ckpt: Optional[Dict], dist: Dist) -> Tuple[nn.Module, Dict[str, Any], Optional[Dict]]:
    """The model (on the CPU) for the data, fresh, resumed or prepared for fine-tuning.

    Returns (model, the keyword arguments that rebuild it, the ``keyed`` checkpoint record or None).
    """
    h, w, c = train_set.shape
    most = KWARG_BOUNDS["num_classes"][1]
    if len(train_set.classes) > most:  # one output per class: refused before a head of that size is allocated
        raise PatchcryptError(f"{cfg.data}: {len(train_set.classes):,} classes, more than the {most:,} a model may "
                              "have")
    if h != w:
        raise PatchcryptError(f"images are {h}x{w}; the models take square images (use --resize when encrypting)")
    model_kwargs = {"num_classes": len(train_set.classes), "img_size": h, "in_chans": c, **cfg.model_kwargs}
    named = declared_size(cfg.model)
    if named and named != model_kwargs["img_size"] and dist.main and resume_ckpt is None:
        print(f"{cfg.model} built at {model_kwargs['img_size']}x{model_kwargs['img_size']} (its name says {named}x"
              f"{named}): the images are that size", flush=True)
    if getattr(model_entrypoint(cfg.model), "block_size_from_data", False):
        model_kwargs.setdefault("block_size", record.block_size or 4)
    if resume_ckpt is not None:  # the architecture as saved (fine-tuning may have changed embedding/normalisation)
        model_kwargs = dict(resume_ckpt["model_kwargs"])
        return create_model(cfg.model, seed=cfg.seed, **model_kwargs), model_kwargs, resume_ckpt.get("keyed")
    # a position-wise embedding for fine-tuning: built shared and untied after loading, so the fresh head
    # (and every other random draw) is the same as in the shared-embedding run with the same seed
    untie = bool(cfg.pretrained) and model_kwargs.get("embed") == "blockwise"
    model = create_model(cfg.model, seed=cfg.seed, **dict(model_kwargs, **({"embed": "shared"} if untie else {})))
    if not cfg.pretrained:
        return model, model_kwargs, None
    check_block_size(model, record.block_size)
    notes, keyed = prepare_finetune(model, cfg, record, pre_encrypted, train_set.classes)
    if untie and model.embed == "shared":
        model.to_blockwise()
        notes.append("patch embedding untied: one copy per position")
    if getattr(model, "is_isotropic", False):
        model_kwargs.update(mean=tuple(model.input_norm.mean.tolist()),
                            std=tuple(model.input_norm.std.tolist()), embed=model.embed)
    if dist.main:
        for line in [f"fine-tuning {cfg.pretrained} (--init {cfg.init}"
                     + (", backbone frozen)" if cfg.freeze else ")")] + notes:
            print(line, flush=True)
    return model, model_kwargs, keyed


def weight_decay_groups(model: nn.Module, weight_decay: float) -> list:
    """AdamW parameter groups: ``weight_decay`` on weight matrices and kernels; none on 1-D parameters
    (biases, norms) nor on those the model names in ``no_weight_decay()`` (timm's convention: ViT's position
    embedding and class token). Frozen parameters are left out."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over :func:`weight_decay_groups`; ``cfg.fused`` picks the fused kernel. (Gradient clipping,
    ``cfg.clip_grad``, is a line of :func:`patchcrypt.train.loop.train_step`, between backward and step.)"""
    return torch.optim.AdamW(weight_decay_groups(model, cfg.weight_decay), lr=cfg.lr,
                             **({"fused": True} if getattr(cfg, "fused", False) else {}))


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``cfg.warmup_epochs``, then cosine decay to 0 at the last step; stepped per batch."""
    total_steps, warmup = cfg.epochs * steps_per_epoch, int(cfg.warmup_epochs * steps_per_epoch)
    if getattr(cfg, "max_steps", None) and cfg.max_steps < total_steps:  # the schedule ends where the run does
        total_steps = cfg.max_steps
        warmup = min(warmup, total_steps // 10)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
