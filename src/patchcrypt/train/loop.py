""":func:`train`: set up a run, then epochs of :func:`train_step`, test, checkpoint.

Read top to bottom: resolve the config → load data → decide how images are encrypted → build the model →
epochs → evaluate → checkpoint. :func:`train_step` is one optimisation step in one place: augment, encrypt,
forward, loss, backward, clip, step, metrics. Every epoch's randomness (batch order, crops, flips, mixup,
dropout) derives from ``(seed, epoch)``, so ``--resume`` replays a run exactly.
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..augment import random_crop_flip
from ..data import ImageSet
from ..data.loading import TrainData, open_training_data, split_validation
from ..errors import PatchcryptError
from ..inference import predict_logits, to_tensor
from ..models import check_block_size
from ..models.vit_inv import per_image_warning
from ..record import EncryptionRecord
from ..runtime import finite_loss, progress, resolve_device
from .config import TrainConfig, check_config
from .dist import Dist, setup_distributed, teardown_distributed, wrap_ddp
from .finetune import freeze_backbone
from .inputs import Pipeline, resolve_encryption, split_sets
from .model import build_model, make_optimizer, make_scheduler
from .run import check_run_folder, print_epoch, restore, save_epoch, start_run, summarize, write_summary


@dataclass
class Setup:
    """Everything :func:`train` prepares before its first epoch."""

    cfg: TrainConfig
    device: torch.device
    dist: Dist
    data: TrainData
    pipe: Pipeline
    record: EncryptionRecord
    augment: str                  # crop-flip | resized-crop | mixup | none (``auto`` resolved)
    model: nn.Module
    ddp_model: nn.Module          # ``model``, or its DDP wrapper under torchrun
    head: Optional[nn.Module]     # the trained head of a linear probe (--freeze backbone), else None
    x_test: Optional[torch.Tensor]  # the encrypted test set on the device (None when streaming)
    y_test: torch.Tensor
    x_val: Optional[torch.Tensor]   # the encrypted validation set (None: none, or streaming)
    y_val: Optional[torch.Tensor]
    ckpt_meta: Dict[str, Any]     # what every checkpoint stores beside the weights
    facts: Dict[str, Any]         # the summary's description of the run

    @property
    def per_rank_batch(self) -> int:
        return max(1, self.cfg.batch_size // self.dist.world)

    def autocast(self):
        """bf16 autocast on the run's device with ``--amp``, else nothing."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.cfg.amp else nullcontext()


def train(cfg: TrainConfig, show_progress: Optional[bool] = None,
          sets: Optional[Tuple[ImageSet, ImageSet]] = None) -> Dict[str, Any]:
    """Run the training described by ``cfg``; returns the summary (also written to summary.json).

    ``sets``: (train, test) images already in memory (e.g. decoded from a pack with
    :func:`patchcrypt.data.read_pack`) instead of reading ``cfg.data``, which then only names them in the run's
    config; ``cfg.subset``/``cfg.test_subset`` still apply.
    """
    check_config(cfg)
    device = resolve_device(cfg.device)
    dist = setup_distributed(device)
    try:
        return _train(cfg, device, dist, show_progress, sets)
    finally:
        teardown_distributed(dist)


