"""Costs users pay (issue 28): each row's figure before the change and now, measured in one run.

    .venv/bin/python benchmarks/costs.py                   # before = b936564, the commit before issue 28
    .venv/bin/python benchmarks/costs.py --before HEAD~3 --rows keyed

"Before" is the source tree of ``--before`` (``git archive``, into a temporary folder); "now" is this
checkout's ``src``. Every measurement runs in a fresh subprocess on each tree, one after the other, with the
same code, so the two figures of a row are comparable (on a shared machine, compare ratios, not seconds).

Rows:

* keyed: parameters + buffers of ``vit_tiny_patch16_224`` keyed for ``etc`` at M = 16 against the plain model,
  and the largest |Δlogit| of the keyed model on an encrypted photo against the plain model on the plain one;
* jigsaw: CPU seconds of ``jigsaw_attack`` on one 224×224 ``etc`` photo at M = 16 (96 states, BLAS threads
  as the library leaves them), and a sha256 of the reconstruction (the same on both trees means the same
  result);
* perimage: per-image ``etc`` encryption of a batch of 128 32×32 images (``Encrypt(..., per_image=True)``'s
  cipher, torch NCHW) as a share of one ``vit_pico_patch4_32`` training step on the same batch (the median of
  15 of each, interleaved), and a sha256 of the ciphertexts under fixed nonces (the same on both trees means
  the same encryption); perimage224: the same with ``vit_tiny_patch16_224`` on a batch of 16 224×224 images at
  M = 16 (the median of 7);
* speed (before = c0fbc4a): fixed-key numpy encryption of a batch of 224×224 images (M = 16) by etc,
  block-pixel, pe, le and ele as a ratio to ``np.copyto`` of the same batch in the same process (the
  measurement of ``encrypt_speed.py``); the trees alternate ``--repeats`` times, each keeping its best ratio
  per scheme, and the load average before and after each run is reported (``--batch``);
* firstcall: seconds of a fresh process's first ``le`` and then ``etc`` encryption of 8 images of 224×224
  (M = 16) and of the next one, before and now; now runs twice over an empty ``NUMBA_CACHE_DIR``, so the
  first run compiles the kernels (``ciphers/kernels.py``) and the second loads them from the disk cache;
* elemem (before = c0fbc4a): peak resident memory of ``patchcrypt encrypt`` and ``decrypt`` of one
  ``--size`` gradient PNG (default 4992×8000, 39.9 MP) with ``ele`` at M = 16, each a fresh process measured
  as ``memory_per_pixel.py`` does, and a sha256 of the encrypted file (the same on both trees means the same
  ciphertext); the note adds whether the decrypted image equals the original and each process's wall
  seconds (a shared machine's: compare the two trees, not the seconds).

    PYTHONPATH=src .venv/bin/python benchmarks/costs.py --rows speed --repeats 3
    PYTHONPATH=src .venv/bin/python benchmarks/costs.py --rows firstcall --before main
    PYTHONPATH=src .venv/bin/python benchmarks/costs.py --rows elemem                # two ~40 MP images, heavy
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "b936564"
# Rows of the second part of issue 28 (ele's key material, the gathers): before = the commit before that work.
ROW_BEFORE = {"speed": "c0fbc4a", "elemem": "c0fbc4a"}

_KEYED = """
import json, torch
from patchcrypt import Key
from patchcrypt.ciphers import create_cipher
from patchcrypt.data.samples import sample_photos
from patchcrypt.models import create_model
from patchcrypt.models.keyed import key_model
size = lambda m: sum(p.numel() for p in m.parameters()) + sum(b.numel() for b in m.buffers())
model = create_model("vit_tiny_patch16_224", seed=0).eval()
x = torch.from_numpy(sample_photos(224)[1:2]).permute(0, 3, 1, 2).contiguous()
with torch.no_grad():
    ref = model(x)
