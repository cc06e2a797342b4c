"""How often the many-image attack's global-state choice is right when victims and public images differ.

A many-image attack decrypts every image up to one global state (dihedral × colour order × inversion, 96
states; patchcrypt.attacks.globalstate). This benchmark takes plain victim images from one source, puts them
in a random state (what the attack would hand over), and asks the chooser to rank the 96 states with public
plain images from ANOTHER source:

  cifar10 32 px victims        <- flowers5-128 public (128 px)
  flowers5-128 128 px victims  <- CIFAR-10 train public (32 px)
  flowers5-128 resized to 224  <- CIFAR-10 train public   ("resized": 128-px photos upsampled, not 224-px photos)

For each setting and N (victims per trial) it reports the share of trials whose true state is ranked first,
the same up to a left–right mirror (the one ambiguity natural photos barely break), the mean rank, and the
same figures for the public-statistics match that attacks/many used before (the baseline, run on the same
trials). Each finished cell is saved as results/global_state/<setting>_N<n>.json and skipped on a rerun.

  PYTHONPATH=src .venv/bin/python benchmarks/global_state.py                # small: 10 trials, N = 30, 100
  PYTHONPATH=src .venv/bin/python benchmarks/global_state.py --trials 50 --ns 30,100,300   # the full run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

from patchcrypt.atomic import atomic_write  # noqa: E402
from patchcrypt.attacks.globalstate import (COLOUR_ORDERS, GLOBAL_STATES, GlobalState, compose,  # noqa: E402
                                            invert_state, rank_of_true, rank_states)

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ("cifar32-from-flowers", "flowers128-from-cifar", "flowers224resized-from-cifar")
MIRROR = GlobalState(4)


# ------------------------------------------------------------------------------------------------------------
# baseline: attacks/many's global stage before this benchmark (mean image, channel histograms, channel covariance
# and mean differences matched to the public images' by z-scores; a mirror decided by the horizontal
# differences alone), copied here so that the comparison survives its replacement
def _features(x: np.ndarray) -> Dict[str, np.ndarray]:
    xf = x.astype(np.float32)
    n, c = len(x), x.shape[3]
    codes = (np.arange(n)[:, None, None] * c + np.arange(c)[None, None, :]) * 16 + (x.reshape(n, -1, c) >> 4)
    hist = np.bincount(codes.reshape(-1), minlength=n * c * 16).reshape(n, c, 16).astype(np.float64)
    hist /= x.shape[1] * x.shape[2]
    flat = xf.reshape(n, -1, c)
    cen = flat - flat.mean(1, keepdims=True)
    cov = np.einsum("npa,npb->nab", cen, cen) / flat.shape[1]
    return {"mean": xf, "hist": hist, "cov": cov, **_gradients(xf)}


def _gradients(mean: np.ndarray) -> Dict[str, np.ndarray]:
    return {"dx": mean[..., :, 1:, :] - mean[..., :, :-1, :], "dy": mean[..., 1:, :, :] - mean[..., :-1, :, :]}


def _summary(x: np.ndarray, chunk: int = 128) -> Dict[str, np.ndarray]:
    sums, sq, n = {}, {}, 0
    for a in range(0, len(x), chunk):
        for k, v in _features(x[a:a + chunk]).items():
            sums[k] = sums.get(k, 0) + v.sum(0)
            sq[k] = sq.get(k, 0) + (v.astype(np.float64) ** 2).sum(0)
        n += len(x[a:a + chunk])
    return {k: sums[k] / n for k in sums} | {k + "_var": sq[k] / n - (sums[k] / n) ** 2 for k in sums} | {"n": n}


def _transformed(f: Dict[str, np.ndarray], s: GlobalState) -> Dict[str, np.ndarray]:
    mean = np.rot90(f["mean"], s.dihedral % 4, axes=(0, 1))
    mean = mean[:, ::-1] if s.dihedral >= 4 else mean
    hist, cov, order = f["hist"], f["cov"], list(s.order)
    if mean.shape[-1] == 3:
        mean, hist, cov = mean[..., order], hist[order], cov[order][:, order]
    if s.invert:
        mean, hist = 255.0 - mean, hist[:, ::-1]
    mean = np.ascontiguousarray(mean)
    return {"mean": mean, "hist": hist, "cov": cov, **_gradients(mean)}


def baseline_rank(candidates: np.ndarray, public_fit: np.ndarray, pub: Dict = None) -> List[int]:
    """States ranked by the old public-statistics match (best first, its mirror rule applied to the first)."""
    pub = pub or _summary(public_fit)
    cur = _summary(candidates)
    n, p = cur["n"], pub["n"]
    states = [s for s in GLOBAL_STATES if candidates.shape[1] == candidates.shape[2] or s.dihedral % 2 == 0]
    scored, dx = [], {}
    for s in states:
        f = _transformed(cur, s)
        score = 0.0
        for k in ("mean", "hist", "cov", "dx", "dy"):
            term = float((((f[k] - pub[k]) ** 2) / (pub[k + "_var"] * (1.0 / n + 1.0 / p) + 1e-6)).mean())
            score += term
            dx[s.index] = term if k == "dx" else dx.get(s.index, 0.0)
        scored.append((score, s.index))
    order = [i for _, i in sorted(scored)]
    partner = compose(MIRROR, order[0]).index
    if partner in dx and dx[partner] < dx[order[0]]:
        order.remove(partner)
        order.insert(0, partner)
    return order


# ------------------------------------------------------------------------------------------------------------
def _resize(images: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if images.shape[1:3] == (size, size):
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC)) for im in images])


def load_setting(name: str, shared: Path, max_public: int) -> Tuple[np.ndarray, np.ndarray]:
    """(victims, public) uint8 NHWC for a setting."""
    from patchcrypt.data.readers import load_dataset

    cifar, flowers = shared / "datasets" / "cifar10-jpeg", shared / "datasets" / "flowers5-128"
    if name == "cifar32-from-flowers":
        return (load_dataset(cifar, "test", subset=3000).images,
                load_dataset(flowers, "train", subset=max_public).images)
    victims = load_dataset(flowers, "test").images
    if name == "flowers224resized-from-cifar":
        victims = _resize(victims, 224)
    return victims, load_dataset(cifar, "train", subset=max_public).images


def _wrong_parts(pick: int, true: int) -> str:
    """Which parts of a wrong pick differ from the truth: rot (not a mirror), mirror, colour, invert."""
    a, b = GLOBAL_STATES[pick], GLOBAL_STATES[true]
    parts = []
    if a.dihedral != b.dihedral:
        parts.append("mirror" if compose(MIRROR, b).dihedral == a.dihedral else "rotation")
    if a.colour != b.colour:
        parts.append("colour")
    if a.invert != b.invert:
        parts.append("invert")
    return "+".join(parts) or "none"


def run_cell(name: str, n: int, victims: np.ndarray, public: np.ndarray, trials: int, seed: int,
             pub_summary: Dict, public_fit: np.ndarray, classifier_steps: int = 0) -> Dict:
    rng = np.random.default_rng([seed, SETTINGS.index(name), n])
    rows = []
    for _ in range(trials):
        true = int(rng.integers(96))
        cands = invert_state(victims[rng.choice(len(victims), n, replace=False)], true)
        t0 = time.perf_counter()
        ours = rank_states(cands, public, seed=seed, classifier_steps=classifier_steps)
        t1 = time.perf_counter()
        base = baseline_rank(cands, public_fit, pub_summary)
        mirror_true = compose(MIRROR, true).index
        rows.append({"true": true, "true_state": str(GLOBAL_STATES[true]), "seconds": t1 - t0,
                     **{f"{who}_{k}": v for who, order in (("ours", ours), ("base", base)) for k, v in {
                         "pick": order[0], "rank": rank_of_true(order, true),
                         "mirror_rank": min(rank_of_true(order, true), rank_of_true(order, mirror_true)),
                         "wrong": _wrong_parts(order[0], true)}.items()}})
    out = {"setting": name, "n": n, "trials": trials, "seed": seed, "classifier_steps": classifier_steps,
           "rows": rows}
    for who in ("ours", "base"):
        ranks = np.array([r[f"{who}_rank"] for r in rows])
        out[f"{who}_top1"] = float((ranks == 1).mean())
        out[f"{who}_top1_up_to_mirror"] = float(np.mean([r[f"{who}_mirror_rank"] == 1 for r in rows]))
        out[f"{who}_mean_rank"] = float(ranks.mean())
        wrong = [r[f"{who}_wrong"] for r in rows if r[f"{who}_wrong"] != "none"]
        out[f"{who}_wrong"] = {w: wrong.count(w) for w in sorted(set(wrong))}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "global_state")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--ns", default="30,100", help="victims per trial, comma-separated")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--max-public", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classifier-steps", type=int, default=0,
                    help="also train the optional CNN for this many steps (default 0: hand statistics only)")
    args = ap.parse_args(argv)
    ns = [int(v) for v in args.ns.split(",")]
    names = [s for s in args.settings.split(",") if s]
    if any(s not in SETTINGS for s in names) or not (args.shared / "datasets").is_dir():
        print(f"global_state: settings must be among {', '.join(SETTINGS)} and {args.shared}/datasets must exist",
              file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    cells = []
    for name in names:
        todo = [n for n in ns if not _done(args.out / f"{name}_N{n}.json", args)]
        if todo:
            victims, public = load_setting(name, args.shared, args.max_public)
            public_fit = _resize(public, victims.shape[1])
            pub_summary = _summary(public_fit)
        for n in ns:
            path = args.out / f"{name}_N{n}.json"
            if n in todo:
                t0 = time.perf_counter()
                cell = run_cell(name, n, victims, public, args.trials, args.seed, pub_summary, public_fit,
                                args.classifier_steps)
                cell["seconds"] = time.perf_counter() - t0
                atomic_write(path, json.dumps(cell, indent=1))
                print(f"{name} N={n}: ours {cell['ours_top1']:.2f} (mirror {cell['ours_top1_up_to_mirror']:.2f}) "
                      f"baseline {cell['base_top1']:.2f} in {cell['seconds']:.0f} s", flush=True)
            cells.append(json.loads(path.read_text()))
    cols = ["setting", "n", "trials", "ours_top1", "ours_top1_up_to_mirror", "ours_mean_rank", "ours_wrong",
            "base_top1", "base_top1_up_to_mirror", "base_mean_rank", "base_wrong"]
    heads = ["victims <- public", "N", "trials", "first", "first up to mirror", "mean rank", "our misses",
             "baseline first", "baseline up to mirror", "baseline mean rank", "baseline misses"]
    rows = [{**c, "ours_wrong": _fmt_wrong(c["ours_wrong"]), "base_wrong": _fmt_wrong(c["base_wrong"])}
            for c in cells]
    table = markdown_table(rows, cols, heads)
    print(table)
    write_results(args.out, "global_state", vars(args) | {"shared": str(args.shared), "out": str(args.out)},
                  [{k: v for k, v in c.items() if k != "rows"} for c in cells], table)
    return 0


def _done(path: Path, args) -> bool:
    try:
        cell = json.loads(path.read_text())
        return (cell["trials"], cell["seed"], cell["classifier_steps"]) == (args.trials, args.seed,
                                                                          args.classifier_steps)
    except (OSError, ValueError, KeyError):
        return False


def _fmt_wrong(d: Dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "-"


if __name__ == "__main__":
    sys.exit(main())
