"""The accuracy part of a card: one small model trained on plain images and on the design's ciphertexts.

Both runs see the same images, labels, order, seed and schedule; only the input (plain or encrypted) and
the model's embedding differ, as the design is meant to be used:

* one key for every image: the ViT with a position-wise patch embedding (``embed="blockwise"``: every
  block position its own linear map, so per-block keys are learnable too), trained from its seeded start;
* a key per image: the invariant ViT (:mod:`patchcrypt.models.invariant`: no absolute position embedding,
  patch embedding invariant to EtC's per-block states), the only way such ciphertexts are learnable.

The figure is the accuracy *cost* (plain − scheme) of this recipe, not the best accuracy of either: the
card states the recipe (model, images, epochs) beside it.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..models import create_model
from ..runtime import resolve_device, to_nchw, train_epoch
from .presets import Preset


def recipe(model: str, per_image: bool, block_size: int, scheme: str = "") -> Dict[str, Any]:
    """Which model each run uses and why (what the card says). A nested scheme (``etc-nested``,
    ``patch-shuffle-mix``) trains the invariant ViT with that scheme's nested invariance."""
    from ..models.invariant import NESTED_GROUPS

    if per_image:
        inv = model.replace("_patch", "_inv_patch", 1) if "_inv_" not in model else model
        if scheme in NESTED_GROUPS:
            return {"plain_model": model, "scheme_model": inv, "scheme_kwargs": {"invariance": scheme},
                    "how": f"per-image keys: the nested invariant ViT (invariance {scheme!r}: no absolute "
                           "position; canonical sub-blocks pooled per patch by their mean)"}
        return {"plain_model": model, "scheme_model": inv, "scheme_kwargs": {},
                "how": "per-image keys: the invariant ViT (no absolute position embedding; patch embedding "
                       "invariant to the per-block rotation/flip, negative-positive and colour order)"}
    return {"plain_model": model, "scheme_model": model, "scheme_kwargs": {"embed": "blockwise"},
            "how": "one key for every image: the ViT with position-wise patch embeddings (a linear map per "
                   "block position), trained from a seeded start"}


def _fit(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, preset: Preset, device: torch.device,
         desc: str) -> None:
    """``preset.epochs`` of AdamW with a cosine schedule, batches in a seeded order (no augmentation)."""
    model.to(device).train()
    steps = preset.epochs * ((len(x) + preset.batch_size - 1) // preset.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=preset.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=preset.lr, total_steps=max(1, steps), pct_start=0.15)
    xt, yt = to_nchw(x), torch.as_tensor(y, dtype=torch.long)
    rng = np.random.default_rng(preset.seed)

    def loss_fn(idx):
        xb, yb = xt[idx].to(device), yt[idx].to(device)
        return F.cross_entropy(model(xb), yb, label_smoothing=0.1), len(idx)

    for epoch in range(preset.epochs):
        order = torch.as_tensor(rng.permutation(len(x)))
        batches = [order[i:i + preset.batch_size] for i in range(0, len(x), preset.batch_size)]
        train_epoch(loss_fn, opt, batches, desc=f"{desc} {epoch + 1}/{preset.epochs}", total=len(x),
                    scheduler=sched, disable=True)


def _accuracy(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, device: torch.device) -> float:
    return float((classifier(model, device)(x) == y).mean())


def measure_accuracy(encrypt: Callable[[np.ndarray], np.ndarray], per_image: bool, block_size: int,
                     train: tuple, test: tuple, preset: Preset, model: str = "vit_pico_patch4_32",
                     device: Optional[str] = None, scheme: str = "") -> Dict[str, Any]:
    """``{"plain", "scheme", "cost", "model", "how", "train_images", "test_images", "epochs", "seconds",
    "reference"}``; ``reference`` is the plain model, the reference classifier of the recognisability
    figure (:func:`classifier`). ``train``/``test`` are (uint8 images (N, H, W, C), int labels)."""
    t0 = time.perf_counter()
    dev = resolve_device(device)
    (xtr, ytr), (xte, yte) = train, test
    size, k = int(xtr.shape[1]), int(max(ytr.max(), yte.max()) + 1)
    r = recipe(model, per_image, block_size, scheme)
    # pixel-based designs (M = 1) keep the model's own patch size: a key per pixel fits any patch
    common = dict(num_classes=k, img_size=size, **({"patch_size": block_size} if block_size > 1 else {}))
    plain = create_model(r["plain_model"], seed=preset.seed, **common)
    _fit(plain, xtr, ytr, preset, dev, "plain")
    acc_plain = _accuracy(plain, xte, yte, dev)
    enc = create_model(r["scheme_model"], seed=preset.seed, **common, **r["scheme_kwargs"])
    _fit(enc, encrypt(xtr), ytr, preset, dev, "scheme")
    acc_enc = _accuracy(enc, encrypt(xte), yte, dev)

    return {"plain": round(acc_plain, 4), "scheme": round(acc_enc, 4), "cost": round(acc_plain - acc_enc, 4),
            "model": r["scheme_model"], "plain_model": r["plain_model"], "how": r["how"],
            "train_images": int(len(xtr)), "test_images": int(len(xte)), "epochs": preset.epochs,
            "seconds": round(time.perf_counter() - t0, 1), "reference": plain.cpu()}


def classifier(model: torch.nn.Module, device=None) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 images (N, H, W, C) -> the labels ``model`` gives them (``device``: a name or a torch device)."""
    from ..inference import predict

    dev = device if isinstance(device, torch.device) else resolve_device(device)
    return lambda images: predict(model, images, 500, dev).argmax(1)


__all__ = ["measure_accuracy", "recipe", "classifier"]