plain = size(model)
key = Key.from_bytes(bytes(range(32)))
key_model(model, key, "etc", 16)
enc = create_cipher("etc", key, block_size=16).encrypt(x)
with torch.no_grad():
    diff = float((model(enc) - ref).abs().max())
print(json.dumps({"plain": plain, "keyed": size(model), "max_dlogit": diff, "embed": model.embed}))
"""

_JIGSAW = """
import hashlib, json, time
from patchcrypt import Key
from patchcrypt.ciphers import create_cipher
from patchcrypt.data.samples import sample_photos
from patchcrypt.attacks.jigsaw import jigsaw_attack
photo = sample_photos(224)[1:2]
enc = create_cipher("etc", Key.from_bytes(bytes(range(32))), block_size=16).encrypt(photo)
t = time.process_time()
r = jigsaw_attack(photo, enc, "etc", 16)
print(json.dumps({"cpu_s": time.process_time() - t, "ssim": float(r.metrics()["ssim"]),
                  "reconstruction": hashlib.sha256(r.reconstructed.tobytes()).hexdigest()[:16]}))
"""

_PERIMAGE = """
import hashlib, json, sys, time, torch
from patchcrypt import Key
from patchcrypt.ciphers import create_cipher
from patchcrypt.models import create_model
name, size, m, n, rounds = sys.argv[1], *(int(v) for v in sys.argv[2:6])
torch.manual_seed(0)
model = create_model(name, num_classes=10, seed=0)
opt = torch.optim.AdamW(model.parameters(), 1e-3)
x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8)
y = torch.randint(0, 10, (n,))
cipher = create_cipher("etc", Key.from_bytes(bytes(range(32))), block_size=m, per_image=True)
fixed = [bytes([i]) * 16 for i in range(n)]
digest = hashlib.sha256(cipher.encrypt(x, fixed).numpy().tobytes()).hexdigest()[:16]
def step():
    loss = torch.nn.functional.cross_entropy(model(x.float() / 255), y)
    opt.zero_grad(); loss.backward(); opt.step()
enc, stp = [], []
for _ in range(rounds):
    nonces = cipher.new_nonces(n)
    t = time.perf_counter(); cipher.encrypt(x, nonces); enc.append(time.perf_counter() - t)
    t = time.perf_counter(); step(); stp.append(time.perf_counter() - t)
