"""``patchcrypt keygen``: create a key file."""

from __future__ import annotations

from pathlib import Path

import typer

from ..keys import Key
from .app import app


@app.command()
def keygen(
    out: Path = typer.Option(..., "-o", "--out", help="Key file to write (mode 0600)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing key file."),
) -> None:
    """Generate a new 256-bit key; prints only its fingerprint."""
    key = Key.generate()
    key.save(out, force=force)
    typer.echo(f"wrote {out} (fingerprint {key.fingerprint})")
