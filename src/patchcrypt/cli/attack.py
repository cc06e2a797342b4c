"""``patchcrypt attack``: run one attack, or every attack, against a scheme on real images.

    patchcrypt attack list                                   # every attack with its threat model
    patchcrypt attack kpa --scheme block-pixel --block-size 4 --data DIR --json
    patchcrypt attack all --scheme etc --block-size 4 --data DIR --json
    patchcrypt attack all --scheme examples/my_scheme.py:MyScheme --data DIR    # a user's own scheme
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import PatchcryptError
from .app import app


def _load_images(data: Path, n_images: int, subset: int, need_train: bool):
    """(test images, attacker's own images or None), uint8 (N, H, W, C)."""
    from ..data import load_dataset
    from ..data.readers import has_splits

    has_split = has_splits(data)
    test = load_dataset(data, "test" if has_split else None).subset(n_images)
    if not need_train:
        return test.images, None
    if has_split:
        return test.images, load_dataset(data, "train").subset(subset).images
    full = load_dataset(data)   # one pool of images: the attacker's own are the ones not attacked
    train = full.take(list(range(len(test), min(len(full), len(test) + subset)))) if len(full) > len(test) else test
    return test.images, train.images


def _list(as_json: bool) -> None:
    from ..attacks import ATTACKS

    rows = [{"attack": a.name, "threat": a.threat.value, "summary": a.summary, "needs_train": a.needs_train}
            for a in ATTACKS.values()]
    if as_json:
        typer.echo(json.dumps({"attacks": rows}))
        return
    w = max(len(r["attack"]) for r in rows)
    t = max(len(r["threat"]) for r in rows)
    typer.echo(f"{'attack':<{w}}  {'threat model':<{t}}  what it does")
    for r in rows:
        typer.echo(f"{r['attack']:<{w}}  {r['threat']:<{t}}  {r['summary']}")


@app.command()
def attack(
    name: Optional[str] = typer.Argument(None, help="An attack (see `patchcrypt attack list`), 'all' for every "
                                         "attack, or 'list'."),
    scheme: Optional[str] = typer.Option(None, "--scheme", help="A registered scheme, or your own scheme class as "
                                         "module:Class or path/to/file.py:Class."),
    block_size: Optional[int] = typer.Option(None, "--block-size", help="Block size M (a user scheme may declare "
                                             "its own)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Image folder (train/ + test/ splits or one tree) "
                                        "or one image."),
    key: Optional[Path] = typer.Option(None, "--key", help="Key to encrypt with (default: a throwaway one made for "
                                       "this run; with a key of yours, --out saves metrics only unless --figures)."),
    per_image: bool = typer.Option(False, "--per-image", help="Encrypt every image under its own key."),
    pairs: int = typer.Option(1, "--pairs", help="KPA: number of known plain/encrypted pairs."),
    n_images: int = typer.Option(100, "--n-images", help="Images to attack."),
    subset: int = typer.Option(2000, "--subset", help="GAN/ITN/KPA: attacker's training images."),
    epochs: int = typer.Option(5, "--epochs", help="GAN/ITN: training epochs."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for metrics.json and (under a throwaway key) "
                                       "contact sheets of the attacker's top candidates."),
    figures: bool = typer.Option(False, "--figures", help="With --key: also save the contact sheets. They show "
                                 "what the attack decrypted of images under your key; when it wins, one sheet "
                                 "gives the key away."),
    device: Optional[str] = typer.Option(None, "--device"),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
    list_: bool = typer.Option(False, "--list", help="List every attack with its threat model."),
) -> None:
    """Attack images encrypted with a scheme (registered, or your own class); report SSIM/PSNR of the
    reconstructions and attack scores. `all` runs every attack and says n/a, with the reason, where one does
    not apply."""
    from ..attacks import ATTACKS, contact_sheet, format_headline, get_attack, headline_of, run_all, run_attack
    from ..keys import Key

    if list_ or name == "list":
        _list(as_json)
        return
    if name is None:
        raise PatchcryptError("name an attack, 'all' or 'list' (see `patchcrypt attack --help`)")
    if name != "all":
        get_attack(name)
    if scheme is None:
        raise PatchcryptError("--scheme is required (a registered scheme, module:Class or file.py:Class)")
    if data is None:
        raise PatchcryptError("--data is required (an image folder or one image)")
    if n_images < 1:
        raise PatchcryptError(f"--n-images must be positive, got {n_images}")
    k = Key.load(key) if key else None
    need_train = any(a.needs_train for a in ATTACKS.values()) if name == "all" else get_attack(name).needs_train
    test, train = _load_images(data, n_images, subset, need_train)
    options = dict(pairs=pairs, epochs=epochs, device=device)
    draw = out is not None and (k is None or figures)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    if draw and k is not None:
        _warn_figures(out)

    if name == "all":
        def save(row, result):
            if draw and result is not None:
                contact_sheet(result, out / f"candidates_{row['attack']}.png", show_plain=k is None)

        report = run_all(scheme, block_size, test, train, k, per_image, on_result=save, **options)
        _write(out, {**report, "figure": _figure_note(k is None, draw)})
        if as_json:
            typer.echo(json.dumps(report))
        else:
            _print_table(report)
        return

    result = run_attack(name, scheme, block_size, test, train, k, per_image, **options)
    metrics = result.metrics()
    if draw:
        contact_sheet(result, out / "candidates.png", show_plain=k is None)
    _write(out, {**metrics, "figure": _figure_note(k is None, draw)})
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    head = format_headline(headline_of(name, metrics))
    typer.echo(f"{name} on {result.scheme} ({metrics['n_images']} images): {head}"
               f"; chosen output: exact {metrics['exact_images']:.3f}, SSIM {metrics['ssim']:.3f}, "
               f"PSNR {metrics['psnr']:.2f} dB (up to global state: up to one whole-image rotation/flip, colour "
               "order and inversion)")


def _warn_figures(out: Path) -> None:
    typer.echo(f"warning: --figures under your key: {out} will hold the attacks' decryptions of images encrypted "
               "under it; where an attack wins they are the plain images, and one of them with its ciphertext "
               "gives the key away. Share them as you would the plain images and the key.", err=True)


def _print_table(report: dict) -> None:
    """One line per attack: its threat model and headline, or n/a with the reason."""
    from ..attacks import format_headline

    keys = "per-image keys" if report["per_image"] else "one key"
    typer.echo(f"attacks on {report['scheme']} (M={report['block_size']}, {report['n_images']} images, {keys}); "
               "'up to global state': up to one whole-image rotation/flip, colour order and inversion")
    rows = [(r["attack"], r["threat"], format_headline(r["headline"]) if r["applies"] else f"n/a: {r['reason']}")
            for r in report["attacks"]]
    w, t = max(len(r[0]) for r in rows + [("attack",)]), max(len(r[1]) for r in rows + [("", "threat model")])
    typer.echo(f"{'attack':<{w}}  {'threat model':<{t}}  result")
    for a, th, res in rows:
        typer.echo(f"{a:<{w}}  {th:<{t}}  {res}")


def _figure_note(throwaway: bool, drawn: bool) -> str:
    """What the contact sheets show. Under the user's own key none are drawn unless asked for (--figures),
    and never with a plain column: beside ciphertexts under that key, plain images are known pairs for it."""
    if not drawn:
        return "none: the images are encrypted under your key (pass --figures to draw them anyway)"
    if throwaway:
        return "plain | encrypted | top candidates, best first, under a throwaway key generated for this run"
    return "encrypted | top candidates (no plain column: the images are encrypted under your key)"


def _write(out: Optional[Path], payload: dict) -> None:
    if out is None:
        return
    from ..atomic import atomic_write

    atomic_write(out / "metrics.json", json.dumps(payload, indent=1).encode())
