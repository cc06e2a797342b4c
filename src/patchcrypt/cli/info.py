"""``patchcrypt schemes`` (every scheme with its steps, transformation count and key space for a geometry) and
``patchcrypt models`` (every registered model name)."""

from __future__ import annotations

import json

import typer

from ..ciphers import get_scheme, list_ciphers
from ..ciphers.steps import KEY_BITS_LOG10, effective_key_space_log10
from ..errors import PatchcryptError
from ..keys import Key
from ..security import SOURCES
from ..security import headline as security_headline
from .app import app


def scheme_rows(image_size: int, block_size: int, include_steps: bool = False) -> list:
    """One dict per scheme at (image_size, image_size, 3): name, steps, block size used,
    ``log10_transformations`` (how many distinct maps the scheme can be) and ``log10_key_space`` (how many
    of them a 256-bit key can select: the smaller of the count and 2^256)."""
    from ..ciphers import create_cipher

    key = Key.from_bytes(bytes(32))  # key material does not change the count; nothing is encrypted
    rows = []
    for name in list_ciphers(include_steps=include_steps):
        spec = get_scheme(name)
        m = spec.resolve_block_size(block_size, substitute=True)
        note = ""
        if spec.pixel_based:
            note = "pixel-based (block size not used)"
        elif m != block_size:
            note = f"takes M={m} only"
        try:
            cipher = create_cipher(name, key, block_size=m)
            count = cipher.transformations_log10(image_size, image_size, 3)
            steps = cipher.describe()["steps"]
        except PatchcryptError as exc:
            rows.append({"scheme": name, "steps": [], "block_size": m, "log10_transformations": None,
                         "log10_key_space": None, "note": str(exc)})
            continue
        rows.append({"scheme": name, "steps": steps, "block_size": m, "log10_transformations": round(count, 1),
                     "log10_key_space": round(effective_key_space_log10(count), 2),
                     "summary": spec.summary, "origin": spec.origin, "note": note,
                     "many_images_one_key": security_headline(name)})
    return rows


@app.command()
def models(
    pattern: str = typer.Argument("*", help="Shell-style filter, e.g. 'vit_*'."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of one name a line."),
) -> None:
    """List the registered model names (what train --model and keyed-model --model accept)."""
    from ..models import list_models

    names = list_models(pattern)
    if not names:
        raise PatchcryptError(f"no model name matches {pattern!r}; 'patchcrypt models' lists them all")
    typer.echo(json.dumps(names) if as_json else "\n".join(names))


@app.command()
def schemes(
    image_size: int = typer.Option(224, "--image-size", help="Square image side in pixels."),
    block_size: int = typer.Option(16, "--block-size", help="Block size M."),
    steps: bool = typer.Option(False, "--steps", help="Also list every step as a scheme of its own."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """List every scheme with its steps, transformation count, effective key space (log10), and what our own
    many-image attack recovers from ciphertexts under one key (measured, see docs/security.md)."""
    if image_size < 1 or block_size < 1:
        raise PatchcryptError("--image-size and --block-size must be positive")
    rows = scheme_rows(image_size, block_size, steps)
    if as_json:
        typer.echo(json.dumps({"image_size": image_size, "block_size": block_size,
                               "key_bits_log10": round(KEY_BITS_LOG10, 2), "schemes": rows}))
        return
    typer.echo(f"Schemes at {image_size}x{image_size}x3, M={block_size}. log10 maps: how many distinct "
               f"transformations the scheme can be;\nlog10 keys: how many of them a 256-bit key can select "
               f"(the smaller of the two; at most {KEY_BITS_LOG10:.2f}).")
    w = max(len(r["scheme"]) for r in rows)
    typer.echo(f"{'scheme':<{w}}  {'M':>3}  {'log10 maps':>10}  {'log10 keys':>10}  steps / note")
    for r in rows:
        count = "-" if r["log10_transformations"] is None else f"{r['log10_transformations']:.1f}"
        space = "-" if r["log10_key_space"] is None else f"{r['log10_key_space']:.2f}"
        detail = " ".join(r["steps"]) or "(none)"
        if r["note"]:
            detail += f"   [{r['note']}]"
        typer.echo(f"{r['scheme']:<{w}}  {r['block_size']:>3}  {count:>10}  {space:>10}  {detail}")
        typer.echo(f"{'':<{w}}  one key, many images: {r['many_images_one_key']}")
    typer.echo("\nA large key space is no protection against the server, which holds many images under one key: "
               "from ciphertexts alone\nour attack recovers the whole key of etc, block-pixel(-cs), pe and most "
               "single steps, and most of the content\nof le and etc-gray (CIFAR-10, 32x32, M=4 unless noted; "
               f"measured by {SOURCES['ciphertexts']}).\nPer-image keys (--per-image) stop those attacks, at "
               "the price of keyed models and of learning for most schemes.")
