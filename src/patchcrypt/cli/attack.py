"""``patchcrypt attack``: run one attack against one scheme on real images; write reconstructions + metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import PatchcryptError
from .app import app


@app.command()
def attack(
    name: str = typer.Argument(..., help="fr, jigsaw, gan, itn or kpa."),
    scheme: str = typer.Option(..., "--scheme", help="Scheme to attack."),
    block_size: int = typer.Option(..., "--block-size", help="Block size M."),
    data: Path = typer.Option(..., "--data", help="Image folder (train/ + test/ splits or one tree) or one image."),
    key: Optional[Path] = typer.Option(None, "--key", help="Key to encrypt with (default: a fresh one)."),
    per_image: bool = typer.Option(False, "--per-image", help="Encrypt every image under its own key."),
    pairs: int = typer.Option(1, "--pairs", help="KPA: number of known plain/encrypted pairs."),
    n_images: int = typer.Option(100, "--n-images", help="Images to attack."),
    subset: int = typer.Option(2000, "--subset", help="GAN/ITN/KPA: attacker's training images."),
    epochs: int = typer.Option(5, "--epochs", help="GAN/ITN: training epochs."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for reconstructions.png and metrics.json."),
    device: Optional[str] = typer.Option(None, "--device"),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
) -> None:
    """Attack images encrypted with a scheme; report SSIM/PSNR of the reconstructions (and attack scores)."""
    from ..attacks import ATTACKS, reconstruction_grid, run_attack
    from ..data import load_dataset
    from ..keys import Key

    if name not in ATTACKS:
        raise PatchcryptError(f"unknown attack {name!r}; valid: {', '.join(ATTACKS)}")
    k = Key.load(key) if key else None
    has_split = data.is_dir() and (data / "test").is_dir() and (data / "train").is_dir()
    test = load_dataset(data, "test" if has_split else None).subset(n_images)
    train = None
    if name in ("gan", "itn", "kpa"):
        train = load_dataset(data, "train").subset(subset) if has_split else test
        if not has_split:  # one pool of images: the attacker's own are the ones not attacked
            full = load_dataset(data)
            train = full.take(list(range(len(test), len(full)))) if len(full) > len(test) else test
        train = train.images
    result = run_attack(name, scheme, block_size, test.images, train, k, per_image, pairs, epochs, device)
    metrics = result.metrics()
    if out is not None:
        from ..codec import write_bytes_atomic

        out.mkdir(parents=True, exist_ok=True)
        reconstruction_grid(result, out / "reconstructions.png")
        write_bytes_atomic(out / "metrics.json", json.dumps(metrics, indent=1).encode())
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    typer.echo(f"{name} on {scheme} (M={block_size}, {metrics['n_images']} images): SSIM "
               f"{metrics['ssim_mean']:.3f} ± {metrics['ssim_std']:.3f}, PSNR {metrics['psnr_mean']:.2f} dB"
               + "".join(f", {k} {metrics[k]:.3f}" for k in ("dc", "nc", "lc", "key_recovered_fraction")
                         if k in metrics))
