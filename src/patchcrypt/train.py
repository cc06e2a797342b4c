"""Training on encrypted images: ``patchcrypt train`` (one process, or DDP under ``torchrun``).

Read top to bottom: resolve the config → load data → decide how images are encrypted → build the model →
epochs of :func:`patchcrypt.runtime.train_epoch` → evaluate → checkpoint. DDP turns on only when torchrun
sets ``RANK``/``WORLD_SIZE``; every rank derives the same cipher from the same key file.

Three ways in (DESIGN §6, §7):
1. plain data + key (data owner): augmentation (random crop with padding, flip) on uint8 batches *before*
   encryption, then the batch is encrypted on the fly on its device;
2. a tree written by ``patchcrypt encrypt`` (server): no key; only augmentation valid on encrypted images
   (mixup commutes with the schemes' affine maps; none by default);
3. EtC JPEG (``--jpeg-quality Q``): encrypt → JPEG → decode per batch at train time, and once for the test set.

Fine-tuning (``--pretrained PATH``, :func:`prepare_finetune`): the pretrained weights (timm layout or a
patchcrypt run) are loaded into the model (head replaced when the class count differs, position
embedding resized), the model is re-expressed on centred inputs (x/255 − 0.5)/0.5 (the same function), and
with ``--init keyed`` transformed with the owner's key so that fine-tuning on encrypted images follows the
keyed image of plain fine-tuning (see :mod:`patchcrypt.models.keyed`). ``--init plain`` (the paper's method)
fine-tunes the plain weights directly on encrypted images. ``--freeze backbone`` trains the head only.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .ciphers import create_cipher, get_scheme
from .atomic import atomic_write
from .codec import jpeg_roundtrip
from .data import ImageSet, load_dataset
from .data.readers import has_splits
from .errors import PatchcryptError
from .inference import predict_logits, to_tensor
from .keys import Key
from .models import check_block_size, create_model, list_models, load_checkpoint, save_checkpoint
from .models.registry import model_entrypoint
from .models.vit_inv import per_image_warning
from .record import EncryptionRecord, subsampling_for
from .runtime import resolve_device, to_nchw, train_epoch
from .train_data import TrainData, declared_size, open_training_data

# fields that may change on --resume without changing the result
_RESUME_FREE = {"epochs", "device", "workers", "resume", "config", "out", "stream"}


@dataclass
class TrainConfig:
    data: str = ""
    model: str = "vit_pico_patch4_32"
    out: str = "runs/run"
    scheme: Optional[str] = None
    key: Optional[str] = None            # path of the key file (never its content)
    block_size: Optional[int] = None
    per_image: bool = False
    jpeg_quality: Optional[int] = None
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    augment: str = "auto"                # auto | crop-flip | mixup | none
    subset: Optional[int] = None
    test_subset: Optional[int] = None
    seed: int = 0
    device: Optional[str] = None
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    pretrained: Optional[str] = None     # weights to fine-tune: timm state dict or a patchcrypt run/checkpoint
    init: str = "plain"                  # plain (the paper's method) | keyed (transform with the key first)
    freeze: Optional[str] = None         # None | backbone (linear probe: the head alone is trained)
    resume: bool = False
    max_steps: Optional[int] = None      # stop after this many optimiser steps (smoke runs on big data)
    img_size: Optional[int] = None       # images resized/cropped to this on load (default: the model's size)
    stream: Optional[bool] = None        # None: stream when the decoded set exceeds the memory budget
    workers: Optional[int] = None        # DataLoader workers when streaming (default: CPUs - 1)

    @classmethod
    def from_sources(cls, yaml_path: Optional[Path], overrides: Dict[str, Any]) -> "TrainConfig":
        """YAML file values, then CLI overrides (None = not given)."""
        values: Dict[str, Any] = {}
        if yaml_path is not None:
            import yaml

            try:
                loaded = yaml.safe_load(Path(yaml_path).read_text()) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise PatchcryptError(f"{yaml_path}: cannot read the config ({str(exc).splitlines()[0]})") from None
            if not isinstance(loaded, dict):
                raise PatchcryptError(f"{yaml_path}: a config must be a mapping of option: value")
            values.update(loaded)
        values.update({k: v for k, v in overrides.items() if v is not None})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise PatchcryptError(f"unknown config option(s): {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


# -- distributed ----------------------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _launched_distributed() -> bool:
    """True when torchrun started this process as one of several (it sets ``RANK`` and ``WORLD_SIZE``)."""
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) >= 2


def is_main_process() -> bool:
    """True in a single-process run and on rank 0 under torchrun: the process that writes and prints."""
    return not _launched_distributed() or int(os.environ["RANK"]) == 0


def setup_distributed(device: torch.device) -> Dist:
    if not _launched_distributed():
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


# -- data and encryption -------------------------------------------------------------------------------------
@dataclass
class Pipeline:
    """How a uint8 batch becomes model input: optional on-the-fly encryption and JPEG."""

    cipher: Any = None
    jpeg_quality: Optional[int] = None
    subsampling: str = "444"
    per_image: bool = False
    encrypt_seconds: float = 0.0
    upsampling: str = "fancy"  # how the round trip decodes: EncryptionRecord.jpeg_upsampling, as decrypt does

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) uint8 → encrypted (and JPEG'd) batch on the same device."""
        if self.cipher is not None:
            t0 = time.perf_counter()
            nonces = self.cipher.new_nonces(len(x)) if self.per_image else None
            x = self.cipher.encrypt(x, nonces)
            self.encrypt_seconds += time.perf_counter() - t0
        if self.jpeg_quality is not None:
            arr = jpeg_roundtrip(x.permute(0, 2, 3, 1).cpu().numpy(), self.jpeg_quality, self.subsampling,
                                 self.upsampling)
            x = to_nchw(arr).to(x.device)
        return x