def _train(cfg: TrainConfig, device: torch.device, dist: Dist, show_progress: Optional[bool],
           sets: Optional[Tuple[ImageSet, ImageSet]]) -> Dict[str, Any]:
    """:func:`train` once the device and the process group are set up."""
    out = Path(cfg.out)
    resume_ckpt = check_run_folder(cfg, out)
    s = set_up(cfg, device, dist, resume_ckpt, sets)
    optimizer = make_optimizer(s.model, cfg)
    steps_per_epoch = math.ceil(len(s.data.train) / dist.world / s.per_rank_batch)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    start_epoch, rows = 1, []
    if resume_ckpt is not None:
        start_epoch, _, rows = restore(resume_ckpt, s.model, optimizer, scheduler, out)
    steps_left = cfg.max_steps - (start_epoch - 1) * steps_per_epoch if cfg.max_steps else None
    if dist.main:
        start_run(cfg, out)
    # progress bar: rank 0 only, and only on a terminal unless asked for
    disable_bar = (None if dist.main else True) if show_progress is None else not show_progress

    for epoch in range(start_epoch, cfg.epochs + 1):
        # every epoch's randomness derives from (seed, epoch): resuming replays it exactly
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        batches = epoch_batches(s, gen)
        if steps_left is not None:  # --max-steps: the last epoch stops early
            batches, steps_left = batches[:max(0, steps_left)], steps_left - len(batches)
            if not batches:
                break
        row, _ = run_epoch(s, optimizer, scheduler, batches, gen, epoch, disable_bar)
        rows.append(row)
        if dist.main:
            save_epoch(out, s.model, optimizer, scheduler, rows, s.ckpt_meta)
            print_epoch(row, cfg.epochs)

    summary = summarize(rows, s.facts, cfg.epochs)
    if dist.main:
        write_summary(out, summary)
    return summary


def set_up(cfg: TrainConfig, device: torch.device, dist: Dist, resume_ckpt: Optional[Dict],
           sets: Optional[Tuple[ImageSet, ImageSet]] = None) -> Setup:
    """Data (in RAM, streamed or on the device), encryption, model (fresh, resumed or fine-tuned), the
    encrypted test set: everything before the optimiser."""
    if sets is not None:  # given in memory: subsets (and a held-out validation share) as for a folder
        train_set, val_set, val_name = split_validation(cfg, Path(cfg.data or "."), sets[0].subset(cfg.subset, cfg.seed),
                                                        in_ram=True)
        data = TrainData(train_set, sets[1].subset(cfg.test_subset, cfg.seed), False, False, 0, cfg.seed,
                         val=val_set, val_name=val_name)
    else:
        data = open_training_data(cfg, split_sets)  # in RAM or streamed, at the model's size
    train_set, test_set = data.train, data.test
    if cfg.eval_batch:
        data.eval_batch = cfg.eval_batch
    pipe, record, pre_encrypted = resolve_encryption(cfg, train_set)
    if record.per_image and dist.main:  # only an invariant model can learn from per-image keys (docs/invariant.md)
        note = per_image_warning(cfg.model, record.scheme, cfg.model_kwargs.get("invariance"))
        if note:
            warnings.warn(note)
    augment = data.choose_augment(cfg.augment, pre_encrypted)
    if cfg.data_on_device:
        if data.streaming or data.random_crop:
            raise PatchcryptError("--data-on-device needs the training images in memory at the model's size "
                                  "(not streamed, no --augment resized-crop)")
        data.device = device
    model, model_kwargs, keyed = build_model(cfg, record, pre_encrypted, train_set, resume_ckpt, dist)
    head = freeze_backbone(model) if cfg.freeze else None
    model = model.to(device)
    if cfg.channels_last:  # cuDNN's fast layout for convolutions (ConvMixer's depthwise ones)
        model = model.to(memory_format=torch.channels_last)
    check_block_size(model, record.block_size)

    # test set: encrypted once, with the same pipeline (fixed nonces for per-image keys)
    x_test = None if data.streaming else pipe(to_tensor(test_set.images).to(device))
    y_test = torch.from_numpy(test_set.labels)
    x_val = None if data.streaming or data.val is None else pipe(to_tensor(data.val.images).to(device))
    y_val = None if data.val is None else torch.from_numpy(data.val.labels)
    ckpt_meta = dict(model_name=cfg.model, model_kwargs=model_kwargs, classes=train_set.classes, record=record,
                     keyed=keyed, config=cfg.to_dict())
    facts = {"model": cfg.model, "parameters": sum(p.numel() for p in model.parameters()),
             "classes": train_set.classes, "n_train": len(train_set), "n_test": len(test_set),
             "world_size": dist.world, **record.checkpoint_fields(), "pre_encrypted": pre_encrypted,
             "img_size": data.shape[0], "streaming": data.streaming, "test_split": data.test_name,
             "validation": data.val_name, "n_val": len(data.val) if data.val is not None else 0,
             "preprocessing": data.preprocessing()}
    return Setup(cfg, device, dist, data, pipe, record, augment, model, wrap_ddp(model, dist, device), head,
                 x_test, y_test, x_val, y_val, ckpt_meta, facts)


