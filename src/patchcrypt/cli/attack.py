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
from .app import app, no_cache_option


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
    data: Optional[Path] = typer.Option(None, "--data", help="Image folder (train/ + test/ or val/, or one tree; "
                                        "photos of any size with --img-size), one image, or an encrypted tree "
                                        "(its ciphertexts attacked as stored; needs the owner's --key)."),
    key: Optional[Path] = typer.Option(None, "--key", help="Key to encrypt with (default: a throwaway one made for "
                                       "this run; with a key of yours, --out saves metrics only unless --figures)."),
    per_image: bool = typer.Option(False, "--per-image", help="Encrypt every image under its own key."),
    sub_block: Optional[int] = typer.Option(None, "--sub-block", help="Nested schemes (patch-shuffle-mix, "
                                            "etc-nested): the sub-block size m, a divisor of M (default 4)."),
    pairs: int = typer.Option(1, "--pairs", help="KPA: number of known plain/encrypted pairs."),
    n_images: int = typer.Option(100, "--n-images", help="Images to attack."),
    img_size: Optional[int] = typer.Option(None, "--img-size", help="Bring every photo to SxS first (shorter side "
                                           "resized, centre crop: the rule of train and evaluate); needed for a "
                                           "folder of mixed sizes."),
    public: Optional[Path] = typer.Option(None, "--public", help="The attacker's own plain images (default: the "
                                          "training split of --data); give a folder of another domain."),
    split: Optional[str] = typer.Option(None, "--split", help="Which images of --data to attack: a split folder "
                                        "(default: test/, val/ or validation/), or 'all' (every split; the "
                                        "attacker's own images then come from --public)."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="A model trained on plain images of the "
                                             "victims' domain (checkpoint or run folder): adds the recognisability "
                                             "figure (its label agreement on reconstructions beyond what needs no "
                                             "attack)."),
    max_single: int = typer.Option(4, "--max-single", help="Attacks that solve every image alone (the jigsaw) "
                                   "get at most this many of the images, evenly spaced; the table says so."),
    subset: int = typer.Option(2000, "--subset", help="GAN/ITN/KPA: attacker's training images."),
    epochs: int = typer.Option(5, "--epochs", help="GAN/ITN: training epochs."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for metrics.json and (under a throwaway key) "
                                       "contact sheets of the attacker's top candidates."),
    figures: bool = typer.Option(False, "--figures", help="With --key: also save the contact sheets. They show "
                                 "what the attack decrypted of images under your key; when it wins, one sheet "
                                 "gives the key away."),
    device: Optional[str] = typer.Option(None, "--device"),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress lines on stderr."),
    list_: bool = typer.Option(False, "--list", help="List every attack with its threat model."),
    no_cache: bool = no_cache_option(),
) -> None:
    """Attack images encrypted with a scheme (registered, or your own class); report SSIM/PSNR of the
    reconstructions and attack scores. `all` runs every attack and says n/a, with the reason, where one does
    not apply."""
    from ..attacks import ATTACKS, get_attack
    from ..keys import Key

    if list_ or name == "list":
        _list(as_json)
        return
    if name is None:
        raise PatchcryptError("name an attack, 'all' or 'list' (see `patchcrypt attack --help`)")
    if name != "all":
        get_attack(name)
    if data is None:
        raise PatchcryptError("--data is required (an image folder or one image)")
    _check_positive(("--n-images", n_images), ("--img-size", img_size), ("--max-single", max_single),
                    ("--sub-block", sub_block))
    k = Key.load(key) if key else None
    need_train = any(a.needs_train for a in ATTACKS.values()) if name == "all" else get_attack(name).needs_train
    target, test, train, note = _victims(data, scheme, block_size, k, per_image, n_images, img_size, need_train,
                                         subset, public, split, sub_block)
    draw = out is not None and (k is None or figures)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    if draw and k is not None:
        _warn_figures(out)

    if name == "all" and not quiet:
        typer.echo(f"note: {note}", err=True)
    options = _attack_options(pairs, epochs, device, reference, test.shape[1:])
    run = _all if name == "all" else _one
    run(name, target, block_size, test, train, k, per_image, max_single, not quiet, out, draw, as_json, options)
    if name != "all" and not quiet:   # after the run: an attack that does not apply says only that
        typer.echo(f"note: {note}", err=True)


def _attack_options(pairs: int, epochs: int, device: Optional[str], reference: Optional[Path], shape) -> dict:
    """The options every attack is run with; a reference classifier adds the recognisability figure."""
    options = dict(pairs=pairs, epochs=epochs, device=device)
    if reference is not None:
        from ..attacks.images import reference_classifier

        options["classify"] = reference_classifier(reference, shape)
    return options


def _check_positive(*flags) -> None:
    for flag, value in flags:
        if value is not None and value < 1:
            raise PatchcryptError(f"{flag} must be positive, got {value}")


