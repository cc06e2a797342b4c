"""Ciphertext-only key recovery from many images under one key, victims and public images from other sources.

    .venv/bin/python benchmarks/many_image_attack.py                          # etc, block-pixel; every condition
    .venv/bin/python benchmarks/many_image_attack.py --conditions flowers224-m16 --ns 300
    .venv/bin/python benchmarks/many_image_attack.py --schemes all --conditions cifar32 --max-n 1000

Conditions (victims / public images, never the same data set):

* ``cifar32``: CIFAR-10 test images at 32x32, M = 4; public: flower photos (train split) shrunk to 32x32.
* ``flowers128-m8`` / ``flowers128-m16``: flower photos (test split) at their own 128x128, M = 8 or 16;
  public: CIFAR-10 training images (upsampled to 128 by the attack).
* ``flowers224-m16``: the same 128-px photos resized to 224x224 ("upsampled", bicubic), M = 16; public:
  CIFAR-10 training images.
* ``hymenoptera224-m16``: ant and bee photos of their own sizes (``val/``, 153) brought to 224x224 (shorter
  side resized, centre crop), M = 16; public: flower photos (train split) upsampled to 224.

Every cell runs ``patchcrypt attack many`` (the registry's runner, one fresh key per cell) and records the
figures of the attack vocabulary: exact_images (the attacker's chosen output), exact_images_global and
ssim_global (up to one whole-image rotation/flip, colour order and inversion), the rank of the true global
state among the attacker's candidates, key_map_fraction and the seconds taken. Per scheme and condition it
prints the fewest N at which every image is exact up to the global state, and the fewest N for the exact
key map. One row per scheme and condition with per-image keys (the control). Each cell is saved to
results.json as it finishes, so a cut-off run resumes.

``--inblock-rows R --before REF`` times instead the per-position stage of ``ele`` (one round of
:func:`patchcrypt.attacks.many.ele.per_position_map`, upper halves) on the first R block rows of the same N
ciphertexts, first with the ``src`` of commit REF, then with this checkout's, each in a fresh interpreter, one
after the other; it prints both times, the load average and whether the two maps are the same (of the first
round); ``--inblock-rounds 2`` times a second round too (``round2_seconds``), started from the first's answer
where the code can:

    .venv/bin/python benchmarks/many_image_attack.py --conditions flowers128-m8 --ns 30 --inblock-rows 1 \
        --before main --out results/many_ele_inblock
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

from patchcrypt import Key  # noqa: E402
from patchcrypt.attacks import run_attack  # noqa: E402
from patchcrypt.attacks.many import composite as gray_attack  # noqa: E402
from patchcrypt.attacks.many.chroma import chroma_blocks_right  # noqa: E402
from patchcrypt.attacks.scoring import GLOBAL_STATES, apply_state  # noqa: E402
from patchcrypt.ciphers import create_cipher, get_scheme  # noqa: E402
from patchcrypt.data import load_dataset  # noqa: E402
from patchcrypt.errors import PatchcryptError  # noqa: E402

NS = (10, 30, 100, 300, 1000)
HEADLINE = ("etc", "block-pixel")
ALL = ("block-pixel", "block-pixel-cs", "etc", "etc-gray", "le", "ele", "pe", "step-bs", "step-rf", "step-rf-shared",
       "step-np", "step-bf", "step-cs", "step-cs-shared", "step-ps", "step-ps-perblock")
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
# name: (victim set, victim size, block size, public set, label)
CONDITIONS = {
    "cifar32": ("cifar10-jpeg", 32, 4, "flowers5-128", "CIFAR-10 32x32, M=4; public: flowers shrunk to 32"),
    "flowers128-m8": ("flowers5-128", 128, 8, "cifar10-jpeg", "flower photos 128x128, M=8; public: CIFAR-10"),
    "flowers128-m16": ("flowers5-128", 128, 16, "cifar10-jpeg", "flower photos 128x128, M=16; public: CIFAR-10"),
    "flowers224-m16": ("flowers5-128", 224, 16, "cifar10-jpeg",
                       "flower photos 128 px upsampled to 224x224, M=16; public: CIFAR-10"),
    "hymenoptera224-m16": ("hymenoptera", 224, 16, "flowers5-128",
                           "ant and bee photos (val split, above 224 px) brought to 224x224, M=16; public: flower "
                           "photos 128 px upsampled to 224"),
}
# conditions whose victims are photos of their own sizes: shorter side resized, centre crop (attacks.images)
OWN_SIZES = {"hymenoptera224-m16": "val"}
CONTROL_N = 100


def resize(images: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if images.shape[1] == size:
        return images
    return np.stack([np.asarray(Image.fromarray(x).resize((size, size), Image.BICUBIC)) for x in images])


class _OwnSizes:
    """Photos of their own sizes, read at ``size`` (shorter side resized, centre crop) ``n`` at a time."""

    def __init__(self, root: Path, split: str, size: int):
        self.root, self.split, self.size = root, split, size

    def subset(self, n: int):
        from types import SimpleNamespace

        from patchcrypt.attacks.images import load_folder

        return SimpleNamespace(images=load_folder(self.root, n, self.size, self.split))


def _victim_source(root: Path, cond: str, size: int):
    return _OwnSizes(root, OWN_SIZES[cond], size) if cond in OWN_SIZES else load_dataset(root, "test")


def block_size(scheme: str, m: int) -> int:
    return max(m, 8) if scheme == "etc-gray" else m


def _cell(scheme: str, m: int, victims: np.ndarray, public: np.ndarray, per_image: bool,
          progress: bool = False) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    key = Key.generate()
    try:
        res = run_attack("many", scheme, m, victims, public, key=key, per_image=per_image, progress=progress)
    except PatchcryptError as exc:
        return {"not_applicable": str(exc)}
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    met = res.metrics()
    keep = ("exact_images", "ssim", "exact_images_global", "ssim_global", "psnr_global", "global_state_rank",
            "key_map_fraction", "method", "jigsaw_images")
    out = {**{k: met.get(k) for k in keep}, "seconds": seconds, "cpu_seconds": cpu_seconds,
           "load": os.getloadavg()[0]}
    info = res.extra      # the attack's own figures (its ManyImageResult.info)
    out.update({k: info[k] for k in ("rounds", "inblock_seconds", "lower_seconds") if k in info})
    if get_scheme(scheme).unit == "nibble" and res.candidates is not None:
        out["upper_halves_global"] = upper_halves_global(victims, res.candidates)
        out["lower_halves_global"] = lower_halves_global(victims, res.candidates)
    if get_scheme(scheme).composite and res.candidates is not None and victims.shape[-1] == 3:
        out["chroma_blocks_global"] = chroma_blocks_right(victims, res.candidates, m)
        out["chroma_method"] = met.get("chroma_method")
        if not per_image:   # the key holder's own decryptions (the 4:2:0 round trip is lossy for them too)
            own = create_cipher(scheme, key, block_size=m).decrypt(res.encrypted)
            out["as_key_holder_global"] = max(float(np.all(apply_state(res.candidates, s) == own, axis=(1, 2, 3))
                                                    .mean()) for s in GLOBAL_STATES)
    return out


def upper_halves_global(plain: np.ndarray, candidates: np.ndarray) -> float:
    """Share of values whose upper 4-bit half is right, under the best of the 96 whole-image states (what
    the many-image attack recovers of a 4-bit scheme)."""
    return max(float(((apply_state(candidates, s) >> 4) == (plain >> 4)).mean()) for s in GLOBAL_STATES)


def lower_halves_global(plain: np.ndarray, candidates: np.ndarray) -> float:
    """Share of values whose lower 4-bit half is right, under the whole-image state that puts the most upper
    halves right."""
    best = max(GLOBAL_STATES, key=lambda s: float(((apply_state(candidates, s) >> 4) == (plain >> 4)).mean()))
    return float(((apply_state(candidates, best) & 15) == (plain & 15)).mean())


_INBLOCK_CHILD = """
import inspect, json, sys, time
import numpy as np
from patchcrypt.attacks.many.ele import per_position_map
d = np.load(sys.argv[1])
warm = "previous" in inspect.signature(per_position_map).parameters
t0, c0 = time.perf_counter(), time.process_time()
dec = per_position_map(d["y"], d["cp_u"], d["cp_l"], int(d["m"]), lower_starts=0)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
np.savez(sys.argv[2], g=dec.g, k=dec.m)
out = {"seconds": wall, "cpu_seconds": cpu}
if int(sys.argv[3]) > 1:     # a second round on the same ciphertexts: from the first's answer where supported
    t0, c0 = time.perf_counter(), time.process_time()
    per_position_map(d["y"], d["cp_u"], d["cp_l"], int(d["m"]), lower_starts=0, **({"previous": dec} if warm else {}))
    out.update({"round2_seconds": time.perf_counter() - t0, "round2_cpu_seconds": time.process_time() - c0})
