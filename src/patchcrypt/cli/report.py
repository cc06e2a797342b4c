"""``patchcrypt report``: one self-contained HTML page from runs and benchmark results."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import app, no_cache_option


@app.command()
def report(
    inputs: List[Path] = typer.Argument(..., help="Run folders, results.json files, or folders holding them."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="The HTML file to write."),
    key: Optional[Path] = typer.Option(None, "--key", "-k", help="The runs' key: examples then show ciphertext only "
                                     "under it (default: plain | encrypted | decrypted under a throwaway key)."),
    data: List[Path] = typer.Option([], "--data", help="A data folder the runs' examples may be read from "
                                    "(repeatable). A run's config naming its data is not enough: without this, "
                                    "runs show no examples."),
    title: str = typer.Option("patchcrypt report", "--title"),
    no_cache: bool = no_cache_option(),
) -> None:
    """Write a self-contained HTML report (images embedded): tables, curves, examples."""
    from ..report import build_report
    from ..runtime import progress

    with progress(desc="report", unit="section") as bar:
        info = build_report(inputs, out, key, title, progress=bar.update, data=data)
    typer.echo(f"wrote {info['path']} ({info['sections']} sections, {info['images']} images)")