def _all(name, target, block_size, test, train, k, per_image, max_single, progress, out, draw, as_json,
         options) -> None:
    """``attack all``: every attack, the verdict first."""
    from ..attacks import contact_sheet, run_all

    def save(row, result):
        if draw and result is not None:
            contact_sheet(result, out / f"candidates_{row['attack']}.png", show_plain=k is None)

    report = run_all(target, block_size, test, train, k, per_image, on_result=save, max_single=max_single,
                     progress=progress, **options)
    _write(out, {**report, "figure": _figure_note(k is None, draw)})
    if as_json:
        typer.echo(json.dumps(report))
    else:
        from ..attacks.registry import report_table

        typer.echo(report_table(report))


def _one(name, target, block_size, test, train, k, per_image, max_single, progress, out, draw, as_json,
         options) -> None:
    """``attack NAME``: one attack's figures."""
    from ..attacks import contact_sheet, get_attack, run_attack
    from ..attacks.registry import result_cell, single_sample
    from ..attacks.scoring import READ_GAIN, READ_SSIM

    if get_attack(name).single and len(test) > max_single:
        test = test[single_sample(len(test), max_single)]
        typer.echo(f"note: {name} solves every image alone: {len(test)} of the images, evenly spaced "
                   "(--max-single)", err=True)
    result = run_attack(name, target, block_size, test, train, k, per_image, progress=progress, **options)
    metrics = result.metrics()
    if draw:
        contact_sheet(result, out / "candidates.png", show_plain=k is None)
    _write(out, {**metrics, "figure": _figure_note(k is None, draw)})
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    typer.echo(f"{name} on {result.scheme} ({metrics['n_images']} images): {result_cell(name, metrics)}"
               f"; chosen output: exact {metrics['exact_images']:.3f}, SSIM {metrics['ssim']:.3f}, "
               f"PSNR {metrics['psnr']:.2f} dB (up to global state: up to one whole-image rotation/flip, colour "
               f"order and inversion; readable: exact up to it, or SSIM >= {READ_SSIM} and {READ_GAIN} above what "
               "needs no attack)")


def _victims(data: Path, scheme: str, block_size: Optional[int], key, per_image: bool, n_images: int,
             img_size: Optional[int], need_train: bool, subset: int, public: Optional[Path],
             split: Optional[str] = None, sub_block: Optional[int] = None):
    """(target, victims, the attacker's own images, a note on them): a plain folder encrypted here, or an
    encrypted tree's ciphertexts as stored (the owner's key decrypts them for scoring; nothing is re-encrypted).
    ``sub_block``: the nested schemes' m for the images encrypted here (a stored tree states its own)."""
    from ..attacks import make_target
    from ..attacks.images import held_target, is_encrypted_tree, load_folder, load_held, load_victims

    if is_encrypted_tree(data):
        if img_size:
            raise PatchcryptError("--img-size: encrypted images cannot be resized (that cuts through the blocks)")
        record, plain, enc, _ = load_held(data, n_images, key)
        if len(enc) < n_images:  # never a silent cap
            typer.echo(f"note: --n-images {n_images}: {data} holds {len(enc)} ciphertexts to attack; attacking "
                       "them all", err=True)
        if scheme not in (None, record.scheme):
            raise PatchcryptError(f"--scheme {scheme}: {data} was encrypted with {record.scheme!r}")
        if sub_block not in (None, record.options.get("sub_block")):
            raise PatchcryptError(f"--sub-block {sub_block}: {data} was encrypted with sub-block size "
                                  f"{record.options.get('sub_block', 'none')}")
        own = None
        if need_train:
            if public is None:
                raise PatchcryptError(f"{data} is an encrypted tree: give the attacker's own plain images with "
                                      "--public DIR (another domain)")
            own = load_folder(public, subset, plain.shape[1], "train" if (public / "train").is_dir() else None)
        note = (f"attacking {len(enc)} ciphertexts of {data.name} as stored ({record.scheme}, M={record.block_size}); "
                "scored against the key holder's decryptions")
        return held_target(record, key, plain, enc), plain, own, note
    if scheme is None:
        raise PatchcryptError("--scheme is required (a registered scheme, module:Class or file.py:Class)")
    test, train, note = load_victims(data, n_images, img_size, need_train, subset, public, split=split)
    options = {} if sub_block is None else {"sub_block": sub_block}
    return make_target(scheme, block_size, test, key=key, per_image=per_image, **options), test, train, note


def _warn_figures(out: Path) -> None:
    typer.echo(f"warning: --figures under your key: {out} will hold the attacks' decryptions of images encrypted "
               "under it; where an attack wins they are the plain images, and one of them with its ciphertext "
               "gives the key away. Share them as you would the plain images and the key.", err=True)


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
