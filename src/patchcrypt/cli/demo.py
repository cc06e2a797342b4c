"""``patchcrypt demo``: the main job on embedded real images, end to end.

Stage 1 (ciphers): a throwaway key, made for this stage and never saved, encrypts a few bundled real photos
with every scheme (the contact sheet shows plain images beside their ciphertexts, and such a pair gives a
key away, so it must not be the owner's key); the encrypted images are JPEG-compressed at Q=90, decoded and
decrypted; a table shows the transformation count, the effective key space (at most 2^256), bits per pixel,
PSNR after decryption and whether the lossless round trip is exact; a contact sheet shows plain |
encrypted | decrypted for every scheme. Later stages (training, keyed model, report) run when their parts
exist.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import typer

from ..ciphers import create_cipher, get_scheme
from ..codec import bits_per_pixel, decode_image, encode_jpeg, write_image
from ..errors import PatchcryptError
from ..keys import Key
from ..metrics import psnr
from ..record import EncryptionRecord
from .app import app, no_cache_option

SHEET_CAPTION = ("plain | encrypted | decrypted for every scheme, under a throwaway key generated for this sheet "
                 "and never saved, not the owner's key: a plain image beside its ciphertext under a real key "
                 "would give that key away")
DEMO_SCHEMES = ["plain", "etc", "etc-gray", "block-pixel", "le", "ele", "pe"]
QUALITY = 90


def cipher_demo(photos: np.ndarray, key: Key, out_dir: Path, echo=print) -> List[Dict]:
    """Run every scheme on ``photos`` (N, 224, 224, 3); write contact_sheet.png; return the table rows.

    ``key`` must be a throwaway key: the sheet pairs plain images with their ciphertexts under it.
    """
    rows, sheet = [], []
    h, w = photos.shape[1:3]
    for name in DEMO_SCHEMES:
        m = get_scheme(name).resolve_block_size(None, default=16)
        cipher = create_cipher(name, key, block_size=m)
        enc = cipher.encrypt(photos)
        exact = bool(np.array_equal(cipher.decrypt(enc), photos))
        # EtC: JPEG the encrypted images as a server would receive them (4:2:0; etc-gray is grayscale)
        jpeg = [encode_jpeg(e, QUALITY, "420") for e in enc]
        upsampling = EncryptionRecord(scheme=name, block_size=m, recorded_subsampling="420").jpeg_upsampling
        dec = cipher.decrypt(np.stack([decode_image(b, "L" if enc.shape[3] == 1 else "RGB", upsampling=upsampling)
                                       for b in jpeg]))
        p = float(np.mean([min(psnr(a, b), 100.0) for a, b in zip(photos, dec)]))
        bpp = float(np.mean([bits_per_pixel(len(b), h, w) for b in jpeg]))
        rows.append({"scheme": name, "block_size": m, "steps": " ".join(cipher.describe()["steps"]) or "-",
                     "log10_transformations": round(cipher.transformations_log10(h, w, 3), 1),
                     "log10_key_space": round(cipher.key_space_log10(h, w, 3), 2), "bpp_q90": round(bpp, 2),
                     "psnr_after_jpeg_db": round(p, 2), "exact_round_trip": exact})
        shown = enc[0] if enc.shape[3] == 3 else np.repeat(enc[0], 3, axis=2)
        sheet.append((name, photos[0], shown, dec[0]))
    _contact_sheet(sheet, out_dir / "contact_sheet.png")
    return rows


def _contact_sheet(rows, path: Path) -> None:
    from PIL import Image, ImageDraw

    th = 160
    label_w, pad = 110, 6
    cells = []
    for name, *imgs in rows:
        scaled = [Image.fromarray(np.ascontiguousarray(i)).resize(
            (max(1, round(i.shape[1] * th / i.shape[0])), th), Image.NEAREST) for i in imgs]
        cells.append((name, scaled))
    width = label_w + sum(max(c[1][k].width for c in cells) + pad for k in range(3))
    head = 24
    sheet = Image.new("RGB", (width, head + len(cells) * (th + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    col_w = [max(c[1][k].width for c in cells) for k in range(3)]
    x = label_w
    for k, title in enumerate(["plain", "encrypted (throwaway key)", f"decrypted (JPEG Q={QUALITY})"]):
        draw.text((x, 6), title, fill="black")
        x += col_w[k] + pad
    for r, (name, imgs) in enumerate(cells):
        y = head + r * (th + pad)
        draw.text((6, y + th // 2 - 6), name, fill="black")
        x = label_w
        for k, im in enumerate(imgs):
            sheet.paste(im, (x, y))
            x += col_w[k] + pad
    write_image(path, np.asarray(sheet))


def _print_table(rows: List[Dict], echo) -> None:
    echo(f"{'scheme':<12} {'M':>3} {'steps':<16} {'log10 maps':>10} {'log10 keys':>10} {'bpp@Q90':>8} "
         f"{'PSNR dB':>8}  exact")
    for r in rows:
        echo(f"{r['scheme']:<12} {r['block_size']:>3} {r['steps']:<16} {r['log10_transformations']:>10.1f} "
             f"{r['log10_key_space']:>10.2f} "
             f"{r['bpp_q90']:>8.2f} {r['psnr_after_jpeg_db']:>8.2f}  {'yes' if r['exact_round_trip'] else 'no'}")


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", "-o", help="Output folder (created)."),
    data: Optional[Path] = typer.Option(None, "--data", help="CIFAR-10 ImageFolder root for the training "
                                        "stage (default: scikit-learn's digits, shipped with the package)."),
    quick: bool = typer.Option(False, "--quick", help="Cipher stage only."),
    no_cache: bool = no_cache_option(),
) -> None:
    """The main job: encrypt real photos with every scheme, compress, decrypt, compare; then train."""
    from ..data import sample_photos

    out.mkdir(parents=True, exist_ok=True)
    if not out.is_dir():
        raise PatchcryptError(f"{out}: cannot create the output folder")
    key_path = out / "owner.key"
    # the data owner's key: made on the first run and kept (mode 0600) so reruns reuse finished runs
    key = Key.load(key_path) if key_path.exists() else Key.generate()
    typer.echo(f"patchcrypt demo: owner's key fingerprint {key.fingerprint} (the key itself is never shown; "
               "the contact sheet uses a throwaway key)")
    photos = sample_photos(224)
    t0 = time.perf_counter()
    rows = cipher_demo(photos, Key.generate(), out)  # a throwaway key: the sheet pairs plain and encrypted
    typer.echo(f"\n1. Ciphers on {len(photos)} real 224x224 photos (encrypt -> JPEG Q={QUALITY} 4:2:0 -> "
               f"decrypt; PSNR vs the original; 'exact' = lossless round trip)")
    _print_table(rows, typer.echo)
    typer.echo("   etc and etc-gray stay JPEG-compressible (bpp close to plain); the pixel-level schemes "
               "(block-pixel, le, ele, pe)\n   need about three times the bits and do not survive JPEG. etc-gray's "
               "RGB round trip passes through YCbCr 4:2:0,\n   so it is exact only on its grayscale components.")
    from ..security import headline
    typer.echo("   The key space is no protection against whoever holds many images under one key (the server): "
               f"etc: {headline('etc')};\n   block-pixel: {headline('block-pixel')} (docs/security.md; "
               "'patchcrypt schemes' for every scheme).")
    typer.echo(f"   contact sheet: {out / 'contact_sheet.png'}  ({time.perf_counter() - t0:.1f} s; under a "
               "throwaway key, not the owner's)")
    _write_json(out / "ciphers.json", {"kind": "demo_ciphers", "rows": rows, "key": "throwaway",
                                       "figures": ["contact_sheet.png"],
                                       "captions": {"contact_sheet.png": SHEET_CAPTION}})
    if quick:
        _write_report(out)
        return
    if not key_path.exists():
        key.save(key_path)
    runs = training_demo(out, key_path, data)
    typer.echo(f"\n   runs: {', '.join(str(r) for r in runs.values())}")
    keyed_demo(out, key_path, runs["plain"], data)
    _write_report(out, data if data is not None else out / "digits")


def _write_report(out: Path, data: Optional[Path] = None) -> None:
    """The demo's report; it gets no key, so its examples are under throwaway keys (see patchcrypt.report).
    It reads examples from the data the demo trained on (``data``), which the demo itself chose."""
    from ..report import build_report

    info = build_report([out], out / "report.html", None, title="patchcrypt demo",
                        data=[data] if data is not None else [])
    typer.echo(f"\nReport: {info['path']} ({info['sections']} sections, {info['images']} images; open it in a "
               "browser)")


def keyed_demo(out: Path, key_path: Path, plain_run: Path, data: Optional[Path]) -> None:
    """Key the plain-trained model for block-pixel and etc; same accuracy on encrypted test images."""
    from ..evaluate import evaluate_checkpoint
    from ..models.keyed import make_keyed_checkpoint

    data_path = data if data is not None else out / "digits"
    key = Key.load(key_path)
    typer.echo("\n3. Keying the plain-trained ViT with the owner's key (no retraining): test accuracy")
    base = evaluate_checkpoint(plain_run, data_path)["accuracy"]
    typer.echo(f"   {'plain model, plain images':<52} {100 * base:6.2f}%")
    rows = [{"model": "plain", "images": "plain", "accuracy": base}]
    other = out / "other.key"
    if not other.exists():
        Key.generate().save(other)
    for scheme in ("block-pixel", "etc"):
        keyed = out / f"keyed-{scheme}.pt"
        info = make_keyed_checkpoint(plain_run, keyed, key, scheme, 4, force=True)
        acc = evaluate_checkpoint(keyed, data_path, key=str(key_path))["accuracy"]
        typer.echo(f"   {'keyed model (' + info['mode'] + '), ' + scheme + ' images':<52} "
                   f"{100 * acc:6.2f}%")
        rows.append({"model": f"keyed ({info['mode']})", "images": scheme, "accuracy": acc})
    wrong = _wrong_key_accuracy(out / "keyed-block-pixel.pt", data_path, other)
    typer.echo(f"   {'keyed model, block-pixel images under another key':<52} {100 * wrong:6.2f}%")
    rows.append({"model": "keyed (shared)", "images": "block-pixel, another key", "accuracy": wrong})
    _write_json(out / "keyed.json", {"kind": "demo_keyed", "rows": rows, "key_fingerprint": key.fingerprint})


def _wrong_key_accuracy(checkpoint: Path, data_path: Path, other_key: Path) -> float:
    from ..ciphers import create_cipher
    from ..data import load_dataset
    from ..evaluate import predict
    from ..models import build_model, load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    test = load_dataset(data_path, "test")
    enc = create_cipher(ckpt["scheme"], Key.load(other_key), block_size=ckpt["block_size"]).encrypt(test.images)
    return float((predict(build_model(ckpt), enc).argmax(1) == test.labels).mean())


def _write_digits_tree(root: Path) -> Path:
    """scikit-learn's digits as an ImageFolder tree (train/ and test/), written once."""
    from ..codec import encode_png
    from ..data import digits_dataset

    if (root / "test").is_dir():
        return root
    tmp = root.with_name(root.name + ".partial")
    for split, ds in zip(("train", "test"), digits_dataset()):
        for i, (img, label) in enumerate(zip(ds.images, ds.labels)):
            d = tmp / split / ds.classes[label]
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{i:04d}.png").write_bytes(encode_png(img))
    tmp.replace(root)
    return root


