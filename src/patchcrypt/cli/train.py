"""``patchcrypt train``: train a model on encrypted images (DDP when started by torchrun)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app, no_cache_option


@app.command()
def train(
    data: Optional[Path] = typer.Option(None, "--data", help="ImageFolder root (train/ + test/, val/ or validation/), class tree, "
                                        "or a tree written by 'patchcrypt encrypt'."),
    model: Optional[str] = typer.Option(None, "--model", show_default='vit_pico_patch4_32', help="Model name (see 'patchcrypt models')."),
    out: Optional[Path] = typer.Option(None, "--out", show_default='runs/run', help="Run folder to create."),
    scheme: Optional[str] = typer.Option(None, "--scheme", show_default="plain, or the data's manifest", help="Encrypt plain data on the fly with this scheme."),
    key: Optional[Path] = typer.Option(None, "--key", help="Key file for on-the-fly encryption."),
    block_size: Optional[int] = typer.Option(None, "--block-size", show_default="the scheme's own, else the model's patch size", help="Block size M (= the model's patch size)."),
    per_image: Optional[bool] = typer.Option(None, "--per-image", show_default='False', help="A fresh key per image."),
    jpeg_quality: Optional[int] = typer.Option(None, "--jpeg-quality", show_default='no JPEG', help="EtC: JPEG at this quality."),
    epochs: Optional[int] = typer.Option(None, "--epochs", show_default='10'),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", show_default='128'),
    lr: Optional[float] = typer.Option(None, "--lr", show_default='0.001'),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", show_default='0.05'),
    augment: Optional[str] = typer.Option(None, "--augment", show_default='auto', help="auto, crop-flip, mixup or none."),
    subset: Optional[int] = typer.Option(None, "--subset", show_default='all', help="Train on a class-balanced subset."),
    test_subset: Optional[int] = typer.Option(None, "--test-subset", show_default='all', help="Evaluate on a subset of the test set."),
    seed: Optional[int] = typer.Option(None, "--seed", show_default='0'),
    device: Optional[str] = typer.Option(None, "--device", show_default='cuda if present, else cpu', help="cpu, cuda, cuda:N (default: CUDA if present)."),
    pretrained: Optional[Path] = typer.Option(None, "--pretrained", help="Fine-tune these weights: a timm-layout "
                                              ".pth/.safetensors state dict or a patchcrypt run/checkpoint."),
    init: Optional[str] = typer.Option(None, "--init", show_default='plain', help="With --pretrained: plain (fine-tune the plain weights "
                                       "on encrypted images) or keyed (transform them with --key first; the result still gives the key to anyone "
                                       "holding the public checkpoint, see README Security)."),
    freeze: Optional[str] = typer.Option(None, "--freeze", show_default='nothing frozen', help="backbone: train the head only (linear probe)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", show_default='no limit', help="Stop after this many optimiser steps."),
    img_size: Optional[int] = typer.Option(None, "--img-size", show_default="the model's size", help="Resize/crop plain images to this on load "
                                           "(default: the size the model's name says)."),
    stream: Optional[bool] = typer.Option(None, "--stream/--in-memory", show_default='by the memory budget', help="Decode images per batch in "
                                          "DataLoader workers, or all into RAM first (default: stream when the "
                                          "decoded set exceeds $PATCHCRYPT_MEMORY_BUDGET, 1G)."),
    workers: Optional[int] = typer.Option(None, "--workers", show_default='CPUs - 1', help="DataLoader workers when streaming."),
    data_on_device: Optional[bool] = typer.Option(None, "--data-on-device/--data-on-host", show_default='data-on-host', help="Hold the training images on the "
                                                  "device; batches, crops and flips are made there (GPU)."),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", show_default='no-amp', help="bf16 autocast for forward passes (loss in float32)."),
    fused: Optional[bool] = typer.Option(None, "--fused/--no-fused", show_default='no-fused', help="The fused AdamW kernel (CUDA)."),
    clip_grad: Optional[float] = typer.Option(None, "--clip-grad", show_default='no clipping', help="Clip the global gradient norm to this."),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last", show_default='no-channels-last', help="Channels-last memory format "
                                                 "(convolutions on a GPU)."),
    val_split: Optional[str] = typer.Option(None, "--val-split", show_default="auto", help="What chooses best.pt "
                                            "(never the test split): auto (a val/ or validation/ folder beside "
                                            "test/, else the last epoch), none (the last epoch), a folder name, or "
                                            "a share of train/ to hold out, e.g. 0.1."),
    eval_batch: Optional[int] = typer.Option(None, "--eval-batch", show_default='500', help="Test images per forward pass."),
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
                     channels_last=channels_last, eval_batch=eval_batch, val_split=val_split)
    cfg = TrainConfig.from_sources(config, overrides)
    if not cfg.data:
        from ..errors import PatchcryptError

        raise PatchcryptError("--data is required (or 'data:' in the --config file)")
    summary = run_train(cfg)
    if is_main_process():  # under torchrun every rank returns the same summary; one closing line
        typer.echo(closing_line(summary, cfg.out))


def closing_line(summary: dict, out) -> str:
    """The run's result in one line: the test accuracy of the chosen epoch, and what chose it."""
    acc = summary.get("test_acc")
    how = (f"chosen on the validation split, {summary['validation']} ({summary.get('n_val', 0)} images)"
           if summary.get("selected_by") == "validation accuracy" else
           "the last epoch: no validation split (--val-split 0.1 holds out 10% of train/ to choose one)")
    acc_text = "n/a" if acc is None else f"{acc:.4f}"
    return (f"test accuracy {acc_text} at epoch {summary.get('selected_epoch')}, {how}; test split "
            f"{summary.get('test_split', 'test')} ({summary['n_test']} images); run in {out}")
