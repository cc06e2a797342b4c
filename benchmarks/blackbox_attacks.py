"""Chosen and known plaintext from the black box: the example value schemes (nothing declared) on CIFAR-10.

    PYTHONPATH=src .venv/bin/python benchmarks/blackbox_attacks.py              # 200 test images
    PYTHONPATH=src .venv/bin/python benchmarks/blackbox_attacks.py --full       # 1,000 test images

For every class of ``examples/value_schemes.py`` (M = 4, 32×32 CIFAR-10 test images, a fresh key per run) it
runs the two CLI commands a user would::

    patchcrypt attack cpa --scheme examples/value_schemes.py:CLASS --block-size 4 --data DATA --n-images N --json
    patchcrypt attack kpa --scheme examples/value_schemes.py:CLASS --block-size 4 --data DATA --n-images N \\
        --pairs 64 --json

and prints one row per class: the share of images the CPA decrypts exactly and the images it sent, the share
the KPA decrypts exactly from 64 known pairs (from the train split) and the fewest pairs on its doubling
ladder at which ≥ 99% of the coordinates match one source only. ``--out DIR`` also writes DIR/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets" / "cifar10-jpeg"
CLASSES = ("XorBlocks", "XorBlocksRot", "XorImage", "AddShuffle", "AddBlocksRot", "SubstBlocksRot", "SubstImage")


def attack(name: str, cls: str, data: Path, n_images: int, *extra: str) -> Dict:
    """One ``patchcrypt attack NAME`` run on ``examples/value_schemes.py:CLS``: its JSON metrics, or
    ``{"reason": ...}`` where the attack refused (its one-line error)."""
    cmd = [sys.executable, "-m", "patchcrypt", "attack", name, "--scheme", f"examples/value_schemes.py:{cls}",
           "--block-size", "4", "--data", str(data), "--n-images", str(n_images), "--json", *extra]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"reason": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--n-images", type=int, default=200)
    ap.add_argument("--full", action="store_true", help="1,000 test images (the figure the docs quote)")
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    n = 1000 if args.full else args.n_images
    rows: List[Dict] = []
    for cls in CLASSES:
        t0 = time.perf_counter()
        cpa = attack("cpa", cls, args.data, n)
        kpa = attack("kpa", cls, args.data, n, "--pairs", str(args.pairs))
        rows.append({"scheme": cls, "cpa_exact": cpa.get("exact_images", "n/a"), "queries": cpa.get("queries", "-"),
                     "kpa_exact": kpa.get("exact_images", "n/a"), "pairs_needed": kpa.get("pairs_needed"),
                     "kpa_seen": kpa.get("seen_fraction", "-"), "seconds": time.perf_counter() - t0,
                     "reasons": {k: v["reason"] for k, v in (("cpa", cpa), ("kpa", kpa)) if "reason" in v}})
        print(rows[-1], file=sys.stderr, flush=True)
    for r in rows:
        r["pairs_needed"] = "null" if r["pairs_needed"] is None else r["pairs_needed"]
    table = markdown_table(rows, ["scheme", "cpa_exact", "queries", "kpa_exact", "pairs_needed", "kpa_seen"],
                           ["scheme (nothing declared)", "CPA exact", "CPA queries", f"KPA exact ({args.pairs} pairs)",
                            "pairs needed", "KPA table entries seen"])
    print(f"CIFAR-10 test, N = {n}, M = 4, 32×32")
    print(table)
    if args.out:
        write_results(args.out, "blackbox_attacks", {"n_images": n, "pairs": args.pairs, "data": str(args.data)},
                      rows, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