print(json.dumps(out))
"""


def inblock_timing(cond: str, n: int, rows: int, before: str, args) -> dict:
    """One round of ele's per-position stage on the first ``rows`` block rows of N ciphertexts of ``cond``,
    with the ``src`` of commit ``before`` and with this checkout's, in fresh interpreters one after the other."""
    from patchcrypt.attacks.many.ele import half_correlations

    vset, size, m, pset, _ = CONDITIONS[cond]
    victims = resize(_victim_source(args.data / vset, cond, size).subset(n).images, size)
    public = resize(load_dataset(args.data / pset, "train").subset(args.public).images, size)
    y = create_cipher("ele", Key.generate(), block_size=m).encrypt(victims)[:, :rows * m]
    cp_u, cp_l = half_correlations(public, m)
    root = Path(__file__).resolve().parents[1]
    out = {"scheme": "ele", "condition": cond, "n": n, "block_rows": rows, "positions": rows * (size // m),
           "before_commit": before}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "in.npz", y=y, cp_u=cp_u, cp_l=cp_l, m=m)
        trees = [("now", root / "src")]
        if before != "none":
            subprocess.run(["git", "-C", str(root), "archive", "-o", str(tmp / "before.tar"), before, "src"],
                           check=True)
            with tarfile.open(tmp / "before.tar") as tar:
                tar.extractall(tmp / "before", filter="data")
            trees.insert(0, ("before", tmp / "before" / "src"))
        for name, src in trees:
            load = os.getloadavg()[0]
            res = subprocess.run([sys.executable, "-c", _INBLOCK_CHILD, str(tmp / "in.npz"), str(tmp / name),
                                  str(args.inblock_rounds)],
                                 capture_output=True, text=True, env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})
            if res.returncode:
                raise SystemExit(f"{name} failed:\n{res.stderr[-2000:]}")
            got = json.loads(res.stdout.strip().splitlines()[-1])
            out.update({f"{name}_{k}": v for k, v in got.items()})
            out[f"{name}_load"] = [load, os.getloadavg()[0]]
        if before == "none":
            return out
        maps = [np.load(tmp / f"{name}.npz") for name in ("before", "now")]
        out["same_map"] = bool(all(np.array_equal(maps[0][k], maps[1][k]) for k in ("g", "k")))
        out["halves_differing"] = int(((maps[0]["g"] != maps[1]["g"]) | (maps[0]["k"] != maps[1]["k"])).sum())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="folder holding cifar10-jpeg/ and flowers5-128/")
    ap.add_argument("--schemes", default=",".join(HEADLINE), help="comma-separated, or 'all'")
    ap.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated: " + ", ".join(CONDITIONS))
    ap.add_argument("--ns", default=None, help="comma-separated N (default: 10, 30, ... up to --max-n)")
    ap.add_argument("--max-n", type=int, default=300)
    ap.add_argument("--public", type=int, default=2000, help="public images")
    ap.add_argument("--no-control", action="store_true", help="skip the per-image-key rows")
    ap.add_argument("--progress", action="store_true", help="the attack's progress lines on stderr")
    ap.add_argument("--out", type=Path, default=Path("results/many_image_attack"))
    ap.add_argument("--gray-chroma", choices=gray_attack.CHROMA_METHODS, default=gray_attack.CHROMA_DEFAULT,
                    help="etc-gray: place the chroma by the luma (default) or by the older chroma-only jigsaw")
    ap.add_argument("--inblock-rows", type=int, default=0,
                    help="time ele's per-position stage on this many block rows, before (--before) and now")
    ap.add_argument("--before", default="main", help="commit whose src gives the 'before' time (--inblock-rows); none: this checkout's only")
    ap.add_argument("--inblock-rounds", type=int, choices=(1, 2), default=1,
                    help="--inblock-rows: also time a second round (started from the first's answer where the "
                         "code can; the same reference correlations)")
    args = ap.parse_args(argv)
    if args.inblock_rows:
        args.out.mkdir(parents=True, exist_ok=True)
        rows = [inblock_timing(c, int(n), args.inblock_rows, args.before, args)
                for c in args.conditions.split(",") for n in (args.ns or "30").split(",")]
        for r in rows:
            print(json.dumps(r), flush=True)
        (args.out / "inblock.json").write_text(json.dumps(rows, indent=1))
        return 0
    gray_attack.CHROMA_DEFAULT = args.gray_chroma
    schemes = ALL if args.schemes == "all" else tuple(s.strip() for s in args.schemes.split(","))
    ns = [int(n) for n in args.ns.split(",")] if args.ns else [n for n in NS if n <= args.max_n]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    done = {(r["scheme"], r["condition"], r["n"], r["per_image"]) for r in rows}
    config = {"public": args.public, "conditions": {c: CONDITIONS[c][4] for c in args.conditions.split(",")}}
    for cond in args.conditions.split(","):
        vset, size, m0, pset, label = CONDITIONS[cond]
        test = _victim_source(args.data / vset, cond, size)      # subset() is class-balanced
        public = load_dataset(args.data / pset, "train").subset(args.public).images
        public = resize(public, size) if public.shape[1] > size else public   # larger: the attack upsamples
        for scheme in schemes:
            cells = [(n, False) for n in ns] + ([] if args.no_control else [(min(CONTROL_N, max(ns)), True)])
            for n, per_image in cells:
                if (scheme, cond, n, per_image) in done:
                    continue
                m = block_size(scheme, m0)
                print(f"{scheme} {cond} N={n}" + (" per-image keys" if per_image else "") + ": attacking", flush=True)
                victims = resize(test.subset(n).images, size)
                row = {"scheme": scheme, "condition": cond, "label": label, "size": size, "block_size": m, "n": n,
                       "per_image": per_image, **_cell(scheme, m, victims, public, per_image, args.progress)}
                rows.append(row)
                write_results(args.out, "many_image_attack", config, rows, render(rows))
    md = render(rows)
    print(md)
    write_results(args.out, "many_image_attack", config, rows, md)
    return 0


