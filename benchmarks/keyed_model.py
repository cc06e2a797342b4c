"""Keyed model vs plain model on CIFAR-10, side by side in one run.

    .venv/bin/python benchmarks/keyed_model.py                       # uses the accuracy table's ViT plain run
    .venv/bin/python benchmarks/keyed_model.py --checkpoint RUN      # any plain-trained ViT run or checkpoint

A plain-trained ViT is keyed with a fresh key for `block-pixel` (shared embedding) and for `etc`
(position-wise embeddings), then evaluated on the encrypted CIFAR-10 test set (and after JPEG), with a wrong
key, and against the plain model on encrypted images. Latency of plain vs keyed inference is measured in
the same run. When no trained model exists, a small ViT is trained first (a few minutes).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_time, markdown_table, write_results  # noqa: E402

from patchcrypt import Key  # noqa: E402
from patchcrypt.ciphers import create_cipher  # noqa: E402
from patchcrypt.codec import jpeg_roundtrip  # noqa: E402
from patchcrypt.data import load_dataset  # noqa: E402
from patchcrypt.models import build_model, load_checkpoint  # noqa: E402
from patchcrypt.models.keyed import key_model  # noqa: E402
from patchcrypt.train import TrainConfig, predict_logits, to_tensor, train  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cifar10-jpeg"


def accuracy(model, images: np.ndarray, labels: np.ndarray) -> float:
    logits = predict_logits(model, to_tensor(images), torch.device("cpu"))
    return float((logits.argmax(1).numpy() == labels).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=Path("results/accuracy_table/runs/vit__plain"))
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--out", type=Path, default=Path("results/keyed_model"))
    args = ap.parse_args(argv)
    if not (args.checkpoint / "best.pt").exists() and not args.checkpoint.is_file():
        args.checkpoint = args.out / "plain_run"
        if not (args.checkpoint / "summary.json").exists():
            print("no plain run found; training a small ViT on 10,000 CIFAR-10 images (a few minutes)", flush=True)
            train(TrainConfig(data=str(args.data), model="vit_pico_patch4_32", out=str(args.checkpoint), epochs=10,
                              batch_size=128, lr=2e-3, subset=10000, resume=(args.checkpoint / "last.pt").exists()))
    ckpt = load_checkpoint(args.checkpoint)
    if ckpt.get("scheme") not in (None, "plain"):
        raise SystemExit(f"{args.checkpoint} was trained on {ckpt['scheme']} images; give a plain-trained model")
    test = load_dataset(args.data, "test").subset(args.n_test)
    x, y = test.images, test.labels
    plain = build_model(ckpt).float()
    key, wrong = Key.generate(), Key.generate()
    rows = []

    def row(model_label, images_label, acc, note=""):
        rows.append({"model": model_label, "test images": images_label, "accuracy": f"{100 * acc:.2f}", "note": note})
        print(f"  {model_label:<34} {images_label:<36} {100 * acc:6.2f}%  {note}", flush=True)

    base = accuracy(plain, x, y)
    row("plain", "plain", base)
    lat = {}
    batch = to_tensor(x[:256])
    for scheme, label in (("block-pixel", "shared embedding"), ("etc", "position-wise embeddings")):
        keyed = copy.deepcopy(plain)
        info = key_model(keyed, key, scheme, ckpt["model_kwargs"].get("patch_size", plain.patch_size))
        cipher = create_cipher(scheme, key, block_size=plain.patch_size)
        enc = cipher.encrypt(x)
        acc = accuracy(keyed, enc, y)
        row(f"keyed, {scheme} ({label})", f"{scheme}", acc,
            f"Δ {100 * (acc - base):+.2f} pts; +{info['added_parameters']:,} params")
        if scheme == "etc":
            jq = jpeg_roundtrip(enc, 90, "444")
            row(f"keyed, {scheme} ({label})", "etc, JPEG Q=90 4:4:4", accuracy(keyed, jq, y))
            row("plain", "plain, JPEG Q=90 4:4:4", accuracy(plain, jpeg_roundtrip(x, 90, "444"), y),
                "reference for the row above")
        row(f"keyed, {scheme} ({label})", f"{scheme}, another key", accuracy(keyed, create_cipher(
            scheme, wrong, block_size=plain.patch_size).encrypt(x), y), "wrong key")
        row("plain", f"{scheme}", accuracy(plain, enc, y), "no key in the model")
        enc_batch = to_tensor(enc[:256])
        plain_t, keyed_t = float("inf"), float("inf")
        for _ in range(11):  # interleaved, best of 11: other load on the machine hits both alike
            plain_t = min(plain_t, best_time(lambda: predict_logits(plain, batch, torch.device("cpu")), 1))
            keyed_t = min(keyed_t, best_time(lambda: predict_logits(keyed, enc_batch, torch.device("cpu")), 1))
        lat[scheme] = {"plain_ms_per_image": 1000 * plain_t / 256, "keyed_ms_per_image": 1000 * keyed_t / 256,
                       "ratio": keyed_t / plain_t, "added_parameters": info["added_parameters"],
                       "parameters": sum(p.numel() for p in plain.parameters())}
    table = markdown_table(rows, ["model", "test images", "accuracy", "note"],
                           ["model", "test images", "accuracy %", "note"])
    lat_rows = [{"keyed for": s, **v} for s, v in lat.items()]
    lat_table = markdown_table(lat_rows, ["keyed for", "parameters", "added_parameters", "plain_ms_per_image",
                                          "keyed_ms_per_image", "ratio"],
                               ["keyed for", "parameters", "added", "plain ms/img", "keyed ms/img", "keyed / plain"])
    md = (f"Keyed {ckpt['model']} from {ckpt['path']} on {len(y)} CIFAR-10 test images (M = {plain.patch_size})\n\n"
          f"{table}\n\nInference latency, batch 256, CPU, same run:\n\n{lat_table}")
    print(md)
    write_results(args.out, "keyed_model", {"checkpoint": ckpt["path"], "n_test": len(y)}, rows + lat_rows, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