med = lambda v: sorted(v)[len(v) // 2]
print(json.dumps({"enc_ms": 1e3 * med(enc), "step_ms": 1e3 * med(stp), "share": med(enc) / med(stp),
                  "ciphertexts": digest}))
"""

# (model, image size, block size, batch, rounds) of each per-image row
PERIMAGE = {"perimage": ("vit_pico_patch4_32", 32, 4, 128, 15), "perimage224": ("vit_tiny_patch16_224", 224, 16, 16, 7)}


_SPEED = """
import json, os, sys, time
import numpy as np
from patchcrypt import Key
from patchcrypt.ciphers import create_cipher
size, m, n, rounds = (int(v) for v in sys.argv[1:5])
schemes = sys.argv[5:]
x = np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
buf = np.empty_like(x)
ciphers = {s: create_cipher(s, Key.from_bytes(bytes(range(32))), block_size=m) for s in schemes}
work = {"memcpy": lambda: np.copyto(buf, x), **{s: (lambda c=c: c.encrypt(x)) for s, c in ciphers.items()}}
best = dict.fromkeys(work, float("inf"))
cpu = dict.fromkeys(work, float("inf"))
load = [os.getloadavg()[0]]
for _ in range(rounds):  # rounds of every scheme, memcpy among them: load changes hit all alike
    for name, fn in work.items():
        fn()
        for _ in range(3):
            t, c = time.perf_counter(), time.process_time()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
            cpu[name] = min(cpu[name], time.process_time() - c)
load.append(os.getloadavg()[0])
print(json.dumps({"ratio": {s: best["memcpy"] / best[s] for s in schemes},
                  "cpu_ratio": {s: cpu["memcpy"] / cpu[s] for s in schemes}, "memcpy_s": best["memcpy"],
                  "load": load}))
"""


_FIRST = """
import json, sys, time
import numpy as np
from patchcrypt import Key
from patchcrypt.ciphers import create_cipher
x = np.random.default_rng(0).integers(0, 256, (8, 224, 224, 3), dtype=np.uint8)
out = {}
for s in sys.argv[1:]:
    c = create_cipher(s, Key.from_bytes(bytes(range(32))), block_size=16)
    t = time.perf_counter(); c.encrypt(x); first = time.perf_counter() - t
    t = time.perf_counter(); c.encrypt(x); out[s] = [first, time.perf_counter() - t]
print(json.dumps(out))
"""


def before_tree(ref: str, into: Path) -> Path:
    """``src`` of commit ``ref`` unpacked under ``into``; returns the folder to put on PYTHONPATH."""
    archive = into / "before.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), ref, "src"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def child(code: str, src: Path, args=(), env=None) -> dict:
    """Run ``code`` in a fresh interpreter importing patchcrypt from ``src`` (``env`` added to its small
    environment); its last stdout line as JSON."""
    env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin", **(env or {})}
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=3600)
    if res.returncode:
        raise SystemExit(f"child failed on {src}:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def keyed_row(trees: dict, opts=None) -> dict:
    got = {name: child(_KEYED, src) for name, src in trees.items()}
    b, n = got["before"], got["now"]
    return {"cost": "keyed etc ViT-Ti at 224 (M = 16): parameters + buffers vs plain",
            "before": f"{b['keyed'] / 1e6:.1f}M vs {b['plain'] / 1e6:.1f}M: {b['keyed'] / b['plain']:.2f}×",
            "now": f"{n['keyed'] / 1e6:.2f}M vs {n['plain'] / 1e6:.2f}M: {n['keyed'] / n['plain']:.3f}×",
            "goal": "≤ 1.1×, logits within 1e-4",
            "note": f"max abs Δlogit {b['max_dlogit']:.1e} before, {n['max_dlogit']:.1e} now ({n['embed']} embedding)",
            "raw": got}


def jigsaw_row(trees: dict, opts=None) -> dict:
    got = {name: child(_JIGSAW, src) for name, src in trees.items()}
    b, n = got["before"], got["now"]
    same = "same reconstruction" if b["reconstruction"] == n["reconstruction"] else "DIFFERENT reconstruction"
    return {"cost": "jigsaw on one 224×224 etc photo, M = 16 (CPU s)", "before": f"{b['cpu_s']:.1f} s",
            "now": f"{n['cpu_s']:.1f} s ({b['cpu_s'] / n['cpu_s']:.0f}× less)", "goal": "≤ 10 s, same result",
            "note": f"{same}, SSIM {n['ssim']:.3f}", "raw": got}


def perimage_row(trees: dict, opts=None, row: str = "perimage") -> dict:
    model, size, m, batch, rounds = PERIMAGE[row]
    args = [model, str(size), str(m), str(batch), str(rounds)]
    got = {name: child(_PERIMAGE, src, args) for name, src in trees.items()}
    b, n = got["before"], got["now"]
    same = "same ciphertexts" if b["ciphertexts"] == n["ciphertexts"] else "DIFFERENT ciphertexts"
    return {"cost": f"per-image etc encryption, share of one {model.split('_patch')[0]} step ({size} px, M = {m}, "
                    f"batch {batch})",
            "before": f"{b['share']:.1%} ({b['enc_ms']:.0f} ms)",
            "now": f"{n['share']:.1%} ({n['enc_ms']:.1f} ms, {b['enc_ms'] / n['enc_ms']:.1f}× less)",
            "goal": "≤ 3%" if size == 32 else "≤ 1%",
            "note": f"{same}; step {b['step_ms']:.0f} ms before, {n['step_ms']:.0f} ms now; "
                    f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", "raw": got}


def perimage224_row(trees: dict, opts=None) -> dict:
    return perimage_row(trees, opts, "perimage224")


SPEED_SCHEMES = ["etc", "block-pixel", "pe", "le", "ele"]


def speed_row(trees: dict, opts) -> dict:
    """Fixed-key numpy encryption at 224 (M = 16) against np.copyto of the batch, in the same process; the two
    trees alternate ``opts.repeats`` times and each keeps its best ratio per scheme (the least disturbed)."""
    args = ["224", "16", str(opts.batch), "5", *SPEED_SCHEMES]
    runs = {name: [] for name in trees}
    for _ in range(opts.repeats):
        for name, src in trees.items():
            runs[name].append(child(_SPEED, src, args))
    best = {name: {s: max(r["ratio"][s] for r in got) for s in SPEED_SCHEMES} for name, got in runs.items()}
    cpu = {name: {s: max(r["cpu_ratio"][s] for r in got) for s in SPEED_SCHEMES} for name, got in runs.items()}
    load = [v for got in runs.values() for r in got for v in r["load"]]
    fmt = lambda b: ", ".join(f"{s} {b[s]:.3f}" for s in SPEED_SCHEMES)  # noqa: E731
    low = min(best["now"].values())
    return {"cost": f"fixed-key encryption at 224 vs memcpy (numpy, batch {opts.batch}, same process)",
            "before": fmt(best["before"]), "now": fmt(best["now"]), "goal": "every scheme ≥ 0.10",
            "note": (f"{'met' if low >= 0.10 else 'NOT met on this machine'}: lowest {low:.3f}. In CPU time "
                     f"(robust to other load) before: {fmt(cpu['before'])}; now: {fmt(cpu['now'])}. "
                     f"memcpy {min(r['memcpy_s'] for got in runs.values() for r in got) * 1e3:.2f} ms; "
                     f"load average {min(load):.1f}–{max(load):.1f} on {os.cpu_count()} cores"),
            "raw": runs, "best": best, "cpu": cpu}


def firstcall_row(trees: dict, opts=None) -> dict:
    """Seconds of a fresh process's first le and then etc encryption (8 images, 224×224, M = 16) and of the
    next one: before; now with numba's disk cache empty (import, then compile); now with it filled (load)."""
    schemes = ["le", "etc"]
    with tempfile.TemporaryDirectory() as cache:
        cold = child(_FIRST, trees["now"], schemes, {"NUMBA_CACHE_DIR": cache})
        warm = child(_FIRST, trees["now"], schemes, {"NUMBA_CACHE_DIR": cache})
    before = child(_FIRST, trees["before"], schemes)
    fmt = lambda r: "; ".join(f"{s} {r[s][0]:.2f} s, then {r[s][1] * 1e3:.1f} ms" for s in schemes)  # noqa: E731
    return {"cost": "first encryption in a fresh process, then the next (8 images 224×224, M = 16)",
            "before": fmt(before), "now": f"cache empty: {fmt(cold)}. Cache filled: {fmt(warm)}",
            "goal": "—", "note": (f"the first le call of the process imports numba and compiles or loads both "
                                 f"kernels' code for its types; load average {os.getloadavg()[0]:.1f} on "
                                 f"{os.cpu_count()} cores"),
            "raw": {"before": before, "cold": cold, "warm": warm}}


def elemem_row(trees: dict, opts) -> dict:
    """Peak RSS of `patchcrypt encrypt` and `decrypt` of one gradient PNG of ``opts.size`` with ele (M = 16),
    each a fresh process on each tree (memory_per_pixel.py's measurement)."""
    import numpy as np
    from memory_per_pixel import gradient, peak_kib

    from patchcrypt import Key
    from patchcrypt.codec import decode_image, encode_png

    h, w = (int(v) for v in opts.size.lower().split("x"))
    got = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "src").mkdir()
        (tmp / "src" / "img.png").write_bytes(encode_png(gradient(h, w)))
        Key.generate().save(tmp / "k.key")
        for name, src in trees.items():
            env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}
            enc, dec = tmp / f"enc-{name}", tmp / f"dec-{name}"
            t0 = time.perf_counter()
            e = peak_kib([sys.executable, "-m", "patchcrypt", "encrypt", tmp / "src", enc, "-k", tmp / "k.key",
                          "-s", "ele", "-m", "16"], env)
            t1 = time.perf_counter()
            d = peak_kib([sys.executable, "-m", "patchcrypt", "decrypt", enc, dec, "-k", tmp / "k.key"], env)
            got[name] = {"encrypt_mb": e / 1024, "decrypt_mb": d / 1024, "b_per_px": max(e, d) * 1024 / (h * w),
                         "encrypt_s": t1 - t0, "decrypt_s": time.perf_counter() - t1,
                         "same_image": np.array_equal(decode_image(next(dec.rglob("img.*")).read_bytes()),
                                                      gradient(h, w)),
                         "ciphertext": hashlib.sha256(next(enc.rglob("img.*")).read_bytes()).hexdigest()[:16]}
    b, n = got["before"], got["now"]
    # GB here as in memory_per_pixel.py's MB: 2^30 bytes
    cell = lambda g: (f"{g['encrypt_mb'] / 1024:.2f} GB encrypt, {g['decrypt_mb'] / 1024:.2f} GB decrypt "  # noqa: E731
                      f"({g['b_per_px']:.0f} B/px)")
    same = "same" if b["ciphertext"] == n["ciphertext"] else "DIFFERENT"
    return {"cost": f"ele encrypt of one {h * w / 1e6:.0f} MP image ({w}x{h}), peak memory", "before": cell(b),
            "now": cell(n), "goal": "≤ 1.5 GB, ≤ 35 B/px",
            "note": (f"{'met' if n['b_per_px'] <= 35 else 'NOT met'}; {same} ciphertext; decrypted image "
                     f"{'exact' if n['same_image'] else 'DIFFERENT'}; the key stream is "
                     f"{h * w * 3 * 16 / 2 ** 30:.2f} GB (16 B per value, 48 B/px); wall seconds encrypt/decrypt "
                     f"before {b['encrypt_s']:.0f}/{b['decrypt_s']:.0f}, now {n['encrypt_s']:.0f}/"
                     f"{n['decrypt_s']:.0f} (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"),
            "raw": got}


