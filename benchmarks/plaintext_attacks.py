"""Known and chosen plaintext: pairs the etc KPA needs (value solver vs block matching), crafted images per scheme.

    .venv/bin/python benchmarks/plaintext_attacks.py

KPA on etc: key share recovered and held-out decryptions against the number of known pairs, for the value
solver (every position matched on its values across pairs) and the block-matching solver; at 32×32 (M = 4,
CIFAR-10 test images: pairs from one half, 100 held-out images from the other) and 224×224 (M = 16, scikit-
image photos: pairs from the first four, the last two held out). CPA: crafted images needed per scheme and
geometry, key share, exact decryptions, and the per-image-key control. Writes OUT/results.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

from patchcrypt import Key  # noqa: E402
from patchcrypt.attacks import run_attack  # noqa: E402
from patchcrypt.attacks.kpa import kpa_attack  # noqa: E402
from patchcrypt.ciphers import create_cipher, list_ciphers  # noqa: E402
from patchcrypt.data import load_dataset, sample_photos  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cifar10-jpeg"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--out", type=Path, default=Path("results/plaintext_attacks"))
    args = ap.parse_args(argv)
    cifar = load_dataset(args.data, "test").subset(200).images
    photos = sample_photos(224)
    key = Key.generate()
    geos = {"32x32, M=4": (cifar[100:], cifar[:100], 4, (1, 2, 4, 8)),
            "224x224, M=16": (photos[:4], photos[4:], 16, (1, 2, 4))}
    kpa_rows = []
    for geo, (known, held, m, counts) in geos.items():
        cipher = create_cipher("etc", key, block_size=m)
        for solver in ("generic", "blocks"):
            for k in counts:
                res = kpa_attack(known[:k], cipher.encrypt(known[:k]), held, cipher.encrypt(held), "etc", m,
                                 solver=solver)
                met = res.metrics()
                kpa_rows.append({"geometry": geo, "solver": solver, "pairs": k,
                                 "key_recovered": met["determined_fraction"],
                                 "exact_decryptions": met["exact_images"], "ssim": met["ssim"],
                                 "seconds": met["seconds"]})
                print(kpa_rows[-1], flush=True)
    cpa_rows = []
    for geo, (images, m) in {"32x32, M=4": (cifar[:20], 4), "224x224, M=16": (photos, 16)}.items():
        for scheme in list_ciphers():
            if scheme in ("plain", "etc-gray"):
                continue
            row = {"geometry": geo, "scheme": scheme}
            for per_image in (False, True):
                res = run_attack("cpa", scheme, m, images, key=key, per_image=per_image)
                met = res.metrics()
                tag = "per_image_" if per_image else ""
                row.update({tag + "queries": met["queries"], tag + "key_map": met["key_map_fraction"],
                            tag + "exact_decryptions": met["exact_images"]})
                row["plan"] = res.extra["plan"] if not per_image else row["plan"]
            cpa_rows.append(row)
            print(row, flush=True)
    md = ("KPA on etc, pairs needed (value solver = before, block matching = after):\n\n"
          + markdown_table(kpa_rows, ["geometry", "solver", "pairs", "key_recovered", "exact_decryptions", "ssim",
                                      "seconds"],
                           ["geometry", "solver", "pairs", "key share", "exact decryptions", "SSIM", "s"])
          + "\n\nChosen plaintext, one key (and the per-image-key control):\n\n"
          + markdown_table(cpa_rows, ["geometry", "scheme", "plan", "queries", "key_map", "exact_decryptions",
                                      "per_image_key_map", "per_image_exact_decryptions"],
                           ["geometry", "scheme", "crafting", "crafted images", "key share", "exact decryptions",
                            "per-image: key share", "per-image: exact"]))
    print(md)
    write_results(args.out, "plaintext_attacks", {"data": str(args.data)}, kpa_rows + cpa_rows, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
