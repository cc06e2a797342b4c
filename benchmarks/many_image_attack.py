"""Ciphertext-only key recovery from many images under one key: how many images each scheme survives.

    .venv/bin/python benchmarks/many_image_attack.py                       # block-pixel, etc; 32x32; N <= 300
    .venv/bin/python benchmarks/many_image_attack.py --schemes all --max-n 1000
    .venv/bin/python benchmarks/many_image_attack.py --geometry 224 --max-n 100

Victims: CIFAR-10 test images (class-balanced), under one key per cell; public images: CIFAR-10 training
images (a disjoint set). 32×32 with M = 4 (etc-gray: M = 8), or CIFAR upsampled to 224×224 (bicubic) with
M = 16. For every scheme, geometry and N in 10, 30, 100, ... up to --max-n: the exact key-map fraction
(entries of the compiled gather and XOR mask both right), whether the map is exact and exact up to one
left-right mirror, SSIM/PSNR of the decryptions and the seconds the attack took; one row per scheme with
per-image keys (the control, at N = min(100, --max-n)). Each cell is saved to results.json as it
finishes, so a cut-off run resumes. Prints the fewest N at which each key is exact, and exact up to the
mirror.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

from patchcrypt import Key  # noqa: E402
from patchcrypt.attacks.many import run_many_attack  # noqa: E402
from patchcrypt.data import load_dataset  # noqa: E402
from patchcrypt.errors import PatchcryptError  # noqa: E402

NS = (10, 30, 100, 300, 1000, 3000, 10000)
HEADLINE = ("block-pixel", "etc")
ALL = ("block-pixel", "block-pixel-cs", "etc", "etc-gray", "le", "ele", "pe", "step-bs", "step-rf", "step-rf-shared",
       "step-np", "step-bf", "step-cs", "step-cs-shared", "step-ps", "step-ps-perblock")
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cifar10-jpeg"
CONTROL_N = 100


def upsample(images: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if images.shape[1] == size:
        return images
    return np.stack([np.asarray(Image.fromarray(x).resize((size, size), Image.BICUBIC)) for x in images])


def block_size(scheme: str, geometry: int) -> int:
    if scheme == "etc-gray":
        return 8
    return 4 if geometry == 32 else 16


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED, help="CIFAR-10 (train/ and test/)")
    ap.add_argument("--schemes", default=",".join(HEADLINE), help="comma-separated, or 'all'")
    ap.add_argument("--geometry", default="32", help="32, 224 or 32,224")
    ap.add_argument("--max-n", type=int, default=300)
    ap.add_argument("--public", type=int, default=5000, help="public images (32x32; 224x224 uses a tenth)")
    ap.add_argument("--no-control", action="store_true", help="skip the per-image-key rows")
    ap.add_argument("--out", type=Path, default=Path("results/many_image_attack"))
    args = ap.parse_args(argv)
    schemes = ALL if args.schemes == "all" else tuple(s.strip() for s in args.schemes.split(","))
    geometries = [int(g) for g in args.geometry.split(",")]
    ns = [n for n in NS if n <= args.max_n]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    done = {(r["scheme"], r["geometry"], r["n"], r["per_image"]) for r in rows}
    # subset() is class-balanced (a prefix of the sorted tree would be one class)
    test_set = load_dataset(args.data, "test")
    train_set = load_dataset(args.data, "train")
    config = {"max_n": args.max_n, "public": args.public, "geometries": geometries}
    for geometry in geometries:
        public = upsample(train_set.subset(args.public if geometry == 32 else max(100, args.public // 10)).images,
                          geometry)
        for scheme in schemes:
            cells = [(n, False) for n in ns]
            if not args.no_control:
                cells.append((min(CONTROL_N, args.max_n), True))
            for n, per_image in cells:
                if (scheme, geometry, n, per_image) in done:
                    continue
                m = block_size(scheme, geometry)
                row = {"scheme": scheme, "geometry": geometry, "block_size": m, "n": n, "per_image": per_image}
                label = f"{scheme} {geometry}x{geometry} M={m} N={n}" + (" per-image keys" if per_image else "")
                print(f"{label}: attacking", flush=True)
                victims = upsample(test_set.subset(n).images, geometry)
                try:
                    res = run_many_attack(scheme, m, victims, public, key=Key.generate(), per_image=per_image)
                    met = res.metrics()
                    row.update({k: met[k] for k in ("ssim_mean", "psnr_mean")})
                    row.update({k: v for k, v in res.extra.items() if isinstance(v, (bool, int, float, str))})
                except PatchcryptError as exc:
                    row["not_applicable"] = str(exc)
                rows.append(row)
                write_results(args.out, "many_image_attack", config, rows, render(rows))
    md = render(rows)
    print(md)
    write_results(args.out, "many_image_attack", config, rows, md)
    return 0


def _yes(v) -> str:
    return "yes" if v else "no"


def render(rows) -> str:
    order = {s: i for i, s in enumerate(ALL)}
    rows = sorted(rows, key=lambda r: (r["geometry"], order.get(r["scheme"], 99), r["per_image"], r["n"]))
    table = []
    for r in rows:
        if "not_applicable" in r:
            table.append({"scheme": r["scheme"], "geometry": f"{r['geometry']}², M={r['block_size']}",
                          "N": r["n"], "key map exact": "n/a", "exact": r["not_applicable"].split(" (")[0]})
            continue
        frac = r.get("key_fraction", float("nan"))
        if "upper_half_fraction" in r:
            frac_s = f"{frac:.3f} (upper halves {r['upper_half_fraction']:.3f})"
        else:
            frac_s = f"{frac:.3f}"
        table.append({
            "scheme": r["scheme"] + (" (per-image keys)" if r["per_image"] else ""),
            "geometry": f"{r['geometry']}², M={r['block_size']}", "N": r["n"], "key map exact": frac_s,
            "up to mirror": f"{r.get('key_fraction_up_to_mirror', frac):.3f}",
            "exact": _yes(r.get("exact")), "exact up to mirror": _yes(r.get("exact_up_to_mirror")),
            "SSIM": r.get("ssim_mean"), "PSNR": r.get("psnr_mean"), "seconds": r.get("seconds")})
    cols = ["scheme", "geometry", "N", "key map exact", "up to mirror", "exact", "exact up to mirror", "SSIM",
            "PSNR", "seconds"]
    fewest = []
    for (scheme, geometry) in sorted({(r["scheme"], r["geometry"]) for r in rows if not r["per_image"]},
                                     key=lambda k: (k[1], order.get(k[0], 99))):
        mine = [r for r in rows if r["scheme"] == scheme and r["geometry"] == geometry and not r["per_image"]
                and "not_applicable" not in r]
        if not mine:
            continue
        ex = [r["n"] for r in mine if r.get("exact")]
        mir = [r["n"] for r in mine if r.get("exact_up_to_mirror")]
        fewest.append({"scheme": scheme, "geometry": f"{geometry}²", "tried N": ", ".join(
            str(r["n"]) for r in sorted(mine, key=lambda r: r["n"])),
            "fewest N, exact up to mirror": min(mir) if mir else "not reached",
            "fewest N, exact": min(ex) if ex else "not reached"})
    return ("Ciphertext-only key recovery from N CIFAR-10 test images under one key (public: CIFAR-10 training "
            "images). 'key map exact': share of the compiled map's entries (gather and XOR) recovered exactly; "
            "'up to mirror': the same for the better of the map and its left-right mirror. Per-image keys (the "
            "control): the recovered map against the first image's own key (agreement by chance).\n\n"
            + markdown_table(table, cols) + "\n\n" + markdown_table(fewest, list(fewest[0]) if fewest else []))


if __name__ == "__main__":
    sys.exit(main())