ROWS = {"keyed": keyed_row, "jigsaw": jigsaw_row, "perimage": perimage_row, "perimage224": perimage224_row,
        "speed": speed_row, "firstcall": firstcall_row, "elemem": elemem_row}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    own = f"{BEFORE} or, for {', '.join(ROW_BEFORE)}, {', '.join(set(ROW_BEFORE.values()))}"
    ap.add_argument("--before", help=f"commit whose src gives the 'before' figures (default: each row's own, {own})")
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--batch", type=int, default=32, help="speed: images per batch (default 32)")
    ap.add_argument("--repeats", type=int, default=3, help="speed: runs of each tree, alternating (default 3)")
    ap.add_argument("--size", default="4992x8000", help="elemem: HxW of the image (default 4992x8000, 39.9 MP)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "costs")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for r in args.rows:
            ref = args.before or ROW_BEFORE.get(r, BEFORE)
            unpacked = Path(tmp) / ref
            if not unpacked.is_dir():
                unpacked.mkdir()
                before_tree(ref, unpacked)
            trees = {"before": unpacked / "src", "now": ROOT / "src"}
            rows.append(dict(ROWS[r](trees, args), before_commit=ref))
    table = markdown_table(rows, ["cost", "before", "now", "goal", "note"])
    print(table)
    write_results(args.out, "costs", {"before": args.before, "rows": args.rows}, rows, table)


if __name__ == "__main__":
    main()
