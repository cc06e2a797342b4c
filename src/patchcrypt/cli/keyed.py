"""``patchcrypt keyed-model``: key a plain-trained ViT/ConvMixer (or re-key a keyed one) for encrypted images."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..keys import Key
from .app import app


@app.command("keyed-model")
def keyed_model(
    run: Path = typer.Argument(..., help="Run folder or checkpoint of a plain-trained model (or a keyed one with "
                               "--rekey), or a timm ViT state dict (.pth/.safetensors) with --model."),
    key: Path = typer.Option(..., "--key", help="Key file the data owner encrypts with (the old key with --rekey)."),
    out: Path = typer.Option(..., "-o", "--out", help="Checkpoint file to write."),
    scheme: Optional[str] = typer.Option(None, "--scheme", help="Scheme of the encrypted images."),
    block_size: Optional[int] = typer.Option(None, "--block-size", help="Block size M (= patch size)."),
    mode: str = typer.Option("auto", "--mode", help="auto, shared or position-wise (a per-block key state in front of the one embedding)."),
    rekey: Optional[Path] = typer.Option(None, "--rekey", help="Move a keyed model to this new key file."),
    model: Optional[str] = typer.Option(None, "--model", help="Registry name for a raw timm state dict."),
    force: bool = typer.Option(False, "--force", help="Replace OUT."),
) -> None:
    """Transform a model so it classifies images encrypted with KEY exactly as it classified plain ones."""
    from ..models.keyed import make_keyed_checkpoint  # torch only when the command runs

    old = Key.load(key)
    new = Key.load(rekey) if rekey else None
    info = make_keyed_checkpoint(run, out, old, scheme, block_size, mode, new, model, force)
    extra = f", {info['added_parameters']:,} parameters added" if info.get("added_parameters") else ""
    extra += f", {info['added_buffers']:,} key indices added" if info.get("added_buffers") else ""
    typer.echo(f"wrote {out}: {info['scheme']} M={info['block_size']}, {info['mode']} embedding, key "
               f"{info['key_fingerprint']}{extra}")