def training_demo(out: Path, key_path: Path, data: Optional[Path]) -> Dict[str, Path]:
    """Train the same small ViT on plain and on encrypted images; print both accuracies."""
    import json as _json

    from ..train import TrainConfig, train

    if data is None:
        data_path, subset, epochs, augment = _write_digits_tree(out / "digits"), None, 25, "none"
        label = "scikit-learn's handwritten digits (upsampled to 32x32)"
    else:
        data_path, subset, epochs, augment = data, 5000, 10, "auto"
        label = f"CIFAR-10 from {data} (5,000 training images)"
    typer.echo(f"\n2. Training a small ViT (vit_pico_patch4_32, M = patch = 4) on {label}, plain and encrypted")
    runs, rows = {}, []
    for scheme in ("plain", "block-pixel"):
        run = out / "runs" / scheme
        if (run / "summary.json").exists():
            summary = _json.loads((run / "summary.json").read_text())
        else:
            if run.exists():
                import shutil

                shutil.rmtree(run)
            cfg = TrainConfig(data=str(data_path), model="vit_pico_patch4_32", out=str(run), epochs=epochs,
                              batch_size=32, lr=2e-3, subset=subset, seed=0, augment=augment,
                              scheme=None if scheme == "plain" else scheme,
                              key=None if scheme == "plain" else str(key_path),
                              block_size=None if scheme == "plain" else 4)
            t0 = time.perf_counter()
            summary = train(cfg)
            summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
        runs[scheme] = run
        rows.append((scheme, summary))
    typer.echo(f"   {'images':<14} {'test accuracy':>13} {'train s':>8}  encryption share of a step")
    for scheme, s in rows:
        typer.echo(f"   {scheme:<14} {100 * s['best_test_acc']:>12.1f}% {s['train_seconds']:>8.1f}  "
                   f"{100 * (s['encrypt_fraction'] or 0):.2f}%")
    return runs


def _write_json(path: Path, payload: Dict) -> None:
    import json

    from ..atomic import atomic_write

    atomic_write(path, json.dumps(payload, indent=1).encode())