def augment_crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with ``pad`` pixels of edge padding and random horizontal flip, on uint8 (N, C, H, W)."""
    n, _, h, w = x.shape
    padded = F.pad(x.float(), (pad, pad, pad, pad), mode="replicate").to(torch.uint8)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)          # (N, H)
    cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)          # (N, W)
    flip = torch.rand(n, generator=gen) < 0.5
    cols = torch.where(flip[:, None].to(x.device), cols.flip(1), cols)
    idx_r = rows[:, None, :, None].expand(n, x.shape[1], h, w + 2 * pad)
    out = padded.gather(2, idx_r)
    idx_c = cols[:, None, None, :].expand(n, x.shape[1], h, w)
    return out.gather(3, idx_c)


def _split_sets(cfg: TrainConfig) -> Tuple[ImageSet, ImageSet]:
    path = Path(cfg.data)
    if not path.exists():
        raise PatchcryptError(f"{path}: no such data folder")
    if has_splits(path):
        train = load_dataset(path, "train", min_classes=2)
        test = load_dataset(path, "test", min_classes=2)
    else:  # one tree: a deterministic stratified 90/10 split
        full = load_dataset(path, min_classes=2)
        rng = np.random.default_rng(cfg.seed)
        is_test = np.zeros(len(full), dtype=bool)
        for c in np.unique(full.labels):
            idx = rng.permutation(np.flatnonzero(full.labels == c))
            is_test[idx[:max(1, len(idx) // 10)]] = True
        train, test = full.take(np.flatnonzero(~is_test)), full.take(np.flatnonzero(is_test))
    return train.subset(cfg.subset, cfg.seed), test.subset(cfg.test_subset, cfg.seed)


def resolve_encryption(cfg: TrainConfig, train: ImageSet) -> Tuple[Pipeline, EncryptionRecord, bool]:
    """Decide the encryption path; returns the pipeline, the record a checkpoint stores (which images the
    model expects) and whether the data came encrypted (the server's view) rather than encrypted here."""
    manifest = train.manifest
    if manifest is not None:  # pre-encrypted by the data owner: the server's view
        if cfg.key and cfg.init != "keyed":
            warnings.warn("the data is already encrypted (patchcrypt.json found); --key is ignored")
        if cfg.scheme and cfg.scheme != manifest["scheme"]:
            raise PatchcryptError(f"the data was encrypted with {manifest['scheme']!r}, not {cfg.scheme!r}")
        if cfg.block_size and cfg.block_size != manifest["block_size"]:
            raise PatchcryptError(f"the data was encrypted with block size {manifest['block_size']}, "
                                  f"not {cfg.block_size}")
        if cfg.augment not in ("auto", "none", "mixup"):
            raise PatchcryptError(f"augmentation {cfg.augment!r} is not valid on encrypted images "
                                  "(use mixup or none)")
        return Pipeline(), EncryptionRecord.from_manifest(manifest), True
    scheme = cfg.scheme or "plain"
    get_scheme(scheme)  # unknown scheme: clear error listing the valid ones
    if scheme == "plain":
        return Pipeline(jpeg_quality=cfg.jpeg_quality), EncryptionRecord(scheme="plain", jpeg_quality=cfg.jpeg_quality), False
    if not cfg.key:
        raise PatchcryptError(f"scheme {scheme!r} on plain data needs --key (the data owner's key file)")
    if not cfg.block_size:
        raise PatchcryptError(f"scheme {scheme!r} needs --block-size")
    key = Key.load(cfg.key)
    cipher = create_cipher(scheme, key, block_size=cfg.block_size, per_image=cfg.per_image)
    record = EncryptionRecord(scheme=scheme, block_size=cfg.block_size, key_fingerprint=key.fingerprint,
                              per_image=cfg.per_image, jpeg_quality=cfg.jpeg_quality, holder="the run encrypts with")
    return (Pipeline(cipher, cfg.jpeg_quality, record.subsampling, cfg.per_image, upsampling=record.jpeg_upsampling),
            record, False)


# -- fine-tuning ---------------------------------------------------------------------------------------------------
def _keyed_refusal(reason: str) -> PatchcryptError:
    return PatchcryptError(f"--init keyed cannot be exact here: {reason.rstrip('.')}; use --init plain to "
                           "fine-tune the plain weights directly on the encrypted images")


def prepare_finetune(model: nn.Module, cfg: TrainConfig, record: EncryptionRecord, pre_encrypted: bool = False,
                     classes: Optional[List[str]] = None) -> Tuple[List[str], Optional[Dict]]:
    """Load ``cfg.pretrained`` into ``model``, centre its input, key it for ``--init keyed`` (all in place).
    ``record`` states the images it will train on; ``pre_encrypted``: they came encrypted (no key here).

    Returns (one-line notes for the log, the ``keyed`` record for the checkpoint or None).
    """
    from .models.keyed import block_maps, centre_input, apply_key
    from .models.pretrained import load_weights

    if cfg.init == "keyed":  # refusals that need no weights first: clear before any loading
        if record.per_image:
            raise _keyed_refusal("per-image keys give every image its own transformation, which no single set "
                                 "of weights can absorb")
        if pre_encrypted and not record.is_plain and not cfg.key:
            raise _keyed_refusal("the data is already encrypted and the weights can only be transformed with the "
                                 "owner's key (pass --key, the key the tree was encrypted with)")
        if not getattr(model, "is_isotropic", False):
            raise _keyed_refusal(f"{cfg.model} has no single linear patch embedding (only ViT and ConvMixer)")
    info = load_weights(model, cfg.pretrained, classes)
    src = info.checkpoint or {}
    if cfg.init == "keyed" and (src.get("keyed") or src.get("scheme") not in (None, "plain")):
        raise _keyed_refusal(f"{cfg.pretrained} was trained on {src.get('scheme')} images or is keyed; keyed "
                             "init transforms weights trained on plain images")
    notes = list(info.notes)
    keyed = None
    if not getattr(model, "is_isotropic", False):
        return notes, None
    centre_input(model)  # same function; centred inputs make flips exact sign changes (both inits, like for like)
    if cfg.init == "keyed" and not record.is_plain:
        key = Key.load(cfg.key)
        if record.key_fingerprint:
            record.check_key(key)
        try:
            maps = block_maps(record.scheme, key, record.block_size, model.img_size, model.in_chans)
            mode = apply_key(model, maps, "auto", centred=True)
        except PatchcryptError as exc:
            raise _keyed_refusal(str(exc)) from None
        keyed = {"mode": mode, "scheme": record.scheme, "block_size": record.block_size,
                 "key_fingerprint": key.fingerprint, "centred": True, "init": "keyed"}
        notes.append(f"weights keyed for {record.scheme} ({mode} embedding)"
                     + (" — JPEG after encryption makes it a starting point, not exact" if record.jpeg_quality
                        else ""))
    return notes, keyed


def freeze_backbone(model: nn.Module) -> nn.Module:
    """Linear probe: every parameter but the head's stops training. Returns the head."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else getattr(model, "fc", None)
    if head is None:
        raise PatchcryptError(f"{type(model).__name__} has no head to train alone; --freeze backbone needs one")
    keep = {id(p) for p in head.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    return head


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on 1-D parameters (biases, norms) nor on those the model names in
    ``no_weight_decay()`` (timm's convention: ViT's position embedding and class token); frozen ones left out."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)


# -- the run ------------------------------------------------------------------------------------------------------
def _check_run_folder(cfg: TrainConfig, out: Path) -> Optional[Dict]:
    """On --resume return the last checkpoint (config must match); else refuse to overwrite a run."""
    last = out / "last.pt"
    if not cfg.resume:
        if last.exists() or (out / "metrics.csv").exists():
            raise PatchcryptError(f"{out} already holds a run; use --resume to continue it or another --out")
        return None
    if not last.exists():
        raise PatchcryptError(f"{out}: nothing to resume (no last.pt)")
    ckpt = load_checkpoint(last)
    saved = ckpt.get("config") or {}
    new = cfg.to_dict()
    diff = sorted(k for k in new if k not in _RESUME_FREE and saved.get(k) != new[k])
    if diff:
        raise PatchcryptError(f"--resume with a different config ({', '.join(diff)}); the run was made with "
                              + ", ".join(f"{k}={saved.get(k)!r}" for k in diff))
    return ckpt


def train(cfg: TrainConfig, show_progress: Optional[bool] = None) -> Dict[str, Any]:
    """Run the training described by ``cfg``; returns the summary (also written to summary.json)."""
    # -- set-up: config, processes, run folder, data, encryption, model, optimiser -----------------------------
    _check_config(cfg)
    device = resolve_device(cfg.device)
    dist = setup_distributed(device)
    out = Path(cfg.out)
    resume_ckpt = _check_run_folder(cfg, out)

    data = open_training_data(cfg, _split_sets)  # in RAM or streamed, at the model's size
    train_set, test_set = data.train, data.test
    pipe, record, pre_encrypted = resolve_encryption(cfg, train_set)
    if record.per_image and dist.main:  # only an invariant model can learn from per-image keys (docs/invariant.md)
        note = per_image_warning(cfg.model, record.scheme, cfg.model_kwargs.get("invariance"))
        if note:
            warnings.warn(note)
    augment = data.choose_augment(cfg.augment, pre_encrypted)
    model, model_kwargs, keyed = _build_model(cfg, record, pre_encrypted, train_set, resume_ckpt, dist)
    head = freeze_backbone(model) if cfg.freeze else None
    model = model.to(device)
    check_block_size(model, record.block_size)
    n_params = sum(p.numel() for p in model.parameters())

    # test set: encrypted once, with the same pipeline (fixed nonces for per-image keys)
    x_test = None if data.streaming else pipe(to_tensor(test_set.images).to(device))
    y_test = torch.from_numpy(test_set.labels)

    ddp_model = model
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(model, cfg)
    per_rank_batch = max(1, cfg.batch_size // dist.world)
    steps_per_epoch = math.ceil(len(train_set) / dist.world / per_rank_batch)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    start_epoch, best_acc, rows = 1, -1.0, []
    if resume_ckpt is not None:
        start_epoch, best_acc, rows = _restore(resume_ckpt, model, optimizer, scheduler, out)
    steps_left = cfg.max_steps - (start_epoch - 1) * steps_per_epoch if cfg.max_steps else None
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        _write_text(out / "config.yaml", _yaml(cfg.to_dict()))

    ckpt_meta = dict(model_name=cfg.model, model_kwargs=model_kwargs, classes=train_set.classes, record=record,
                     keyed=keyed,
                     config=cfg.to_dict())
    # progress bar: rank 0 only, and only on a terminal unless asked for
    disable_bar = (None if dist.main else True) if show_progress is None else not show_progress

    # -- epochs: train, test, checkpoint ----------------------------------------------------------------------
    for epoch in range(start_epoch, cfg.epochs + 1):
        # every epoch's randomness derives from (seed, epoch): resuming replays it exactly
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        order = torch.randperm(len(train_set), generator=gen)[dist.rank::dist.world]
        batches = [order[i:i + per_rank_batch] for i in range(0, len(order), per_rank_batch)]
        if steps_left is not None:  # --max-steps: the last epoch stops early
            batches, steps_left = batches[:max(0, steps_left)], steps_left - len(batches)
            if not batches:
                break
        pipe.encrypt_seconds = 0.0
        loss_fn, correct = _epoch_loss(cfg, ddp_model, pipe, augment, gen, device)
        ddp_model.train()
        if head is not None:  # a linear probe: frozen features, so BatchNorm statistics and dropout stay as loaded
            model.eval()
            head.train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout / drop-path, restored afterwards
            stats = train_epoch(loss_fn, optimizer, data.train_batches(batches, epoch),
                                desc=f"epoch {epoch}/{cfg.epochs}", total=sum(len(b) for b in batches),
                                scheduler=scheduler, disable=disable_bar)
        test_loss, test_acc = _test(model, x_test, y_test, device) if x_test is not None else \
            _test_stream(model, data, pipe, device)
        row = {"epoch": epoch, "train_loss": round(stats["loss"], 5),
               "train_acc": round(correct[0] / max(1, stats["items"]), 5), "test_loss": round(test_loss, 5),
               "test_acc": round(test_acc, 5), "images_per_s": round(stats["items_per_s"] * dist.world, 1),
               "encrypt_fraction": round(pipe.encrypt_seconds / max(stats["seconds"], 1e-9), 5),
               "seconds": round(stats["seconds"], 2)}
        rows.append(row)
        if dist.main:
            _save_epoch(out, model, optimizer, scheduler, rows, test_acc, best_acc, ckpt_meta)
            print(f"epoch {epoch}/{cfg.epochs}: loss {row['train_loss']:.4f}  train {row['train_acc']:.3f}  "
                  f"test {row['test_acc']:.3f}  {row['images_per_s']:.0f} img/s  "
                  f"encryption {100 * row['encrypt_fraction']:.2f}% of the step", flush=True)
        best_acc = max(best_acc, test_acc)

    # -- summary ----------------------------------------------------------------------------------------------
    summary = {"model": cfg.model, "parameters": n_params, "classes": train_set.classes,
               "n_train": len(train_set), "n_test": len(test_set), "world_size": dist.world,
               **record.checkpoint_fields(), "pre_encrypted": pre_encrypted,
               "img_size": data.shape[0], "streaming": data.streaming,
               "final_test_acc": rows[-1]["test_acc"] if rows else None, "best_test_acc": best_acc,
               "epochs": cfg.epochs, "train_seconds": round(sum(r["seconds"] for r in rows), 1),
               "images_per_s": round(float(np.mean([r["images_per_s"] for r in rows])), 1) if rows else None,
               "encrypt_fraction": round(float(np.mean([r["encrypt_fraction"] for r in rows])), 5) if rows else None}
    if dist.main:
        _write_text(out / "summary.json", json.dumps(summary, indent=1))
    return summary


# -- the steps of train(), in the order it calls them ------------------------------------------------------------
def _check_config(cfg: TrainConfig) -> None:
    """One-line errors for options that no run can use."""
    if cfg.model not in list_models():
        raise PatchcryptError(f"unknown model {cfg.model!r}; valid: {', '.join(list_models())}")
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
        raise PatchcryptError("--epochs, --batch-size and --lr must be positive")
    if cfg.augment not in ("auto", "crop-flip", "resized-crop", "mixup", "none"):
        raise PatchcryptError(f"--augment must be auto, crop-flip, resized-crop, mixup or none, got {cfg.augment!r}")
    if cfg.max_steps is not None and cfg.max_steps < 1:
        raise PatchcryptError(f"--max-steps must be positive, got {cfg.max_steps}")
    if cfg.init not in ("plain", "keyed"):
        raise PatchcryptError(f"--init must be plain or keyed, got {cfg.init!r}")
    if cfg.freeze not in (None, "backbone"):
        raise PatchcryptError(f"--freeze must be backbone, got {cfg.freeze!r}")
    if not cfg.pretrained and (cfg.init == "keyed" or cfg.freeze):
        raise PatchcryptError("--init keyed and --freeze backbone need --pretrained weights")


def _build_model(cfg: TrainConfig, record: EncryptionRecord, pre_encrypted: bool, train_set: ImageSet,
                 resume_ckpt: Optional[Dict], dist: Dist) -> Tuple[nn.Module, Dict[str, Any], Optional[Dict]]:
    """The model (on the CPU) for the data, fresh, resumed or prepared for fine-tuning.

    Returns (model, the keyword arguments that rebuild it, the ``keyed`` checkpoint record or None).
    """
    h, w, c = train_set.shape
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


def _restore(ckpt: Dict, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
             out: Path) -> Tuple[int, float, List[Dict]]:
    """Load ``last.pt``'s weights, optimiser and schedule; returns (first epoch to run, best accuracy, rows)."""
    model.load_state_dict(ckpt["state_dict"])
    extra = ckpt.get("extra") or {}
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    start_epoch = int(ckpt["epoch"]) + 1
    return start_epoch, float(extra.get("best_acc", -1.0)), _read_metrics(out / "metrics.csv")[:start_epoch - 1]


def _epoch_loss(cfg: TrainConfig, ddp_model: nn.Module, pipe: Pipeline, augment: str, gen: torch.Generator,
                device: torch.device):
    """The loss of one batch for :func:`~patchcrypt.runtime.train_epoch`: augment the plain uint8 images
    (N, C, H, W), encrypt them on ``device``, forward. Returns (loss_fn, a one-element list counting correct
    answers). ``loss_fn`` takes (images, labels) as :meth:`TrainData.train_batches` yields them."""
    correct = [0]

    def loss_fn(batch: Tuple[torch.Tensor, torch.Tensor]):
        x, y = batch
        if augment == "crop-flip":
            x = augment_crop_flip(x, gen)
        x = pipe(x.to(device))
        y = y.to(device)
        if augment == "mixup":
            lam = float(torch.distributions.Beta(1.0, 1.0).sample())
            perm = torch.randperm(len(x), generator=gen).to(device)
            logits = ddp_model(lam * x.float() + (1 - lam) * x[perm].float())
            loss = lam * F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing) + \
                (1 - lam) * F.cross_entropy(logits, y[perm], label_smoothing=cfg.label_smoothing)
        else:
            logits = ddp_model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        with torch.no_grad():
            correct[0] += int((logits.argmax(1) == y).sum())
        return loss, len(y)

    return loss_fn, correct


