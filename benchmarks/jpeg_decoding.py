"""What the EtC JPEG decoding rule changes (``EncryptionRecord.jpeg_upsampling``), before and after.

    nice -n 10 .venv/bin/python benchmarks/jpeg_decoding.py            # about two minutes on 2 cores
    nice -n 10 .venv/bin/python benchmarks/jpeg_decoding.py --images 40 --size 224   # a quick look

Part 1, 224×224 photos, ``etc`` M=16 (patch 16), JPEG Q=90 4:2:0, which the rule decodes block-wise:
before, the server, server-side training and the training round trip decoded these files with libjpeg's
default ("fancy") chroma upsampling, and only ``decrypt`` block-wise; after, every path decodes block-wise.
For each decode it prints the PSNR of the decrypted image against the plain image and against the plain
JPEG (how faithful what the model sees is), and, for a ViT-Ti (random init, seed 0, 5 classes) keyed
with the same key (position-wise embedding, exact on uncompressed ciphertext), the mean |Δlogit| and top-1
agreement between the keyed model on the EtC JPEG and the plain model on the plain JPEG (decoded the
usual way) — how close serving on ciphertext JPEGs is to serving plain JPEGs.

Part 2, the ``etc + JPEG Q=90`` cells of ``benchmarks/accuracy_table.py`` and ``transfer_table.py`` (M=4
at 32×32, so 4:4:4): the rule keeps the default decode there, and both decodes are bit-identical on
4:4:4 files, so those cells do not change and are not rerun. This part checks that on CIFAR-10 images.

Images: ../shared/datasets/flowers5-128 (test split, resized to --size) and CIFAR-10 test images when
present, else scikit-image's sample photos.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table  # noqa: E402

import torch  # noqa: E402

from patchcrypt import Key  # noqa: E402
from patchcrypt.ciphers import create_cipher  # noqa: E402
from patchcrypt.codec import decode_image, encode_jpeg, resize_image  # noqa: E402
from patchcrypt.inference import predict  # noqa: E402
from patchcrypt.metrics import psnr  # noqa: E402
from patchcrypt.models import create_model  # noqa: E402
from patchcrypt.models.keyed import key_model  # noqa: E402
from patchcrypt.record import EncryptionRecord  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def photos(n: int, size: int) -> tuple:
    from patchcrypt.data import load_dataset
    from patchcrypt.data.samples import sample_photos

    if (SHARED / "flowers5-128").is_dir():
        ds = load_dataset(SHARED / "flowers5-128", split="test")
        idx = np.random.default_rng(0).choice(len(ds), min(n, len(ds)), replace=False)
        return np.stack([resize_image(ds.images[i], (size, size)) for i in idx]), "flowers5-128 test photos"
    return sample_photos(size), "scikit-image sample photos"


def roundtrip(images: np.ndarray, sub: str, upsampling: str) -> np.ndarray:
    return np.stack([decode_image(encode_jpeg(x, 90, sub), upsampling=upsampling) for x in images])


def part1(n: int, size: int) -> str:
    x, source = photos(n, size)
    key = Key.generate()
    record = EncryptionRecord(scheme="etc", block_size=16, jpeg_quality=90)
    cipher = record.cipher(key, verify=False)
    enc = cipher.encrypt(x)
    plain_jpeg = roundtrip(x, "420", "fancy")
    torch.manual_seed(0)
    plain = create_model("vit_tiny_patch16_224", img_size=size, num_classes=5).eval()
    keyed = copy.deepcopy(plain)
    key_model(keyed, key, "etc", 16)
    ref = predict(plain, plain_jpeg, device="cpu")
    rows = []
    for upsampling, who in (("fancy", "before: server, readers, training round trip"),
                            ("block", "after: every path (and decrypt, before and after)")):
        seen = roundtrip(enc, "420", upsampling)
        dec = cipher.decrypt(seen)
        logits = predict(keyed, seen, device="cpu")
        rows.append({"decode": upsampling, "who": who,
                     "psnr_plain": f"{np.mean([psnr(a, b) for a, b in zip(x, dec)]):.2f}",
                     "psnr_jpeg": f"{np.mean([psnr(a, b) for a, b in zip(plain_jpeg, dec)]):.2f}",
                     "dlogit": f"{np.abs(logits - ref).mean():.4f}",
                     "agree": f"{(logits.argmax(1) == ref.argmax(1)).mean():.3f}"})
    rule = record.jpeg_upsampling
    head = (f"{len(x)} {source} at {size}×{size}; etc M=16, JPEG Q=90 4:2:0 (the rule: {rule!r}); "
            "ViT-Ti random init seed 0, keyed position-wise; plain reference: plain JPEG Q=90 4:2:0, default decode")
    return head + "\n\n" + markdown_table(
        rows, ["decode", "who", "psnr_plain", "psnr_jpeg", "dlogit", "agree"],
        ["decode", "paths", "PSNR decrypted vs plain (dB)", "PSNR decrypted vs plain JPEG (dB)",
         "mean abs Δlogit, keyed vs plain", "top-1 agreement"])


def part2(n: int) -> str:
    from patchcrypt.data import load_dataset

    if (SHARED / "cifar10-jpeg").is_dir():
        x = load_dataset(SHARED / "cifar10-jpeg", split="test", subset=n).images
    else:
        from patchcrypt.data.samples import sample_photos
        x = sample_photos(32)
    record = EncryptionRecord(scheme="etc", block_size=4, jpeg_quality=90)  # accuracy_table's cells
    enc = create_cipher("etc", Key.generate(), block_size=4).encrypt(x)
    same = all(np.array_equal(decode_image(d, upsampling="block"), decode_image(d))
               for d in (encode_jpeg(e, 90, record.subsampling) for e in enc))
    return (f"accuracy_table / transfer_table 'etc + JPEG Q=90' cells: M=4 at 32×32, subsampling "
            f"{record.subsampling}, the rule: {record.jpeg_upsampling!r}; block and default decodes bit-identical "
            f"on {len(x)} CIFAR-10 test images: {same}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    print(part1(args.images, args.size), flush=True)
    print()
    print(part2(1000), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
