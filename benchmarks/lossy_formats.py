"""Which schemes survive JPEG: decrypted PSNR after storing the ciphertext as JPEG, beside plain JPEG.

    .venv/bin/python benchmarks/lossy_formats.py                     # every registered scheme
    .venv/bin/python benchmarks/lossy_formats.py --scheme block-pixel

Six scikit-image photos at 224x224 are encrypted under one key, stored as JPEG (quality 90, the default of
``patchcrypt encrypt``) at 4:2:0 and 4:2:2 with M=16 and at 4:4:4 with M=8, decoded as ``patchcrypt decrypt``
decodes them, decrypted and compared with the originals (mean PSNR); the same photos stored as plain JPEG
are the baseline. Schemes whose steps keep blocks whole (``SchemeSpec.survives_lossy``) stay within a dB of
plain JPEG; the others are ruined. The last lines are the ``LOSSY_PSNR`` table of
``src/patchcrypt/ciphers/lossy.py``, which ``encrypt --format jpeg`` quotes when it refuses a scheme.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

from patchcrypt import Key  # noqa: E402
from patchcrypt.ciphers import get_scheme, list_ciphers  # noqa: E402
from patchcrypt.ciphers.lossy import MEASURED_QUALITY, block_size_measured, decrypt_psnr_after_jpeg  # noqa: E402
from patchcrypt.data.samples import sample_photos  # noqa: E402

SUBSAMPLINGS = ("420", "422", "444")
KEY = bytes(range(32))  # a fixed key (not secret), so that the table reproduces to the last digit


def measure(schemes, images, key: Key) -> list:
    rows = []
    for name in schemes:
        spec = get_scheme(name)
        for sub in SUBSAMPLINGS:
            m = spec.resolve_block_size(block_size_measured(sub), substitute=True)
            dec, plain = decrypt_psnr_after_jpeg(name, images, key, m, MEASURED_QUALITY, sub)
            rows.append({"scheme": name, "subsampling": sub, "block_size": m, "survives_lossy": spec.survives_lossy,
                         "psnr_decrypted": round(dec, 1), "psnr_plain_jpeg": round(plain, 1),
                         "delta_db": round(dec - plain, 1) + 0.0})
            print(f"{name:<16} {sub} M={m:<3} decrypted {dec:5.1f} dB  plain JPEG {plain:5.1f} dB", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scheme", action="append", help="only this scheme (repeatable; default: every one, "
                    "single steps included)")
    ap.add_argument("--out", type=Path, default=Path("results/lossy_formats"))
    args = ap.parse_args(argv)
    images = list(sample_photos(224))
    rows = measure(args.scheme or list_ciphers(include_steps=True), images, Key.from_bytes(KEY))
    cols = ["scheme", "subsampling", "block_size", "survives_lossy", "psnr_decrypted", "psnr_plain_jpeg", "delta_db"]
    table = markdown_table(rows, cols)
    print("\n" + table + "\n\nLOSSY_PSNR = {")
    for r in rows:
        if not r["survives_lossy"]:
            print(f'    ("{r["scheme"]}", "{r["subsampling"]}"): ({r["psnr_decrypted"]}, {r["psnr_plain_jpeg"]}),')
    print("}")
    write_results(args.out, "lossy_formats", {"photos": len(images), "size": 224, "quality": MEASURED_QUALITY},
                  rows, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