def _f(v, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _fewest(rows, key: str) -> str:
    """The fewest N from which ``key`` is 1.0 at that N and every larger N tried; where it holds only at
    some N, those are named."""
    rows = sorted(rows, key=lambda r: r["n"])
    ok = [r.get(key) == 1.0 for r in rows]
    for i in range(len(rows)):
        if all(ok[i:]):
            return str(rows[i]["n"]) if i else f"<= {rows[0]['n']} (the smallest N tried)"
    some = [str(r["n"]) for r, good in zip(rows, ok) if good]
    return f"not reached (only at N = {', '.join(some)})" if some else "not reached"


def render(rows) -> str:
    order = {s: i for i, s in enumerate(ALL)}
    conds = list(CONDITIONS)
    rows = sorted(rows, key=lambda r: (conds.index(r["condition"]), order.get(r["scheme"], 99), r["per_image"], r["n"]))
    table = []
    for r in rows:
        base = {"scheme": r["scheme"] + (" (per-image keys)" if r["per_image"] else ""), "condition": r["condition"],
                "N": r["n"]}
        if "not_applicable" in r:
            reason = r["not_applicable"].split(f"{r['scheme']!r}: ")[-1].split("; it handles")[0]
            table.append({**base, "exact up to global": "n/a: " + reason})
            continue
        table.append({**base, "exact up to global": _f(r["exact_images_global"]),
                      "SSIM up to global": _f(r["ssim_global"]),
                      "upper 4-bit halves up to global": _f(r.get("upper_halves_global")),
                      "chroma blocks up to global": _f(r.get("chroma_blocks_global")),
                      "as key holder up to global": _f(r.get("as_key_holder_global")),
                      "true state rank": _f(r["global_state_rank"]),
                      "exact (chosen)": _f(r["exact_images"]), "key map": _f(r["key_map_fraction"]),
                      "seconds": _f(r["seconds"], 1), "CPU seconds": _f(r.get("cpu_seconds"), 1)})
    cols = ["scheme", "condition", "N", "exact up to global", "SSIM up to global", "true state rank",
            "exact (chosen)", "key map", "seconds", "CPU seconds"]
    if any("upper_halves_global" in r for r in rows):     # 4-bit schemes: what the attack recovers of them
        cols.insert(5, "upper 4-bit halves up to global")
    if any("chroma_blocks_global" in r for r in rows):    # composite schemes: the chroma on its own
        cols[5:5] = ["chroma blocks up to global", "as key holder up to global"]
    fewest = []
    for cond in conds:
        for scheme in sorted({r["scheme"] for r in rows if r["condition"] == cond}, key=lambda s: order.get(s, 99)):
            mine = [r for r in rows if r["scheme"] == scheme and r["condition"] == cond and not r["per_image"]
                    and "not_applicable" not in r]
            if not mine:
                continue
            fewest.append({"scheme": scheme, "condition": cond, "tried N": ", ".join(
                str(r["n"]) for r in sorted(mine, key=lambda r: r["n"])),
                "fewest N, every image exact up to global state": _fewest(mine, "exact_images_global"),
                "fewest N, exact key map": _fewest(mine, "key_map_fraction")})
    legend = "\n".join(f"* `{c}`: {CONDITIONS[c][4]}" for c in conds if any(r["condition"] == c for r in rows))
    return ("Ciphertext-only key recovery from N images under one key; victims and public images from different "
            "data sets.\n" + legend + "\n\n'exact up to global': share of images decrypted exactly up to one "
            "whole-image rotation/flip, colour order and inversion; 'true state rank': where the right one of those "
            "96 states stands in the attacker's order (1: its chosen output is exact); 'key map': share of the "
            "compiled key map right in the chosen output (per-image keys: none to compare with)."
            + (" 'upper 4-bit halves up to global' (4-bit schemes): share of values whose upper half is right "
               "under the best of the 96 states." if "upper 4-bit halves up to global" in cols else "")
            + (" 'chroma blocks up to global' (composite schemes): share of the images' 8x8 Cb and Cr blocks within "
               "1 level (mean absolute error) of the truth, under the whole-image state whose luma is closest; 'as key "
               "holder up to global': share of images decrypted exactly as the key holder decrypts them (the "
               "lossy 4:2:0 colour conversion keeps these from the plain images), up to the whole-image state."
               if "chroma blocks up to global" in cols else "") + "\n\n"
            + markdown_table(table, cols) + "\n\n" + markdown_table(fewest, list(fewest[0]) if fewest else []))


if __name__ == "__main__":
    sys.exit(main())
