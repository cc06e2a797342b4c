"""The attack suite against the per-image EtC variants an invariant ViT learns from (DESIGN §8).

    .venv/bin/python benchmarks/invariant_attacks.py                     # 100 CIFAR-10 test images, M = 4
    .venv/bin/python benchmarks/invariant_attacks.py --n-images 20 --subset 500 --epochs 2   # a smoke run
    .venv/bin/python benchmarks/invariant_attacks.py --photos 10          # + jigsaw on flowers5-128, M = 16

For each variant (``step-bs``, ``etc-bs-rf``, ``etc-bs-rf-np``, ``etc``), every image under its own key:

* ``patchcrypt attack all --per-image`` as the Python API runs it (``run_all(..., per_image=True)``): FR,
  GAN (unpaired plain images and per-image ciphertexts), ITN (trained on pairs the attacker makes under fresh
  keys, as many as ``--subset``), the many-image attack (per-image keys: nothing shared to pool), and the
  attacks that say n/a with their reason (KPA, CPA need one key for several images; no keyed model exists);
* the single-image jigsaw solver with every piece state the variant allows, on every image alone under its
  own fresh key (the suite's ``jigsaw`` declines per-image targets only because its Dc/Nc/Lc scoring assumes
  one block order; one image under a fresh key is exactly what a per-image key gives that image).

Per attack: mean SSIM (the reconstruction against the plain image; the jigsaw picks the global state that
scores best, i.e. figures are up to the 8 × 2 × 6 global states), PSNR, and exact images (reconstruction equal
to the plain image). Each variant is saved to OUT/<variant>.json as it finishes (a rerun skips it);
results.json and table.md hold the table with the best attack per variant.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

from patchcrypt import Key  # noqa: E402
from patchcrypt.atomic import atomic_write  # noqa: E402
from patchcrypt.attacks import run_all, run_attack  # noqa: E402
from patchcrypt.ciphers import INVARIANT_VARIANTS  # noqa: E402
from patchcrypt.data import load_dataset  # noqa: E402
from patchcrypt.metrics import ssim  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def exact_count(plain: np.ndarray, rec: np.ndarray) -> int:
    """Images reconstructed bit for bit."""
    return int(sum(np.array_equal(p, r) for p, r in zip(plain, rec)))


def jigsaw_each_alone(scheme: str, m: int, images: np.ndarray) -> Dict:
    """The jigsaw solver on every image alone, each under its own fresh key."""
    t0 = time.perf_counter()
    rows = []
    for img in images:
        res = run_attack("jigsaw", scheme, m, img[None], key=Key.generate())
        met = res.metrics()
        rows.append({"ssim": met["ssim_mean"], "psnr": met["psnr_mean"], "nc": met.get("nc"), "dc": met.get("dc"),
                     "lc": met.get("lc"), "exact": exact_count(res.plain, res.reconstructed)})
    s = np.array([r["ssim"] for r in rows])
    out = {"attack": "jigsaw (each image alone)", "applies": True, "ssim_mean": float(s.mean()),
           "ssim_std": float(s.std()), "psnr_mean": float(np.mean([r["psnr"] for r in rows])),
           "exact_images": int(sum(r["exact"] for r in rows)), "n_images": len(rows),
           "seconds": round(time.perf_counter() - t0, 1)}
    for k in ("dc", "nc", "lc"):
        vals = [r[k] for r in rows if r[k] is not None]
        out[k] = float(np.mean(vals)) if vals else None
    return out


def no_attack(scheme: str, m: int, test: np.ndarray) -> Dict:
    """The reference row: the per-image ciphertexts themselves scored against the plain images."""
    from patchcrypt.ciphers import create_cipher
    from patchcrypt.metrics import batch_quality

    cipher = create_cipher(scheme, Key.generate(), block_size=m, per_image=True)
    enc = cipher.encrypt(test, cipher.new_nonces(len(test)))
    q = batch_quality(test, enc)
    return {"attack": "encrypted (no attack)", "applies": True, "reference": True, "ssim_mean": q["ssim_mean"],
            "ssim_std": q["ssim_std"], "psnr_mean": q["psnr_mean"], "exact_images": exact_count(test, enc),
            "n_images": len(test)}


def suite(scheme: str, m: int, test: np.ndarray, train: np.ndarray, epochs: int) -> List[Dict]:
    """``attack all --per-image``: one row per registered attack, with exact images where it applies."""
    exact: Dict[str, int] = {}

    def keep(row, result):
        if result is not None:
            exact[row["attack"]] = exact_count(result.plain, result.reconstructed)
        print(f"  {scheme}: {row['attack']}: " + (f"SSIM {row['metrics']['ssim_mean']:.3f}" if row["applies"]
                                                  else f"n/a ({row['reason']})"), flush=True)

    report = run_all(scheme, m, test, train, key=None, per_image=True, on_result=keep, epochs=epochs)
    rows = []
    for r in report["attacks"]:
        row = {"attack": r["attack"], "threat": r["threat"], "applies": r["applies"]}
        if r["applies"]:
            met = r["metrics"]
            row.update(ssim_mean=met["ssim_mean"], ssim_std=met["ssim_std"], psnr_mean=met["psnr_mean"],
                       exact_images=exact.get(r["attack"], 0), n_images=met["n_images"],
                       headline=r["headline"])
        else:
            row["reason"] = r["reason"]
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED / "cifar10-jpeg"))
    ap.add_argument("--out", type=Path, default=Path("results/invariant_attacks"))
    ap.add_argument("--n-images", type=int, default=100, help="test images attacked per variant")
    ap.add_argument("--subset", type=int, default=2000, help="the attacker's own images (GAN/ITN)")
    ap.add_argument("--epochs", type=int, default=5, help="GAN/ITN training epochs")
    ap.add_argument("--variants", default=",".join(INVARIANT_VARIANTS))
    ap.add_argument("--photos", type=int, default=0, help="also the jigsaw on this many flowers5-128 test "
                    "photos (128x128, M = 16)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    test = load_dataset(args.data, "test").subset(args.n_images, 0).images
    train = load_dataset(args.data, "train").subset(args.subset, 0).images
    for scheme in args.variants.split(","):
        path = args.out / f"{scheme}.json"
        if path.exists():
            saved = json.loads(path.read_text())
            if not any(r.get("reference") for r in saved["rows"]):   # results saved before the reference row
                saved["rows"].insert(0, no_attack(scheme, saved["block_size"], test[:saved["n_images"]]))
                atomic_write(path, json.dumps(saved, indent=1))
            continue
        print(f"{scheme} (per-image keys, M = 4, {len(test)} images)", flush=True)
        rows = [no_attack(scheme, 4, test)] + suite(scheme, 4, test, train, args.epochs)
        rows.append(jigsaw_each_alone(scheme, 4, test))
        print(f"  {scheme}: jigsaw each image alone: SSIM {rows[-1]['ssim_mean']:.3f}", flush=True)
        atomic_write(path, json.dumps({"scheme": scheme, "block_size": 4, "n_images": len(test),
                                       "subset": len(train), "epochs": args.epochs, "rows": rows}, indent=1))
    if args.photos:
        photos = load_dataset(SHARED / "flowers5-128", "test").subset(args.photos, 0).images
        for scheme in args.variants.split(","):
            path = args.out / f"photos128__{scheme}.json"
            if path.exists():
                continue
            row = jigsaw_each_alone(scheme, 16, photos)
            print(f"{scheme} on 128x128 photos, M = 16: jigsaw SSIM {row['ssim_mean']:.3f}", flush=True)
            rows = [no_attack(scheme, 16, photos), row]
            atomic_write(path, json.dumps({"scheme": scheme, "block_size": 16, "n_images": len(photos),
                                           "rows": rows}, indent=1))
    print(report(args.out), flush=True)
    return 0


def best_attack(rows: List[Dict]) -> Dict:
    """The applicable attack with the highest mean SSIM."""
    applied = [r for r in rows if r.get("applies") and r.get("ssim_mean") is not None and not r.get("reference")]
    return max(applied, key=lambda r: r["ssim_mean"]) if applied else {}


def load(out: Path) -> Dict[str, Dict]:
    """variant (or photos128__variant) -> its saved result."""
    order = list(INVARIANT_VARIANTS)

    def rank(p: Path):
        name = p.stem.split("__")[-1]
        return ("__" in p.stem, order.index(name) if name in order else len(order), p.stem)

    return {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"), key=rank)
            if p.name != "results.json"}


def report(out: Path) -> str:
    saved = load(out)
    table = []
    for name, res in saved.items():
        for r in res["rows"]:
            table.append({"variant": name, "M": res["block_size"], "attack": r["attack"],
                          "SSIM": f"{r['ssim_mean']:.3f} ± {r['ssim_std']:.3f}" if r.get("applies") else "n/a",
                          "exact images": f"{r['exact_images']}/{r['n_images']}" if r.get("applies") else "",
                          "note": "" if r.get("applies") else r.get("reason", "")})
    best = []
    for name, res in saved.items():
        b = best_attack(res["rows"])
        if b:
            best.append({"variant": name, "M": res["block_size"], "best attack": b["attack"],
                         "best SSIM": f"{b['ssim_mean']:.3f}",
                         "exact images (any attack)": sum(r.get("exact_images", 0) for r in res["rows"])})
    md = ("Every attack, per-image keys\n\n" + markdown_table(table, list(table[0])) if table else "") + \
        ("\n\nBest attack per variant\n\n" + markdown_table(best, list(best[0])) if best else "")
    (out / "table.md").write_text(md + "\n")
    write_results(out, "invariant_attacks", {}, [dict(name=k, **v) for k, v in saved.items()], md)
    return md


if __name__ == "__main__":
    sys.exit(main())
