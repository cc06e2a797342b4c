"""The verdict of ``attack all`` for schemes outside the step vocabulary, the registered ones and the per-image
control, on real CIFAR-10 (and, with ``--photos``, on real photos at 224).

    .venv/bin/python benchmarks/verdicts.py                 # 200 CIFAR-10 test images per scheme
    .venv/bin/python benchmarks/verdicts.py --full          # 1,000 images (the figures of docs/security.md)
    .venv/bin/python benchmarks/verdicts.py --photos        # + per-image etc / block order at 224, M = 16, hymenoptera

Every row is one ``run_all`` (every registered attack) under a fresh key: the verdict, the attack that
breaks it, its readable share, and the best readable share, exact-up-to-global share and queries of each
attack family. The user classes (``examples/value_schemes.py``) declare no steps: what breaks them is what the
black box gives away. The attacker's own images are flower photos (another domain). Each row is saved to
``results/verdicts/results.json`` as soon as it is done; a cut-off run resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

from patchcrypt.attacks import run_all  # noqa: E402
from patchcrypt.attacks.images import load_folder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
VALUE = ROOT / "examples" / "value_schemes.py"
USER = ["XorBlocks", "XorBlocksRot", "XorImage", "AddShuffle", "AddBlocksRot", "SubstBlocksRot", "SubstImage"]
# (label, scheme, M, per_image) on CIFAR-10 at 32
CIFAR = [(u, f"{VALUE}:{u}", 4, False) for u in USER] + [
    ("block-pixel", "block-pixel", 4, False), ("etc", "etc", 4, False), ("etc per-image", "etc", 4, True)]
# (label, scheme, M, per_image) on real photos at 224
PHOTOS = [("etc per-image", "etc", 16, True), ("step-bs per-image", "step-bs", 16, True)]


def row_of(label: str, domain: str, report: dict, seconds: float) -> dict:
    v = report["verdict"]
    best = {r["attack"]: r["metrics"] for r in report["attacks"] if r["applies"]}
    row = {"scheme": label, "domain": domain, "verdict": "BROKEN" if v["broken"] else "not broken",
           "by": v["by"] or "", "readable": v["readable"], "n": v["n_images"], "queries": v["queries"] or "",
           "line": v["line"], "seconds": round(seconds, 1)}
    for name in ("cpa", "kpa", "many", "jigsaw"):
        m = best.get(name)
        row[f"{name}_readable"] = "n/a" if m is None else round(m["readable"], 3)
        row[f"{name}_exact_global"] = "n/a" if m is None else round(m["exact_images_global"], 3)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="1,000 CIFAR-10 images (default 200)")
    ap.add_argument("--photos", action="store_true", help="also per-image designs on real photos at 224")
    ap.add_argument("--n-photos", type=int, default=8, help="photos per per-image row (each solved alone)")
    ap.add_argument("--only", default="", help="comma-separated row labels to run")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "verdicts")
    args = ap.parse_args()
    n = 1000 if args.full else 200
    path = args.out / "results.json"
    done = {(r["scheme"], r["domain"]): r for r in json.loads(path.read_text())["rows"]} if path.is_file() else {}
    cifar = SHARED / "cifar10-jpeg"
    victims = load_folder(cifar, n, None, "test")
    public = load_folder(SHARED / "flowers5-128", 2000, 32, "train")
    jobs = [(label, f"cifar10 n={n}", s, m, pi, victims, public) for label, s, m, pi in CIFAR]
    if args.photos:
        photos = load_folder(SHARED / "hymenoptera", args.n_photos, 224, "val")
        flowers = load_folder(SHARED / "flowers5-128", 500, 224, "train")
        jobs += [(label, f"hymenoptera 224 n={args.n_photos}", s, m, pi, photos, flowers) for label, s, m, pi in PHOTOS]
    only = {s for s in args.only.split(",") if s}
    for label, domain, scheme, m, per_image, test, own in jobs:
        if (label, domain) in done or (only and label not in only):
            continue
        t0 = time.perf_counter()
        report = run_all(scheme, m, test, own, per_image=per_image, max_single=len(test) if per_image else 4,
                         pairs=64, epochs=3, progress=True)
        done[(label, domain)] = row_of(label, domain, report, time.perf_counter() - t0)
        print(done[(label, domain)]["line"], flush=True)
        rows = list(done.values())
        write_results(args.out, "verdicts", {"n_images": n, "public": "flowers5-128 train"}, rows,
                      markdown_table(rows, ["scheme", "domain", "verdict", "by", "readable", "n", "queries",
                                            "cpa_exact_global", "kpa_exact_global", "many_exact_global",
                                            "many_readable", "jigsaw_readable", "seconds"]))
    rows = list(done.values())
    print(markdown_table(rows, ["scheme", "domain", "verdict", "by", "readable", "n", "queries", "cpa_exact_global",
                                "kpa_exact_global", "many_exact_global", "many_readable", "jigsaw_readable",
                                "seconds"]))


if __name__ == "__main__":
    main()