def epoch_batches(s: Setup, gen: torch.Generator) -> List[torch.Tensor]:
    """This rank's index batches of one epoch, in a random order drawn from ``gen`` (on the device with
    ``--data-on-device``, where the images are)."""
    order = torch.randperm(len(s.data.train), generator=gen)[s.dist.rank::s.dist.world]
    if s.cfg.data_on_device:
        order = order.to(s.device)  # one copy per epoch; the batches are slices of it
    return [order[i:i + s.per_rank_batch] for i in range(0, len(order), s.per_rank_batch)]


def run_epoch(s: Setup, optimizer: torch.optim.Optimizer, scheduler, batches: List[torch.Tensor],
              gen: torch.Generator, epoch: int, disable_bar: Optional[bool]) -> Tuple[Dict[str, Any], float]:
    """Train one epoch over ``batches``, then test. Returns (the metrics row, the unrounded test accuracy)."""
    cfg = s.cfg
    if cfg.data_on_device:  # crops, flips and mixup drawn where the images are
        gen = torch.Generator(s.device).manual_seed(cfg.seed * 100_003 + epoch)
    s.pipe.encrypt_seconds = 0.0
    s.ddp_model.train()
    if s.head is not None:  # a linear probe: frozen features, so BatchNorm statistics and dropout stay as loaded
        s.model.eval()
        s.head.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout / drop-path, restored afterwards
        stats = fit_epoch(s, optimizer, scheduler, batches, gen, epoch, disable_bar)
    with s.autocast():
        test_loss, test_acc = test(s) if s.x_test is not None else test_stream(s)
        if s.data.val is not None:  # the split that chooses the checkpoint
            val_loss, val_acc = (test(s, x=s.x_val, labels=s.y_val) if s.x_val is not None
                                 else test_stream(s, s.data.val))
    row = {"epoch": epoch, "train_loss": round(stats["loss"], 5), "train_acc": round(stats["acc"], 5),
           "test_loss": round(test_loss, 5), "test_acc": round(test_acc, 5),
           "images_per_s": round(stats["items_per_s"] * s.dist.world, 1),
           "encrypt_fraction": round(s.pipe.encrypt_seconds / max(stats["seconds"], 1e-9), 5),
           "seconds": round(stats["seconds"], 2)}
    if s.data.val is not None:
        row.update(val_loss=round(val_loss, 5), val_acc=round(val_acc, 5))
    return row, test_acc


def fit_epoch(s: Setup, optimizer: torch.optim.Optimizer, scheduler, batches: List[torch.Tensor],
              gen: torch.Generator, epoch: int, disable_bar: Optional[bool]) -> Dict[str, float]:
    """One pass of :func:`train_step` over ``batches``, with a progress bar.

    The loss is read on the host every step on the CPU (a diverged loss is refused before its step is taken),
    every 32 steps on an accelerator, where each read waits for the device: the running sum stays there and a
    loss that became inf/NaN is refused at the next read (and at the end of the epoch). Correct answers are
    counted on the device and read once, at the end.

    Returns:
        ``{"loss": mean loss per image, "acc": share answered right, "items": images, "seconds": wall time,
        "items_per_s": throughput}``.
    """
    desc = f"epoch {epoch}/{s.cfg.epochs}"
    every = 1 if s.device.type == "cpu" else 32
    t0 = time.perf_counter()
    total_loss, items, correct = 0.0, 0, 0
    pending = None  # the loss summed since the last read, on the device (accelerators)
    with progress(total=sum(len(b) for b in batches), desc=desc, disable=disable_bar) as bar:
        for step, (x, y) in enumerate(s.data.train_batches(batches, epoch), 1):
            loss, right = train_step(s, optimizer, scheduler, x, y, gen, desc if every == 1 else None)
            n = len(y)
            if every == 1:
                total_loss += loss * n  # already read (and checked) on the host
            else:
                pending = loss * n if pending is None else pending + loss * n
            correct, items = correct + right, items + n
            bar.update(n)
            if pending is not None and step % every == 0:
                total_loss, pending = total_loss + finite_loss(pending, desc), None
            if step % every == 0:
                bar.set_postfix(loss=f"{total_loss / max(items, 1):.4f}", refresh=False)
        if pending is not None:
            total_loss += finite_loss(pending, desc)
    seconds = time.perf_counter() - t0
    return {"loss": total_loss / max(items, 1), "acc": int(correct) / max(1, items), "items": items,
            "seconds": seconds, "items_per_s": items / seconds if seconds > 0 else 0.0}


