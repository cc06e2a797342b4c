"""End-to-end file throughput of 'patchcrypt encrypt' / 'decrypt' on the CIFAR-10 test tree (10,000 JPEG files).

    .venv/bin/python benchmarks/files_speed.py              # block-pixel and etc, PNG and JPEG output
    .venv/bin/python benchmarks/files_speed.py --repeats 3  # best of three per cell

Each cell reads every file, decodes it, encrypts, encodes (PNG, or JPEG Q=90 for EtC) and writes the tree
with its manifest, exactly as the CLI does. The `plain` scheme (same pipeline, no encryption) is measured
in the same run as the baseline; the ratio shows what encryption adds. Target: at least 2,000 files/s.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

from patchcrypt import Key  # noqa: E402
from patchcrypt.files import decrypt_tree, encrypt_tree  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cifar10-jpeg"
CELLS = [("plain", "png"), ("block-pixel", "png"), ("etc", "png"), ("plain", "jpeg"), ("etc", "jpeg")]
TARGET = 2000.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED / "test")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("results/files_speed"))
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"{args.data}: not found", file=sys.stderr)
        return 2
    key = Key.generate()
    for f in args.data.rglob("*"):  # warm the page cache so the first cell is not charged for the disk
        if f.is_file():
            f.read_bytes()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for scheme, fmt in CELLS:
            enc_s = dec_s = float("inf")
            n = 0
            for _ in range(args.repeats):
                enc, dec = tmp / "enc", tmp / "dec"
                t0 = time.perf_counter()
                n = encrypt_tree(args.data, enc, key, scheme, 4 if fmt == "png" else 16, fmt, 90, None, None,
                                 False, False, True)["file_count"]
                enc_s = min(enc_s, time.perf_counter() - t0)
                t0 = time.perf_counter()
                decrypt_tree(enc, dec, key, None, True)
                dec_s = min(dec_s, time.perf_counter() - t0)
                shutil.rmtree(enc)
                shutil.rmtree(dec)
            row = {"scheme": scheme, "format": fmt, "files": n, "encrypt_files_per_s": n / enc_s,
                   "decrypt_files_per_s": n / dec_s}
            rows.append(row)
            print(f"  {scheme:<12} {fmt:<5} encrypt {row['encrypt_files_per_s']:7.0f} files/s   decrypt "
                  f"{row['decrypt_files_per_s']:7.0f} files/s", flush=True)
    for r in rows:
        base = next(b for b in rows if b["scheme"] == "plain" and b["format"] == r["format"])
        r["encrypt_vs_plain"] = r["encrypt_files_per_s"] / base["encrypt_files_per_s"]
        r["meets_target"] = bool(r["encrypt_files_per_s"] >= TARGET and r["decrypt_files_per_s"] >= TARGET)
    md = (f"{rows[0]['files']:,} CIFAR-10 JPEG files (32×32) read, decoded, encrypted, encoded and written as a tree "
          f"with its manifest; 2 cores; best of {args.repeats}. Target ≥ {TARGET:,.0f} files/s.\n\n"
          + markdown_table([{**r, "encrypt_files_per_s": f"{r['encrypt_files_per_s']:,.0f}",
                             "decrypt_files_per_s": f"{r['decrypt_files_per_s']:,.0f}",
                             "encrypt_vs_plain": f"{r['encrypt_vs_plain']:.2f}",
                             "meets_target": "yes" if r["meets_target"] else "no"} for r in rows],
                           ["scheme", "format", "encrypt_files_per_s", "decrypt_files_per_s", "encrypt_vs_plain",
                            "meets_target"],
                           ["scheme", "output", "encrypt files/s", "decrypt files/s", "encrypt vs plain",
                            "target met"]))
    print(md)
    write_results(args.out, "files_speed", {"data": str(args.data), "repeats": args.repeats}, rows, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
