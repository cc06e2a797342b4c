"""Peak memory of `patchcrypt encrypt` and `decrypt` on one large image, per scheme, in bytes per pixel.

    .venv/bin/python benchmarks/memory_per_pixel.py                        # one 8000x4992 PNG, M = 16
    .venv/bin/python benchmarks/memory_per_pixel.py --size 4992x8000 --schemes etc block-pixel

Every cell is a fresh `python -m patchcrypt ...` process measured with `/usr/bin/time -v` (maximum resident
set size; where that tool is missing, ``ru_maxrss`` of the child read by a wrapper process). The image is a
smooth gradient (a small PNG file, like a photo's), so decoding costs what a real photo's does. Cells are
saved as they finish (``--out``/cells.json) and skipped when the script is run again. Target: 35 bytes per
pixel, i.e. one 40 MP image under 1.5 GB.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

from patchcrypt import Key  # noqa: E402
from patchcrypt.codec import encode_png  # noqa: E402

TARGET = 35.0  # bytes per pixel
SCHEMES = ["etc", "block-pixel", "le", "ele", "pe", "etc-gray"]
_WRAPPER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print('Maximum resident set size (kbytes):', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
            "file=sys.stderr); sys.exit(r.returncode)")


def peak_kib(cmd, env=None) -> int:
    """Run ``cmd`` (in environment ``env``, else this one); return its peak RSS in KiB (raises if it fails)."""
    full = ["/usr/bin/time", "-v", *cmd] if Path("/usr/bin/time").exists() else [sys.executable, "-c", _WRAPPER, *cmd]
    done = subprocess.run([str(c) for c in full], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed")
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))


def gradient(h: int, w: int) -> np.ndarray:
    y = (np.arange(h)[:, None] * 255 // h).astype(np.uint8)
    x = (np.arange(w)[None, :] * 255 // w).astype(np.uint8)
    return np.ascontiguousarray(np.stack(np.broadcast_arrays(y, x, (x // 2 + y // 2).astype(np.uint8)), -1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="4992x8000", help="HxW of the image (default 4992x8000, 39.9 MP)")
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--schemes", nargs="+", default=SCHEMES)
    ap.add_argument("--out", type=Path, default=Path("results/memory_per_pixel"))
    args = ap.parse_args(argv)
    h, w = (int(v) for v in args.size.lower().split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    cells_path = args.out / "cells.json"
    cells = json.loads(cells_path.read_text()) if cells_path.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "src").mkdir()
        (tmp / "src" / "img.png").write_bytes(encode_png(gradient(h, w)))
        Key.generate().save(tmp / "k.key")
        base = [sys.executable, "-m", "patchcrypt"]
        for scheme in args.schemes:
            cell = f"{scheme} {h}x{w} M={args.block_size}"
            if cell in cells:
                continue
            m = 8 if scheme == "etc-gray" else args.block_size
            enc, dec = tmp / f"enc-{scheme}", tmp / f"dec-{scheme}"
            e = peak_kib([*base, "encrypt", tmp / "src", enc, "-k", tmp / "k.key", "-s", scheme, "-m", str(m)])
            d = peak_kib([*base, "decrypt", enc, dec, "-k", tmp / "k.key"])
            shutil.rmtree(enc)
            shutil.rmtree(dec)
            cells[cell] = {"scheme": scheme, "M": m, "size": f"{w}x{h}", "encrypt_mb": e / 1024,
                           "decrypt_mb": d / 1024, "encrypt_b_per_px": e * 1024 / (h * w),
                           "decrypt_b_per_px": d * 1024 / (h * w)}
            cells_path.write_text(json.dumps(cells, indent=1))
            c = cells[cell]
            print(f"{scheme:12s} encrypt {c['encrypt_mb']:7.0f} MB ({c['encrypt_b_per_px']:5.1f} B/px)  "
                  f"decrypt {c['decrypt_mb']:7.0f} MB ({c['decrypt_b_per_px']:5.1f} B/px)", flush=True)
    rows = [dict(c, met="yes" if max(c["encrypt_b_per_px"], c["decrypt_b_per_px"]) <= TARGET else "NO")
            for c in cells.values() if c["scheme"] in args.schemes]
    md = markdown_table(rows, ["scheme", "M", "size", "encrypt_mb", "encrypt_b_per_px", "decrypt_mb",
                               "decrypt_b_per_px", "met"],
                        ["scheme", "M", "image", "encrypt peak MB", "B/pixel", "decrypt peak MB", "B/pixel",
                         f"<= {TARGET:g} B/px"])
    print(md)
    write_results(args.out, "memory_per_pixel", {"size": [h, w], "target_bytes_per_pixel": TARGET}, rows, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