def train_step(s: Setup, optimizer: torch.optim.Optimizer, scheduler, x: torch.Tensor, y: torch.Tensor,
               gen: torch.Generator, read_loss: Optional[str] = None) -> Tuple[Any, torch.Tensor]:
    """One optimisation step on a plain uint8 batch ``x`` (N, C, H, W) with labels ``y`` (N,), top to bottom:
    augment, encrypt, forward, loss, backward, clip, step, metrics.

    ``read_loss``: read the loss on the host now, naming the epoch in the error if it diverged, so that a
    diverged loss is refused before its step is taken; None leaves it on the device.

    Returns:
        (the batch's mean loss: a float when read, else a detached tensor on the device; the number of
        correct answers, a tensor on the device).
    """
    cfg, model = s.cfg, s.ddp_model
    optimizer.zero_grad(set_to_none=True)
    # inputs: augment the plain images, then encrypt them on the device (and JPEG them with --jpeg-quality)
    if s.augment == "crop-flip":
        x = random_crop_flip(x, gen)
    x, y = s.pipe(x.to(s.device)), y.to(s.device)
    # forward and loss: bf16 autocast with --amp, the loss in float32
    if s.augment == "mixup":  # a convex mix of two batches, and of their losses
        lam = float(torch.distributions.Beta(1.0, 1.0).sample())
        perm = torch.randperm(len(x), generator=gen, device=gen.device).to(s.device)
        with s.autocast():
            logits = model(lam * x.float() + (1 - lam) * x[perm].float()).float()
        loss = lam * F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing) + \
            (1 - lam) * F.cross_entropy(logits, y[perm], label_smoothing=cfg.label_smoothing)
    else:
        with s.autocast():
            logits = model(x).float()
        loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
    seen = finite_loss(loss.detach(), read_loss) if read_loss is not None else loss.detach()
    # backward, clip the global gradient norm of the trained parameters, step, and the schedule's step
    loss.backward()
    if cfg.clip_grad:
        nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], cfg.clip_grad)
    optimizer.step()
    scheduler.step()
    # metrics: counted on the device, no host read per step
    with torch.no_grad():
        correct = (logits.argmax(1) == y).sum()
    return seen, correct


def test(s: Setup, logits: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None,
         x: Optional[torch.Tensor] = None) -> Tuple[float, float]:
    """(loss, accuracy) on the encrypted test set (or on ``x`` for ``labels``, or of ``logits`` for
    ``labels``); NaN for an empty one."""
    y = s.y_test if labels is None else labels
    if logits is None:
        logits = predict_logits(s.model, s.x_test if x is None else x, s.device, s.data.eval_batch,
                                desc=("test" if x is None else "validation") if s.dist.main else None)
    test_loss = float(F.cross_entropy(logits, y)) if len(y) else float("nan")
    test_acc = float((logits.argmax(1) == y).float().mean()) if len(y) else float("nan")
    return test_loss, test_acc


def test_stream(s: Setup, images=None) -> Tuple[float, float]:
    """(loss, accuracy) on a streamed test set (or ``images``), encrypted batch by batch with the run's
    pipeline."""
    logits, labels = [], []
    for x, y in s.data.test_batches(images=images):
        logits.append(predict_logits(s.model, s.pipe(x.to(s.device)), s.device))
        labels.append(y)
    if not logits:
        return float("nan"), float("nan")
    return test(s, torch.cat(logits), torch.cat(labels))
