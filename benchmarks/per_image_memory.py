"""Peak memory of 'patchcrypt encrypt' and 'decrypt' with per-image keys against one shared key.

    .venv/bin/python benchmarks/per_image_memory.py                 # 2,000 images of 224×224
    .venv/bin/python benchmarks/per_image_memory.py --n 5000

Each run is a fresh subprocess (OMP_NUM_THREADS=1) that encrypts, then decrypts, a generated tree of
224×224 RGB PNG files (photo crops) through the CLI's own functions and reports its peak resident memory
(``ru_maxrss``). With a per-image key every image has its own compiled program as large as the image, so
the per-image run is compared with the shared-key run of the same tree. Target: per-image peak ≤ 1.5× the
shared-key peak.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

TARGET = 1.5

_CHILD = """
import json, resource, sys, time
from pathlib import Path
from patchcrypt import Key
from patchcrypt.files import decrypt_tree, encrypt_tree
src, work, per_image = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1"
key = Key.generate()
t0 = time.perf_counter()
encrypt_tree(src, work / "enc", key, "block-pixel", 16, per_image=per_image)
t1 = time.perf_counter()
enc_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
decrypt_tree(work / "enc", work / "dec", key)
t2 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"encrypt_peak_mb": enc_peak / 1024, "peak_mb": peak / 1024,
                  "encrypt_s": t1 - t0, "decrypt_s": t2 - t1}))
"""


def make_tree(root: Path, n: int, size: int) -> None:
    """``n`` distinct size×size RGB PNG files: crops of scikit-image photos at shifting offsets."""
    from skimage import data

    from patchcrypt.codec import write_image

    photos = [data.astronaut(), data.chelsea(), data.coffee()]
    (root / "a").mkdir(parents=True)
    for i in range(n):
        p = photos[i % len(photos)]
        y = (7 * i) % (p.shape[0] - size)
        x = (13 * i) % (p.shape[1] - size)
        write_image(root / "a" / f"{i:05d}.png", np.ascontiguousarray(p[y:y + size, x:x + size]))


def measure(src: Path, per_image: bool, env_src: str) -> dict:
    with tempfile.TemporaryDirectory() as work:
        out = subprocess.run([sys.executable, "-c", _CHILD, str(src), work, "1" if per_image else "0"],
                             capture_output=True, text=True, env={"PYTHONPATH": env_src, "OMP_NUM_THREADS": "1",
                                                                  "PATH": "/usr/bin:/bin"})
    if out.returncode != 0:
        raise SystemExit(out.stderr.strip().splitlines()[-1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="number of images")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--src", default=str(Path(__file__).resolve().parents[1] / "src"),
                    help="patchcrypt source folder to measure (e.g. an older checkout's src)")
    ap.add_argument("--out", type=Path, default=Path("results/per_image_memory"))
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "plain"
        make_tree(src, args.n, args.size)
        for per_image in (False, True):
            r = measure(src, per_image, args.src)
            rows.append({"keys": "per image" if per_image else "shared", **r})
            print(f"  {rows[-1]['keys']:<10} peak {r['peak_mb']:7.0f} MB (encrypt {r['encrypt_peak_mb']:.0f} MB)"
                  f"  encrypt {r['encrypt_s']:.1f} s  decrypt {r['decrypt_s']:.1f} s", flush=True)
    ratio = rows[1]["peak_mb"] / rows[0]["peak_mb"]
    for r in rows:
        r["vs_shared"] = r["peak_mb"] / rows[0]["peak_mb"]
    md = (f"{args.n:,} RGB PNG files of {args.size}×{args.size}, block-pixel M=16, encrypted then decrypted in one "
          f"process; peak resident memory (ru_maxrss). Target: per-image ≤ {TARGET}× shared. "
          f"Measured: {ratio:.2f}×.\n\n"
          + markdown_table([{**r, "peak_mb": f"{r['peak_mb']:,.0f}", "encrypt_peak_mb": f"{r['encrypt_peak_mb']:,.0f}",
                             "vs_shared": f"{r['vs_shared']:.2f}", "encrypt_s": f"{r['encrypt_s']:.1f}",
                             "decrypt_s": f"{r['decrypt_s']:.1f}"} for r in rows],
                           ["keys", "encrypt_peak_mb", "peak_mb", "vs_shared", "encrypt_s", "decrypt_s"],
                           ["keys", "encrypt peak MB", "peak MB", "vs shared", "encrypt s", "decrypt s"]))
    print(md)
    write_results(args.out, "per_image_memory", {"n": args.n, "size": args.size}, rows, md)
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
