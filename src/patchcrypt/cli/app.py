"""The typer application every command module registers itself on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="patchcrypt",
    help="Block-wise image encryption for privacy-preserving classification with isotropic networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Block-wise image encryption for privacy-preserving classification with isotropic networks."""