def _test(model: nn.Module, x_test: Optional[torch.Tensor], y_test: torch.Tensor, device: torch.device,
          logits: Optional[torch.Tensor] = None) -> Tuple[float, float]:
    """(loss, accuracy) on the encrypted test set (or of its ``logits``); NaN for an empty one."""
    logits = predict_logits(model, x_test, device) if logits is None else logits
    test_loss = float(F.cross_entropy(logits, y_test)) if len(y_test) else float("nan")
    test_acc = float((logits.argmax(1) == y_test).float().mean()) if len(y_test) else float("nan")
    return test_loss, test_acc


def _test_stream(model: nn.Module, data: TrainData, pipe: Pipeline, device: torch.device) -> Tuple[float, float]:
    """(loss, accuracy) on a streamed test set, encrypted batch by batch with ``pipe``."""
    logits, labels = [], []
    for x, y in data.test_batches():
        logits.append(predict_logits(model, pipe(x.to(device)), device))
        labels.append(y)
    if not logits:
        return float("nan"), float("nan")
    return _test(model, None, torch.cat(labels), device, torch.cat(logits))


def _save_epoch(out: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, rows: List[Dict],
                test_acc: float, best_acc: float, ckpt_meta: Dict[str, Any]) -> None:
    """Rank 0 after each epoch: ``last.pt`` (with optimiser and schedule, for --resume), ``best.pt`` when
    ``test_acc`` beats ``best_acc`` (the best before this epoch; both unrounded), and metrics.csv."""
    row = rows[-1]
    extra = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "best_acc": max(best_acc, test_acc)}
    save_checkpoint(out / "last.pt", model, epoch=row["epoch"], metrics=row, extra=extra, **ckpt_meta)
    if test_acc > best_acc:
        save_checkpoint(out / "best.pt", model, epoch=row["epoch"], metrics=row, **ckpt_meta)
    _write_metrics(out / "metrics.csv", rows)


# -- small file helpers ----------------------------------------------------------------------------------------
_FIELDS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "images_per_s", "encrypt_fraction",
           "seconds"]


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, text)


def _write_metrics(path: Path, rows: List[Dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    _write_text(path, buf.getvalue())


def _read_metrics(path: Path) -> List[Dict]:
    if not path.is_file():
        return []
    with open(path) as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in r.items()} for r in csv.DictReader(f)]


def _yaml(d: Dict) -> str:
    import yaml

    return yaml.safe_dump(d, sort_keys=False)
