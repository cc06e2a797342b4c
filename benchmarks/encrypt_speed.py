"""Encryption throughput of every scheme beside a plain memory copy of the same batch, in one run.

    .venv/bin/python benchmarks/encrypt_speed.py            # 32x32 (M=4) and 224x224 (M=16)
    .venv/bin/python benchmarks/encrypt_speed.py --full     # larger batches, more repeats

Prints images/s for numpy (N, H, W, C) and torch (N, C, H, W) batches and the ratio to ``np.copyto`` of
the same batch (single thread). Target: every scheme at >= 10% of memcpy (le and ele included: two gathers
where the others have one). The load average before and after is printed: on a shared machine compare
ratios of one run, and see ``costs.py --rows speed`` for CPU-time ratios that other load disturbs less.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_time, markdown_table, write_results  # noqa: E402

from patchcrypt import Key  # noqa: E402
from patchcrypt.ciphers import create_cipher  # noqa: E402
from patchcrypt.ciphers.program import _workers  # noqa: E402
from patchcrypt.runtime import to_nchw  # noqa: E402

SCHEMES = ["plain", "etc", "block-pixel", "le", "ele", "pe"]
TARGET: dict = {}  # scheme -> its own target where it differs from 0.10 (none today)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="bigger batches and more repeats")
    ap.add_argument("--per-image", action="store_true", help="also time per-image keys (nonce per image)")
    ap.add_argument("--out", type=Path, default=Path("results/encrypt_speed"))
    args = ap.parse_args(argv)
    repeats = 9 if args.full else 5
    geoms = [(32, 4, 4096 if args.full else 1024), (224, 16, 128 if args.full else 32)]
    key = Key.generate()
    rng = np.random.default_rng(0)
    rows = []
    print(f"cipher threads: {_workers()} (cores available: {len(os.sched_getaffinity(0))}); "
          f"memcpy: np.copyto, one thread; load average {os.getloadavg()[0]:.1f}", flush=True)
    for size, m, n in geoms:
        x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        xt = to_nchw(x)
        buf = np.empty_like(x)
        t_copy = best_time(lambda: np.copyto(buf, x), repeats)
        variants = [(s, False) for s in SCHEMES]
        if args.per_image:
            variants += [(s, True) for s in SCHEMES if s != "plain"]
        for scheme, per_image in variants:
            cipher = create_cipher(scheme, key, block_size=m, per_image=per_image)
            nonces = cipher.new_nonces(n) if per_image else None
            t_np = best_time(lambda: cipher.encrypt(x, nonces), repeats)
            t_th = best_time(lambda: cipher.encrypt(xt, nonces), repeats)
            # per-image keys derive and compile a fresh map for every image: no target, reported for scale
            target = None if per_image else TARGET.get(scheme, 0.10)
            row = {"size": f"{size}x{size}", "M": m, "batch": n,
                   "scheme": scheme + (" per-image" if per_image else ""),
                   "memcpy_img_s": n / t_copy, "numpy_img_s": n / t_np, "torch_img_s": n / t_th,
                   "numpy_ratio": t_copy / t_np, "torch_ratio": t_copy / t_th, "target": target}
            if target is None:
                row["target"], row["meets_target"] = "-", "-"
            else:
                row["meets_target"] = "yes" if min(row["numpy_ratio"], row["torch_ratio"]) >= target else "NO"
            rows.append(row)
            print(f"  {row['size']:>7} {row['scheme']:<22} numpy {row['numpy_ratio']:6.1%}  "
                  f"torch {row['torch_ratio']:6.1%} of memcpy", file=sys.stderr, flush=True)
    cols = ["size", "M", "scheme", "memcpy_img_s", "numpy_img_s", "torch_img_s", "numpy_ratio", "torch_ratio",
            "target", "meets_target"]
    table = markdown_table(rows, cols, ["size", "M", "scheme", "memcpy img/s", "numpy img/s", "torch img/s",
                                        "numpy / memcpy", "torch / memcpy", "target", "met"])
    print(table)
    print(f"load average after: {os.getloadavg()[0]:.1f}", flush=True)
    write_results(args.out, "encrypt_speed", {"full": args.full, "threads": _workers()}, rows, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
