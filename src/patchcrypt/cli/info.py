"""``patchcrypt schemes``: every scheme with its steps and key space for a geometry."""

from __future__ import annotations

import json
import math

import typer

from ..ciphers import get_scheme, list_ciphers
from ..errors import PatchcryptError
from ..keys import Key
from .app import app

KEY_BITS_LOG10 = 256 * math.log10(2)  # the derivation's own key space: a 256-bit key


def scheme_rows(image_size: int, block_size: int, include_steps: bool = False) -> list:
    """One dict per scheme: name, steps, block size used, log10 key space at (image_size, image_size, 3)."""
    from ..ciphers import create_cipher

    key = Key.from_bytes(bytes(32))  # key material does not change the count; nothing is encrypted
    rows = []
    for name in list_ciphers(include_steps=include_steps):
        spec = get_scheme(name)
        m = block_size
        note = ""
        if spec.pixel_based:
            note = "pixel-based (block size not used)"
        elif spec.block_sizes and m not in spec.block_sizes:
            m = spec.block_sizes[0]
            note = f"takes M={m} only"
        try:
            cipher = create_cipher(name, key, block_size=m)
            space = cipher.key_space_log10(image_size, image_size, 3)
            steps = cipher.describe()["steps"]
        except PatchcryptError as exc:
            rows.append({"scheme": name, "steps": [], "block_size": m, "log10_key_space": None,
                         "note": str(exc)})
            continue
        rows.append({"scheme": name, "steps": steps, "block_size": m, "log10_key_space": round(space, 1),
                     "summary": spec.summary, "origin": spec.origin, "note": note})
    return rows


@app.command()
def schemes(
    image_size: int = typer.Option(224, "--image-size", help="Square image side in pixels."),
    block_size: int = typer.Option(16, "--block-size", help="Block size M."),
    steps: bool = typer.Option(False, "--steps", help="Also list every step as a scheme of its own."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """List every scheme with its steps and the log10 of its key space for this geometry."""
    if image_size < 1 or block_size < 1:
        raise PatchcryptError("--image-size and --block-size must be positive")
    rows = scheme_rows(image_size, block_size, steps)
    if as_json:
        typer.echo(json.dumps({"image_size": image_size, "block_size": block_size,
                               "key_bits_log10": round(KEY_BITS_LOG10, 1), "schemes": rows}))
        return
    typer.echo(f"Schemes at {image_size}x{image_size}x3, M={block_size} "
               f"(key space = number of distinct keyed transformations, as log10)")
    w = max(len(r["scheme"]) for r in rows)
    typer.echo(f"{'scheme':<{w}}  {'M':>3}  {'log10 keys':>10}  steps / note")
    for r in rows:
        space = "-" if r["log10_key_space"] is None else f"{r['log10_key_space']:.1f}"
        detail = " ".join(r["steps"]) or "(none)"
        if r["note"]:
            detail += f"   [{r['note']}]"
        typer.echo(f"{r['scheme']:<{w}}  {r['block_size']:>3}  {space:>10}  {detail}")
    typer.echo(f"Keys are derived from a 256-bit secret, so the effective key space is at most "
               f"10^{KEY_BITS_LOG10:.1f} whatever the transformation count.")
