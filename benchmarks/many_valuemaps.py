"""The many-image attack on schemes with value maps of their own (examples/value_schemes.py): XOR masks,
additive masks, one substitution table, with and without block moves; none declares its steps.

    .venv/bin/python benchmarks/many_valuemaps.py            # N = 300
    .venv/bin/python benchmarks/many_valuemaps.py --full     # N = 1,000
    .venv/bin/python benchmarks/many_valuemaps.py --schemes XorBlocks,XorBlocksRot --ns 100,300

Victims: CIFAR-10 test images (32x32, M = 4); public images: flower photos (train split) shrunk to 32x32,
another domain. Every cell runs the registry's ``many`` attack (one fresh key per cell) and prints the
share of images exact up to the global state (``exact_images_global``), SSIM up to the global state, the
value-map kind the attack chose, and the seconds taken.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table  # noqa: E402

from patchcrypt import Key  # noqa: E402
from patchcrypt.attacks import run_attack  # noqa: E402
from patchcrypt.data import load_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets"
SCHEMES = ("XorBlocks", "XorBlocksRot", "XorImage", "AddShuffle", "AddBlocksRot", "SubstBlocksRot", "SubstImage")


def shrink(images: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(x).resize((size, size), Image.BICUBIC)) for x in images])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="N = 1,000 (default 300)")
    ap.add_argument("--ns", default=None, help="comma-separated N (overrides --full)")
    ap.add_argument("--schemes", default=",".join(SCHEMES))
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--public", type=int, default=1000, help="public images")
    args = ap.parse_args()
    ns = [int(v) for v in args.ns.split(",")] if args.ns else [1000 if args.full else 300]
    victims = load_dataset(args.data / "cifar10-jpeg", "test").subset(max(ns)).images
    public = shrink(load_dataset(args.data / "flowers5-128", "train").subset(args.public).images, 32)
    rows = []
    for name in args.schemes.split(","):
        for n in ns:
            t0 = time.perf_counter()
            m = run_attack("many", f"{ROOT / 'examples' / 'value_schemes.py'}:{name}", 4, victims[:n], public,
                           key=Key.generate()).metrics()
            rows.append({"scheme": name, "N": n, "exact (global)": m["exact_images_global"],
                         "SSIM (global)": m["ssim_global"], "value map": m.get("value_map_kind"),
                         "shared": m.get("value_map_shared"), "seconds": time.perf_counter() - t0})
            print(f"{name} N={n}: {rows[-1]}", file=sys.stderr, flush=True)
    print(markdown_table(rows, ["scheme", "N", "exact (global)", "SSIM (global)", "value map", "shared",
                                "seconds"]))


if __name__ == "__main__":
    main()
