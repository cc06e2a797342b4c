"""Accuracy gap vs best attack SSIM, one point per scheme and variant: the privacy/accuracy frontier.

    .venv/bin/python benchmarks/invariant_frontier.py      # reads results/invariant_table and invariant_attacks
    .venv/bin/python benchmarks/invariant_frontier.py --nested   # patch-shuffle / etc-nested: gap vs readable

``--nested`` reads the ``--dataset cifar8`` cells of ``--table`` and, from ``--nested-attacks``
(results/nested), one saved attack per scheme and sub-block size m on 50 CIFAR-10 test images at M = 8,
each under its own key (``<file>`` as named in :data:`NESTED_CELLS`)::

    patchcrypt attack hjigsaw --scheme etc-nested --block-size 8 --sub-block 2 --per-image \\
        --data ../shared/datasets/cifar10-jpeg --n-images 50 --max-single 50 --json \\
        > results/nested/hjigsaw-etc-nested-m8-s2-cifar-50.json         # and m = 4 (-s4), 8 (-s8)
    patchcrypt attack jigsaw --scheme etc --block-size 8 --per-image ... > results/nested/jigsaw-etc-m8-cifar-50.json

Accuracy gaps come from ``benchmarks/invariant_table.py`` (CIFAR-10 rows; gap = plain ViT − cell, points);
best-attack SSIMs from ``benchmarks/invariant_attacks.py`` (per-image variants, M = 4). The shared-key rows
(block-pixel, etc position-wise) are drawn at SSIM 1.0: the many-image attack recovers their whole key
(``patchcrypt schemes``; ``benchmarks/many_image_attack.py``), after which every image decrypts exactly.
Writes results/invariant_frontier.png and prints the points.

:func:`frontier_points` and :func:`plot_frontier` take plain data, so a report can draw the same figure from
its own rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from invariant_attacks import best_attack, load  # noqa: E402
from invariant_table import load_rows, matched_gaps  # noqa: E402

from patchcrypt.atomic import atomic_write  # noqa: E402

# table cell -> (point label, attack-result name or None for a shared key broken by the many-image attack)
CELL_TO_VARIANT = {
    "inv ViT (etc group, canonical), per-image etc": ("etc, per-image, inv ViT", "etc"),
    "inv ViT (etc group, orbit-pooled), per-image etc": ("etc, per-image, inv ViT (pooled)", "etc"),
    "inv ViT (bs-rf-np group, canonical), per-image etc-bs-rf-np": ("BS+RF+NP, per-image, inv ViT", "etc-bs-rf-np"),
    "inv ViT (bs-rf group, canonical), per-image etc-bs-rf": ("BS+RF, per-image, inv ViT", "etc-bs-rf"),
    "inv ViT (bs group), per-image step-bs": ("BS, per-image, inv ViT", "step-bs"),
    "plain ViT, per-image etc (not invariant)": ("etc, per-image, plain ViT", "etc"),
    "plain ViT, shared-key block-pixel": ("block-pixel, one key", None),
    "plain ViT position-wise, shared-key etc": ("etc, one key, position-wise ViT", None),
}


def frontier_points(table_rows: Sequence[Dict], attacks: Dict[str, Dict], dataset: str = "cifar",
                    plain_accuracy: Optional[float] = None) -> List[Dict]:
    """``[{"label", "gap", "ssim", "attack"}]`` from invariant_table rows and invariant_attacks results
    (variant → saved result). ``plain_accuracy`` (0..1) stands in for a missing plain-ViT cell of the CPU
    preset (e.g. the accuracy table's, the same configuration)."""
    plain = {r["preset"]: r["accuracy"] for r in table_rows
             if r["dataset"] == dataset and r["cell"] == "plain ViT, plain images"}
    if plain_accuracy is not None:
        plain.setdefault("cpu", plain_accuracy)
    points = []
    for r in table_rows:
        if r["dataset"] != dataset or r["cell"] not in CELL_TO_VARIANT or r["preset"] not in plain:
            continue
        label, variant = CELL_TO_VARIANT[r["cell"]]
        gap = 100 * (plain[r["preset"]] - r["accuracy"])
        if variant is None:
            points.append({"label": label, "gap": gap, "ssim": 1.0, "attack": "many-image (whole key)"})
            continue
        b = best_attack(attacks.get(variant, {}).get("rows", []))
        if b:
            points.append({"label": label, "gap": gap, "ssim": b["ssim_mean"], "attack": b["attack"]})
    return points


# --nested: invariant_table cells at M = 8 (--dataset cifar8) -> (scheme, m, model, [(attack, result file)]);
# a result file is results/nested/<file>-cifar-50.json, the CLI's --json output (see nested_points)
_M4 = [("hjigsaw", "hjigsaw-etc-nested-m8-s4")]
NESTED_CELLS = {
    "inv ViT (bs group), per-image patch-shuffle": ("patch-shuffle", None, "inv ViT (bs)",
                                                    [("jigsaw", "jigsaw-patch-shuffle-m8")]),
    "inv ViT (etc-nested group, m=2, mean pool), per-image etc-nested": (
        "etc-nested", 2, "nested inv ViT", [("hjigsaw", "hjigsaw-etc-nested-m8-s2")]),
    "inv ViT (etc-nested group, m=4, mean pool), per-image etc-nested": ("etc-nested", 4, "nested inv ViT", _M4),
    "inv ViT (etc-nested group, m=4, attention pool), per-image etc-nested": (
        "etc-nested", 4, "nested inv ViT, attention pool", _M4),
    "inv ViT (etc-nested group, m=4, set pool), per-image etc-nested": (
        "etc-nested", 4, "nested inv ViT, set pool", _M4),
    "inv ViT (etc-nested group, m=4) fine-tuned from plain ViT backbone, per-image etc-nested": (
        "etc-nested", 4, "nested inv ViT fine-tuned from plain", _M4),
    # m = M: one sub-block per patch, i.e. per-image etc at M = 8 (the ordinary jigsaw on etc is the same attack)
    "inv ViT (etc-nested group, m=8, mean pool), per-image etc-nested": (
        "etc-nested", 8, "nested inv ViT", [("hjigsaw", "hjigsaw-etc-nested-m8-s8"),
                                            ("jigsaw on per-image etc, M = 8", "jigsaw-etc-m8")]),
}
# attacked, not trained: (scheme, m, attack, result file)
NESTED_UNTRAINED = [("patch-shuffle-mix", 4, "hjigsaw", "hjigsaw-patch-shuffle-mix-m8-s4")]


def _attack_result(attack_dir: Path, stem: str) -> Optional[Dict]:
    """A saved ``--json`` result; an m = 4 file may carry the name it had before ``--sub-block`` (no ``-s4``)."""
    for name in (stem, stem.replace("-s4", "")):
        f = attack_dir / f"{name}-cifar-50.json"
        if f.exists():
            return json.loads(f.read_text())
    return None


def _nested_row(label: str, scheme: str, m: Optional[int], model: str, gap: Optional[float], attack: str,
                a: Dict) -> Dict:
    return {"label": label, "scheme": scheme, "m": m, "model": model, "gap": gap, "attack": attack,
            "readable": a["readable"], "exact": a["exact_images_global"], "ssim": a["ssim_global"],
            "trivial": a["baseline_ssim"], "n_images": a["n_images"]}


def nested_points(table_rows: Sequence[Dict], attack_dir: Path, plain_accuracy: Optional[float] = None
                  ) -> List[Dict]:
    """One row per (cifar8 cell, attack on its scheme): the cell's accuracy gap to the plain ViT at M = 8 (points)
    and the attack's readable fraction, exact share and SSIM up to the global state and best trivial SSIM
    (``attack_dir/<file>-cifar-50.json``: CIFAR-10 test images at 32 px, M = 8, each under its own key), then
    the schemes attacked but not trained (gap None). ``plain_accuracy`` (0..1) stands in for a missing plain
    cell of the same preset and epochs."""
    plain = {(r["preset"], r["epochs"]): r["accuracy"] for r in table_rows
             if r["dataset"] == "cifar8" and r["cell"] == "plain ViT, plain images"}
    rows = {r["cell"]: r for r in table_rows if r["dataset"] == "cifar8"}
    points = []
    for cell, (scheme, m, model, attacks) in NESTED_CELLS.items():
        r = rows.get(cell)
        base = plain.get((r["preset"], r["epochs"]), plain_accuracy) if r else None
        if base is None:
            continue
        for attack, stem in attacks:
            a = _attack_result(attack_dir, stem)
            if a is not None:
                points.append(_nested_row(f"{scheme}, m={m}, {model}" if m else f"{scheme}, {model}", scheme, m,
                                          model, 100 * (base - r["accuracy"]), attack, a))
    for scheme, m, attack, stem in NESTED_UNTRAINED:
        a = _attack_result(attack_dir, stem)
        if a is not None:
            points.append(_nested_row(f"{scheme}, m={m}", scheme, m, "— (not trained)", None, attack, a))
    return points


def nested_table(points: Sequence[Dict]) -> str:
    """The frontier table of docs/invariant.md from :func:`nested_points`."""
    lines = ["| scheme, per-image keys | m | model | gap (points) | attack | readable | exact up to global | "
             "SSIM up to global | best trivial |", "|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        gap = "—" if p["gap"] is None else f"{p['gap']:.2f}"
        lines.append(f"| `{p['scheme']}` | {p['m'] or '—'} | {p['model']} | {gap} | {p['attack']} | "
                     f"{p['readable']:.2f} | {p['exact']:.2f} | {p['ssim']:.3f} | {p['trivial']:.3f} |")
    return "\n".join(lines)


def plot_frontier(points: Sequence[Dict], path: Path, goal_gap: float = 5.0, goal_ssim: float = 0.3) -> Path:
    """Scatter of accuracy gap (points) vs best attack SSIM, the goal region shaded; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    ax.axvspan(-100, goal_gap, ymin=0, ymax=goal_ssim / 1.05, color="tab:green", alpha=0.12,
               label=f"goal: gap ≤ {goal_gap:g}, SSIM ≤ {goal_ssim:g}")
    for i, p in enumerate(points):
        ax.scatter(p["gap"], p["ssim"], s=40)
        ax.annotate(p["label"], (p["gap"], p["ssim"]), fontsize=7, xytext=(4, 3 - 10 * (i % 3)),
                    textcoords="offset points")
    gaps = [p["gap"] for p in points] or [0.0]
    ax.set_xlim(min(-1.0, min(gaps) - 1), max(goal_gap + 1, max(gaps) + 8))
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("accuracy gap to plain ViT on plain images (points, CIFAR-10 CPU preset)")
    ax.set_ylabel("best attack SSIM (mean over images)")
    ax.set_title("Privacy vs accuracy: per-image variants with invariant ViTs, shared-key schemes")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", type=Path, default=Path("results/invariant_table"))
    ap.add_argument("--attacks", type=Path, default=Path("results/invariant_attacks"))
    ap.add_argument("--out", type=Path, default=Path("results/invariant_frontier.png"))
    ap.add_argument("--plain-accuracy", type=float, default=None, help="plain ViT accuracy (0..1) when the "
                    "table has no plain cell, e.g. 0.475 from benchmarks/accuracy_table.py (same preset)")
    ap.add_argument("--point", action="append", default=[], metavar="LABEL=GAP:SSIM",
                    help="a point measured elsewhere, e.g. 'block-pixel, one key=0.2:1.0' (the accuracy table's "
                    "gap; SSIM 1.0 where the many-image attack recovers the whole key)")
    ap.add_argument("--nested", action="store_true", help="patch-shuffle and etc-nested at M = 8: accuracy gap "
                    "(invariant_table.py --dataset cifar8) vs readable fraction (results/nested)")
    ap.add_argument("--nested-attacks", type=Path, default=Path("results/nested"))
    args = ap.parse_args(argv)
    rows = load_rows(args.table)
    if args.nested:
        points = nested_points(rows, args.nested_attacks, args.plain_accuracy)
        print(nested_table(points))
        print(json.dumps(points))
        return 0
    attacks = load(args.attacks)
    points = frontier_points(rows, attacks, plain_accuracy=args.plain_accuracy)
    done = {p["label"] for p in points}
    for g in matched_gaps(args.table, "cifar"):        # cells still running: the gap at the same epoch
        label, variant = CELL_TO_VARIANT.get(g["cell"], (None, None))
        b = best_attack(attacks.get(variant, {}).get("rows", [])) if variant else {}
        if label and label not in done and b:
            points.append({"label": f"{label} (epoch {g['epoch']}/{g['planned']})", "gap": 100 * (g["plain"] -
                           g["accuracy"]), "ssim": b["ssim_mean"], "attack": b["attack"]})
    for spec in args.point:
        label, _, rest = spec.rpartition("=")
        gap, _, ssim_ = rest.partition(":")
        points.append({"label": label, "gap": float(gap), "ssim": float(ssim_), "attack": "given (--point)"})
    for p in points:
        print(f"{p['label']}: gap {p['gap']:.2f} points, best attack SSIM {p['ssim']:.3f} ({p['attack']})")
    if points:
        plot_frontier(points, args.out)
        print(f"figure: {args.out}")
    print(json.dumps(points))
    return 0


if __name__ == "__main__":
    sys.exit(main())
