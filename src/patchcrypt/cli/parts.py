"""``patchcrypt merge-manifests``: join the parts written by ``encrypt --part I/N`` into one data set."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import app


@app.command("merge-manifests")
def merge_manifests(
    dst: Path = typer.Argument(..., help="The folder every 'encrypt --part I/N' wrote into."),
) -> None:
    """Join the part manifests in DST into patchcrypt.json (refuses missing, overlapping or mismatched parts)."""
    from ..parts import merge_manifests as merge

    manifest = merge(dst)
    shards = f" in {len(manifest['shards'])} shard(s)" if manifest.get("shards") else ""
    typer.echo(f"merged {manifest['file_count']} file(s){shards} into {dst / 'patchcrypt.json'}")
