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


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"patchcrypt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Block-wise image encryption for privacy-preserving classification with isotropic networks."""


def _no_cache(value: bool) -> bool:
    if value:
        from ..data.readers import turn_cache_off

        turn_cache_off()  # before the command reads anything; DataLoader workers inherit it
    return value


def no_cache_option():
    """The ``--no-cache`` option of every command that loads image trees through the decode cache."""
    return typer.Option(False, "--no-cache", callback=_no_cache, is_eager=True,
                        help="Keep no decoded copy of the images in the cache (~/.cache/patchcrypt/trees, or "
                             "$PATCHCRYPT_CACHE/trees); the same as PATCHCRYPT_CACHE=off.")
