"""``patchcrypt bench``: rate a design (registered, or your own class) into a card.

    patchcrypt bench --scheme block-pixel --block-size 4 --data ../shared/datasets/cifar10-jpeg \\
        --public ../shared/datasets/flowers5-128 --preset quick --out results/cards/block-pixel-4
    patchcrypt bench --scheme examples/value_schemes.py:XorBlocks --data DIR --public DIR --out OUT
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import PatchcryptError
from .app import app, no_cache_option


@app.command()
def bench(
    scheme: str = typer.Option(..., "--scheme", help="A registered scheme, or your own scheme class as module:Class "
                               "or path/to/file.py:Class (no declared steps needed)."),
    block_size: Optional[int] = typer.Option(None, "--block-size", help="Block size M (a user class may declare "
                                             "its own)."),
    per_image: bool = typer.Option(False, "--per-image", help="Every image under its own key."),
    model: str = typer.Option("vit_pico_patch4_32", "--model", help="The model of the accuracy part (its patch "
                              "size is set to M)."),
    data: List[Path] = typer.Option(..., "--data", help="A victims' domain (repeat for several): train/ + test/ "
                                    "(or val/) folders; the accuracy is measured on the first one (32-px sets)."),
    public: Optional[Path] = typer.Option(None, "--public", help="The attacker's own plain images, another domain "
                                          "(default: the next --data domain)."),
    preset: str = typer.Option("quick", "--preset", help="quick (minutes on 2 cores at 32 px) or full."),
    ladder_max: Optional[int] = typer.Option(None, "--ladder-max", help="Override the preset's largest N."),
    img_size: Optional[int] = typer.Option(None, "--img-size", help="Bring photo domains of mixed sizes to SxS "
                                           "(shorter side resized, centre crop; default: the preset's, quick: "
                                           "none)."),
    out: Path = typer.Option(..., "--out", help="Folder for card.json, card.md, ladder.png (and partial.json, "
                             "which a rerun with the same options resumes from)."),
    device: Optional[str] = typer.Option(None, "--device"),
    quiet: bool = typer.Option(False, "--quiet", help="No progress lines on stderr."),
    no_cache: bool = no_cache_option(),
) -> None:
    """Rate a design: images-to-break per domain, queries- and pairs-to-break, the accuracy cost, the verdict."""
    from ..bench import bench as run_bench
    from ..bench import get_preset

    if block_size is not None and block_size < 1:
        raise PatchcryptError(f"--block-size must be positive, got {block_size}")
    for name, value in (("--ladder-max", ladder_max), ("--img-size", img_size)):
        if value is not None and value < 1:
            raise PatchcryptError(f"{name} must be positive, got {value}")
    chosen = get_preset(preset, ladder_max=ladder_max, img_size=img_size)
    command = "patchcrypt " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["bench"] else ""
    card = run_bench(scheme, data, chosen, out, block_size=block_size, per_image=per_image, public=public,
                     model=model, device=device, progress=not quiet, command=command)
    typer.echo(card["verdict"]["line"])
    for d in card["domains"]:
        n = d["n_to_break"]
        typer.echo(f"images-to-break, {d['domain']} at {d['img_size']} px: "
                   f"{n if n is not None else 'not broken up to ' + str(d['largest_tried'])}")
    acc = card["accuracy"]
    if "cost" in acc:
        typer.echo(f"accuracy: plain {acc['plain']:.3f}, scheme {acc['scheme']:.3f}, cost {acc['cost']:+.3f} "
                   f"({acc['model']}, {acc['train_images']} images, {acc['epochs']} epochs)")
    typer.echo(f"card: {out / 'card.json'}, {out / 'card.md'}")
