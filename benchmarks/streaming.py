"""Streaming vs in-RAM training: throughput on CIFAR-10, and peak memory against data-set size.

    .venv/bin/python benchmarks/streaming.py                         # both tables, small default sizes
    .venv/bin/python benchmarks/streaming.py --sizes 600 12000       # the issue's memory check
    .venv/bin/python benchmarks/streaming.py --sizes 1000 10000 50000 --skip-throughput

Throughput: ``patchcrypt train`` on the CIFAR-10 JPEG tree (``--subset`` train images, owner side: ``etc``
encrypted on the fly) twice in the same run, ``--in-memory`` then ``--stream`` (DataLoader workers decode
each batch); images/s is the trainer's own figure (training steps only; the in-RAM run's decode before the
first step is not counted, the streamed run's decoding is). Target: streaming >= 0.8 of in-RAM.

Memory: generated trees of N 224x224 JPEG photos (crops of scikit-image's photos), then
``train --model vit_tiny_patch16_224 --scheme etc --max-steps 8 --batch-size 16`` with the data mode chosen
automatically (and forced in RAM where that fits, for comparison); peak RSS of the largest process
(``/usr/bin/time -v``'s "Maximum resident set size", via ``getrusage(RUSAGE_CHILDREN)``). Every finished
cell is saved to ``--out/cells.json`` at once, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

from patchcrypt import Key  # noqa: E402
from patchcrypt.atomic import atomic_write  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets" / "cifar10-jpeg"
_PEAK = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
         "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")


def run_train(args, env) -> tuple:
    """Run ``patchcrypt train ARGS`` in a child; returns (summary dict, peak RSS in MB)."""
    import shutil

    shutil.rmtree(args[args.index("--out") + 1], ignore_errors=True)  # a cell interrupted before it finished
    cmd = [sys.executable, "-c", _PEAK, sys.executable, "-m", "patchcrypt", "train", *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"train failed: {res.stderr.strip().splitlines()[-1:]}")
    peak = int(res.stdout.split("PEAK_KB")[-1].split()[0]) / 1024
    out = Path(args[args.index("--out") + 1])
    return json.loads((out / "summary.json").read_text()), peak


def make_tree(root: Path, n: int, size: int = 224) -> Path:
    """``root/<class>/<i>.jpg``: n crops of real photos (two classes), JPEG Q90; kept between runs."""
    from PIL import Image

    from patchcrypt.data.samples import sample_photos

    done = root / ".complete"
    if done.exists():
        return root
    photos = sample_photos(320)
    rng = np.random.default_rng(n)
    for i in range(n):
        d = root / ("a" if i % 2 else "b")
        d.mkdir(parents=True, exist_ok=True)
        p = photos[i % len(photos)]
        r, c = rng.integers(0, 320 - size, 2)
        Image.fromarray(np.ascontiguousarray(p[r:r + size, c:c + size])).save(d / f"{i:06d}.jpg", quality=90)
    done.write_text("")
    return root


def load_cells(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def save_cell(path: Path, cells: dict, name: str, value) -> None:
    cells[name] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(cells, indent=1))


def throughput(args, env, cells, cells_path, key_file, work: Path) -> list:
    """In RAM and streamed, alternating ``--repeats`` times (so that other load on the machine hits both
    alike); each mode's best run is reported, with every run's figure beside it."""
    runs: dict = {"--in-memory": [], "--stream": []}
    for k in range(args.repeats):
        for mode in runs:
            name = f"throughput{mode}-{args.subset}-r{k}"
            if name not in cells:
                summary, peak = run_train(["--data", args.cifar, "--out", work / name, "--model", args.cifar_model,
                                           "--scheme", "etc", "--key", key_file, "--block-size", "4", "--epochs",
                                           "1", "--batch-size", "128", "--subset", args.subset, "--test-subset",
                                           "200", "--augment", "crop-flip", mode], env)
                save_cell(cells_path, cells, name, {"images_per_s": summary["images_per_s"], "peak_mb": peak,
                                                    "streaming": summary["streaming"]})
            runs[mode].append(cells[name])
    rows = [{"mode": mode.lstrip("-"), "images_per_s": max(c["images_per_s"] for c in cs),
             "runs": " / ".join(f"{c['images_per_s']:.0f}" for c in cs), "peak_mb": max(c["peak_mb"] for c in cs)}
            for mode, cs in runs.items()]
    for r in rows:
        r["ratio"] = r["images_per_s"] / rows[0]["images_per_s"]
    print(f"\nstreaming / in-RAM throughput: {rows[1]['ratio']:.2f} (target >= 0.8)")
    return rows


def memory(args, env, cells, cells_path, key_file, work: Path) -> list:
    rows = []
    for n in args.sizes:
        tree = make_tree(args.trees / f"n{n}", n)
        modes = ["auto", "--stream"] + (["--in-memory"] if n * 224 * 224 * 3 < args.ram_limit_gb * 2 ** 30 else [])
        for mode in modes:
            name = f"memory-{n}-{mode}"
            if mode == "--stream" and cells.get(f"memory-{n}-auto", {}).get("streaming"):
                continue  # auto already streamed this size
            if name not in cells:
                flags = [] if mode == "auto" else [mode]
                summary, peak = run_train(["--data", tree, "--out", work / name, "--model", "vit_tiny_patch16_224",
                                           "--scheme", "etc", "--key", key_file, "--block-size", "16",
                                           "--max-steps", "8", "--batch-size", "16", "--test-subset", "60", *flags],
                                          env)
                save_cell(cells_path, cells, name, {"peak_mb": peak, "streaming": summary["streaming"],
                                                    "decoded_mb": n * 224 * 224 * 3 / 2 ** 20})
            c = cells[name]
            rows.append({"images": n, "mode": mode.lstrip("-"), "chosen": "stream" if c["streaming"] else "RAM",
                         "decoded_mb": c["decoded_mb"], "peak_mb": c["peak_mb"]})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cifar", type=Path, default=SHARED)
    ap.add_argument("--cifar-model", default="vit_pico_patch4_32")
    ap.add_argument("--subset", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="*", default=[600, 3000])
    ap.add_argument("--ram-limit-gb", type=float, default=4.0, help="forced in-RAM runs only below this")
    ap.add_argument("--trees", type=Path, default=Path(tempfile.gettempdir()) / "patchcrypt-streaming-trees")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("results/streaming"))
    args = ap.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PATCHCRYPT_CACHE": str(args.out / "cache")}
    cells_path = args.out / "cells.json"
    cells = load_cells(cells_path)
    work = args.out / "runs"
    key_file = args.out / "bench.key"
    if not key_file.exists():
        args.out.mkdir(parents=True, exist_ok=True)
        Key.generate().save(key_file)
    md = []
    rows_t = []
    if not args.skip_throughput:
        if not (args.cifar / "train").is_dir():
            print(f"{args.cifar}: CIFAR-10 tree not found (--cifar DIR)", file=sys.stderr)
            return 2
        rows_t = throughput(args, env, cells, cells_path, key_file, work)
        md.append(markdown_table(rows_t, ["mode", "images_per_s", "ratio", "runs", "peak_mb"],
                                 ["data", "train images/s (best)", "vs in-RAM", "every run", "peak RSS (MB)"]))
    rows_m = memory(args, env, cells, cells_path, key_file, work)
    md.append(markdown_table(rows_m, ["images", "mode", "chosen", "decoded_mb", "peak_mb"],
                             ["images (224x224)", "flag", "data in", "decoded set (MB)", "peak RSS (MB)"]))
    text = "\n\n".join(md)
    print(text)
    write_results(args.out, "streaming", {k: str(v) for k, v in vars(args).items()}, rows_t + rows_m, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
