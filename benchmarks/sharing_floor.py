"""The many-image attack's sharing test (``attacks/many/statistics.py``) on real images: its two figures for
every class of ``examples/value_schemes.py`` under one key, and for per-image designs, at 30, 100 and 300
CIFAR-10 test images. It shows why the test decides on 100 images, not fewer (``SHARING_MIN_IMAGES``).

    PYTHONPATH=src .venv/bin/python benchmarks/sharing_floor.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "examples")]

import value_schemes  # noqa: E402

from patchcrypt import Key  # noqa: E402
from patchcrypt.attacks.images import load_folder  # noqa: E402
from patchcrypt.attacks.many.statistics import SHARING_MIN_EQUAL_R, SHARING_MIN_R, sharing  # noqa: E402
from patchcrypt.ciphers import create_cipher  # noqa: E402

USER = ("XorBlocks", "XorBlocksRot", "XorImage", "AddShuffle", "AddBlocksRot", "SubstBlocksRot", "SubstImage")
PER_IMAGE = (("etc", 4), ("etc-bs-rf-np", 4), ("patch-shuffle", 4), ("etc-nested", 8))


def main() -> None:
    data = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg"
    print(f"cut: r < {SHARING_MIN_R} and equal_r < {SHARING_MIN_EQUAL_R} reads as nothing shared")
    print("| design | keys | N | r | equal_r |\n|---|---|---|---|---|")
    for n in (30, 100, 300):
        x = load_folder(data, n, None, "test", 0)      # N test images drawn (seeded) for this N
        for name in USER:
            for k, key in enumerate((bytes(range(32)), bytes([1] * 32))):
                s = sharing(getattr(value_schemes, name)(key, block_size=4).encrypt(x), 4, seed=k)
                print(f"| {name} (key {k}) | one | {n} | {s['r']:.3f} | {s['equal_r']:.3f} |")
        for name, m in PER_IMAGE:
            c = create_cipher(name, Key.from_bytes(bytes(range(32))), block_size=m, per_image=True)
            s = sharing(c.encrypt(x, c.new_nonces(len(x))), m)
            print(f"| {name} | per image | {n} | {s['r']:.3f} | {s['equal_r']:.3f} |")


if __name__ == "__main__":
    main()
