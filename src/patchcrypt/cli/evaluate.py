"""``patchcrypt evaluate``: accuracy, per-class accuracy and confusion matrix of a run on a data set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .app import app, no_cache_option


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="Run folder (best.pt/last.pt) or a checkpoint file."),
    data: Path = typer.Option(..., "--data", help="Data: plain (with --key) or a tree from 'patchcrypt encrypt'."),
    key: Optional[Path] = typer.Option(None, "--key", help="Key file, to encrypt plain data for the model."),
    split: str = typer.Option("test", "--split", help="Split to use where the data has train/ and test/: test "
                              "(test/, else val/ or validation/), val or train."),
    device: Optional[str] = typer.Option(None, "--device", show_default="cuda if present, else cpu"),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
    no_cache: bool = no_cache_option(),
) -> None:
    """Evaluate a trained model; refuses data encrypted for another scheme, block size or key."""
    from ..evaluate import evaluate_checkpoint

    out_dir = run if run.is_dir() else run.parent
    result = evaluate_checkpoint(run, data, str(key) if key else None, split, device, out_dir)
    if as_json:
        typer.echo(json.dumps(result))
        return
    where = f" of {result['split']}" if result.get("split") else ""
    typer.echo(f"accuracy {result['accuracy']:.4f} on {result['n_images']} images{where}")
    for name, acc in result["per_class"].items():
        typer.echo(f"  {name:<14} {'-' if acc is None else f'{acc:.3f}'}")
    typer.echo(f"confusion matrix: {out_dir / 'confusion.png'}")
