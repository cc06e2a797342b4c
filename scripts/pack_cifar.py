"""Pack the CIFAR-10 JPEG tree (train/ and test/, one folder per class) into one file for a GPU machine.

    PYTHONPATH=src python3 scripts/pack_cifar.py                       # ../shared/datasets/cifar10-jpeg
    PYTHONPATH=src python3 scripts/pack_cifar.py --src TREE --out data/cifar10-pack.npz
    PYTHONPATH=src python3 scripts/pack_cifar.py --check               # decode the pack, compare to the tree

The file (git-ignored) keeps each JPEG's bytes unchanged; ``benchmarks/gpu_accuracy.py`` decodes it once
with Pillow (``patchcrypt.data.read_pack``). Nothing is re-encoded, so accuracies match the tree's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from patchcrypt.data import load_dataset, read_pack, write_pack  # noqa: E402
from patchcrypt.errors import PatchcryptError  # noqa: E402

DEFAULT_SRC = REPO.parent / "shared" / "datasets" / "cifar10-jpeg"
DEFAULT_OUT = REPO / "data" / "cifar10-pack.npz"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC, help="tree with train/ and test/ class folders")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true",
                    help="also decode the pack and compare every image and label with load_dataset on the tree")
    args = ap.parse_args(argv)
    try:
        t0 = time.perf_counter()
        info = write_pack(args.src, args.out)
        splits = ", ".join(f"{k} {v:,}" for k, v in info.items() if k not in ("images", "bytes"))
        print(f"{args.out}: {info['images']:,} images ({splits}), {info['bytes'] / 2**20:.1f} MiB, "
              f"{time.perf_counter() - t0:.1f} s")
        if args.check:
            t0 = time.perf_counter()
            packed = read_pack(args.out)
            print(f"decoded in {time.perf_counter() - t0:.1f} s")
            for name, ds in packed.items():
                ref = load_dataset(args.src, name)
                same = (ds.images.shape == ref.images.shape and (ds.images == ref.images).all()
                        and (ds.labels == ref.labels).all() and ds.classes == ref.classes)
                print(f"{name}: {len(ds):,} images {'identical to' if same else 'DIFFERENT from'} the tree's")
                if not same:
                    return 1
    except PatchcryptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
