"""``patchcrypt train``: train a model on encrypted images (DDP when started by torchrun)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app, no_cache_option


@app.command()
def train(
    data: Optional[Path] = typer.Option(None, "--data", help="ImageFolder root (train/ + test/), class tree, "
                                        "or a tree written by 'patchcrypt encrypt'."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name (see 'patchcrypt models')."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder to create."),
    scheme: Optional[str] = typer.Option(None, "--scheme", help="Encrypt plain data on the fly with this scheme."),
    key: Optional[Path] = typer.Option(None, "--key", help="Key file for on-the-fly encryption."),
    block_size: Optional[int] = typer.Option(None, "--block-size", help="Block size M (= the model's patch size)."),
    per_image: Optional[bool] = typer.Option(None, "--per-image", help="A fresh key per image."),
    jpeg_quality: Optional[int] = typer.Option(None, "--jpeg-quality", help="EtC: JPEG at this quality."),
    epochs: Optional[int] = typer.Option(None, "--epochs"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    lr: Optional[float] = typer.Option(None, "--lr"),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay"),
    augment: Optional[str] = typer.Option(None, "--augment", help="auto, crop-flip, mixup or none."),
    subset: Optional[int] = typer.Option(None, "--subset", help="Train on a class-balanced subset."),
    test_subset: Optional[int] = typer.Option(None, "--test-subset", help="Evaluate on a subset of the test set."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N (default: CUDA if present)."),
    pretrained: Optional[Path] = typer.Option(None, "--pretrained", help="Fine-tune these weights: a timm-layout "
                                              ".pth/.safetensors state dict or a patchcrypt run/checkpoint."),
    init: Optional[str] = typer.Option(None, "--init", help="With --pretrained: plain (fine-tune the plain weights "
                                       "on encrypted images) or keyed (transform them with --key first; the result still gives the key to anyone "
                                       "holding the public checkpoint, see README Security)."),
    freeze: Optional[str] = typer.Option(None, "--freeze", help="backbone: train the head only (linear probe)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimiser steps."),
    img_size: Optional[int] = typer.Option(None, "--img-size", help="Resize/crop plain images to this on load "
                                           "(default: the size the model's name says)."),
    stream: Optional[bool] = typer.Option(None, "--stream/--in-memory", help="Decode images per batch in "
                                          "DataLoader workers, or all into RAM first (default: stream when the "
                                          "decoded set exceeds $PATCHCRYPT_MEMORY_BUDGET, 1G)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="DataLoader workers when streaming."),
    data_on_device: Optional[bool] = typer.Option(None, "--data-on-device/--data-on-host", help="Hold the training images on the "
                                                  "device; batches, crops and flips are made there (GPU)."),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="bf16 autocast for forward passes (loss in float32)."),
    fused: Optional[bool] = typer.Option(None, "--fused/--no-fused", help="The fused AdamW kernel (CUDA)."),
    clip_grad: Optional[float] = typer.Option(None, "--clip-grad", help="Clip the global gradient norm to this."),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last", help="Channels-last memory format "
                                                 "(convolutions on a GPU)."),
    eval_batch: Optional[int] = typer.Option(None, "--eval-batch", help="Test images per forward pass."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of options (flags override it)."),
    no_cache: bool = no_cache_option(),
) -> None:
    """Train a model on encrypted (or plain) images; writes config, metrics, summary and checkpoints."""
    from ..train import TrainConfig, is_main_process, train as run_train

    overrides = dict(data=str(data) if data else None, model=model, out=str(out) if out else None, scheme=scheme,
                     key=str(key) if key else None, block_size=block_size, per_image=per_image,
                     jpeg_quality=jpeg_quality, epochs=epochs, batch_size=batch_size, lr=lr,
                     weight_decay=weight_decay, augment=augment, subset=subset, test_subset=test_subset, seed=seed,
                     device=device, pretrained=str(pretrained) if pretrained else None, init=init, freeze=freeze,
                     resume=resume or None, max_steps=max_steps, img_size=img_size, stream=stream, workers=workers,
                     data_on_device=data_on_device, amp=amp, fused=fused, clip_grad=clip_grad,
                     channels_last=channels_last, eval_batch=eval_batch)
    cfg = TrainConfig.from_sources(config, overrides)
    if not cfg.data:
        from ..errors import PatchcryptError

        raise PatchcryptError("--data is required (or 'data:' in the --config file)")
    summary = run_train(cfg)
    if is_main_process():  # under torchrun every rank returns the same summary; one closing line
        typer.echo(f"best test accuracy {summary['best_test_acc']:.4f} ({summary['n_test']} images); "
                   f"run in {cfg.out}")
