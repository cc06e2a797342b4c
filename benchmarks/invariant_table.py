"""The price of invariance: plain ViT vs shared-key schemes vs invariant ViTs on per-image-encrypted images.

    .venv/bin/python benchmarks/invariant_table.py                      # small default: a smoke run (minutes)
    .venv/bin/python benchmarks/invariant_table.py --preset cpu         # CIFAR-10 CPU preset (as accuracy_table)
    .venv/bin/python benchmarks/invariant_table.py --preset cpu --dataset flowers   # flowers5-128, M = 16
    .venv/bin/python benchmarks/invariant_table.py --preset cpu --only inv  # only the cells whose label has "inv"

CIFAR-10 CPU preset: 10,000 training images (class-balanced), all 10,000 test images, 10 epochs, batch 128,
seed 0, lr 2e-3, M = patch = 4 at 32×32, ViT-pico (D = 64, depth 4) — the accuracy table's ViT cell.
flowers5-128: all 3,426 training and 883 test photos, M = patch = 16, the same ViT-pico width and depth,
10 epochs, batch 64 (``--epochs`` shortens a run; the table says so), at the photos' own 128×128 (8×8 patches,
64 tokens as CIFAR's); ``--img-size 32`` brings them to 32×32 (2×2 patches), as the flowers rows of
docs/invariant.md made before that default were; each row records its ``img_size``.

Rows: plain ViT on plain images; shared-key ``block-pixel`` (shared embedding) and ``etc`` (position-wise
embedding) as the accuracy table has them; the plain ViT on per-image ``etc`` (what per-image keys cost a
model that is not invariant); every invariant variant on its per-image ciphertexts (``step-bs``,
``etc-bs-rf``, ``etc-bs-rf-np``, ``etc``) with the canonicalising embedding; ``etc`` with the orbit-pooled
embedding; and (``--finetune``) the invariant ViT fine-tuned from the plain ViT's weights.
``--dataset cifar8`` (M = 8 at 32 px; flowers too, at M = 16): the plain ViT, ``patch-shuffle`` with the block-order-invariant ViT and
``etc-nested`` with the nested invariant ViT (m = 4 sub-blocks pooled per patch); with ``--finetune`` also
the nested ViT started from the plain ViT's backbone, class token and head (its sub-block embedding has no
counterpart in the plain patch embedding and starts fresh).
``--upstream DIR`` (``--dataset hymenoptera``): the fine-tuned block instead — every design started from the
flowers run of the same design in DIR (a flowers ``--out`` or its ``runs/`` folder; each run's last.pt): the
plain ViT from the plain flowers ViT (position embedding resized to the new grid), the patch shuffle and both
nested poolings from their own flowers runs, and the nested ViT from the plain flowers ViT's backbone. Every
head starts fresh (the classes differ); ``patchcrypt.models.pretrained`` makes these adaptations.

Resumable: every cell is a run folder OUT/runs/<dataset>__<cell> (a cut-off cell resumes from last.pt) and a
finished cell is saved as OUT/<dataset>__<cell>.json; results.json and table_<dataset>.md are rewritten
after every cell. All cells share one key (OUT/owner.key, mode 0600, never printed); per-image cells draw
every image's key from a fresh nonce under it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

from patchcrypt import Key  # noqa: E402
from patchcrypt.atomic import atomic_write  # noqa: E402
from patchcrypt.errors import PatchcryptError  # noqa: E402
from patchcrypt.train import TrainConfig, train  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
DATASETS = {
    "cifar": dict(data=SHARED / "cifar10-jpeg", block=4, batch=128, subset=10000, test_subset=None),
    "flowers": dict(data=SHARED / "flowers5-128", block=16, batch=64, subset=None, test_subset=None, img_size=128),
    # CIFAR-10 with 8 x 8 patches (16 tokens): the nested cells' geometry (M = 8, m = 4)
    "cifar8": dict(data=SHARED / "cifar10-jpeg", block=8, batch=128, subset=10000, test_subset=None),
    # real photos of mixed sizes (train/ + val/), brought to 224 (shorter side resized, centre crop), M = 16
    "hymenoptera": dict(data=SHARED / "hymenoptera", block=16, batch=32, subset=None, test_subset=None, img_size=224),
}
NESTED_ONLY = ("cifar8",)    # data sets made for the nested cells (they run nothing else but the plain cell)
NESTED_OK = ("cifar8", "flowers", "hymenoptera")   # data sets whose patches hold several 4 x 4 sub-blocks
PRESETS = {"quick": dict(epochs=2, subset=1000, test_subset=1000), "cpu": dict(epochs=10)}
PLAIN_VIT, INV_VIT, LR = "vit_pico_patch4_32", "vit_pico_inv_patch4_32", 2e-3

# label, model, scheme, per_image, model kwargs (patch size added per data set)
CELLS = [
    ("plain ViT, plain images", PLAIN_VIT, "plain", False, {}),
    ("inv ViT (etc group, canonical), per-image etc", INV_VIT, "etc", True, {"invariance": "etc"}),
    ("inv ViT (bs-rf-np group, canonical), per-image etc-bs-rf-np", INV_VIT, "etc-bs-rf-np", True,
     {"invariance": "bs-rf-np"}),
    ("inv ViT (bs-rf group, canonical), per-image etc-bs-rf", INV_VIT, "etc-bs-rf", True, {"invariance": "bs-rf"}),
    ("inv ViT (bs group), per-image step-bs", INV_VIT, "step-bs", True, {"invariance": "bs"}),
    ("plain ViT, shared-key block-pixel", PLAIN_VIT, "block-pixel", False, {}),
    ("plain ViT position-wise, shared-key etc", PLAIN_VIT, "etc", False, {"embed": "blockwise"}),
    ("plain ViT, per-image etc (not invariant)", PLAIN_VIT, "etc", True, {}),
    ("inv ViT (etc group, orbit-pooled), per-image etc", INV_VIT, "etc", True,
     {"invariance": "etc", "inv_embed": "pool"}),
    # the published patch shuffle and nested EtC (ciphers/nested.py), at M = 8 with m = 4 (--dataset cifar8)
    ("inv ViT (bs group), per-image patch-shuffle", INV_VIT, "patch-shuffle", True, {"invariance": "bs"}),
    ("inv ViT (etc-nested group, m=4, mean pool), per-image etc-nested", INV_VIT, "etc-nested", True,
     {"invariance": "etc-nested", "sub_block": 4}),
    ("inv ViT (etc-nested group, m=4, attention pool), per-image etc-nested", INV_VIT, "etc-nested", True,
     {"invariance": "etc-nested", "sub_block": 4, "inv_pool": "attn"}),
    # sub-blocks of a patch attend to each other (position-free transformer block), then attention pooling
    ("inv ViT (etc-nested group, m=4, set pool), per-image etc-nested", INV_VIT, "etc-nested", True,
     {"invariance": "etc-nested", "sub_block": 4, "inv_pool": "set"}),
    ("inv ViT (etc-nested group, m=4, set pool, 2 set blocks), per-image etc-nested", INV_VIT, "etc-nested", True,
     {"invariance": "etc-nested", "sub_block": 4, "inv_pool": "set", "inv_set_depth": 2}),
    # other sub-block sizes at M = 8 (--dataset cifar8): m = 2 (16 sub-blocks of 2 x 2 a patch) and m = 8 = M
    # (one sub-block: per-image etc at M = 8 under etc-nested's key labels); a run encrypts a nested scheme at
    # its model's m (train.inputs.scheme_options)
    *[(f"inv ViT (etc-nested group, m={m}, mean pool), per-image etc-nested", INV_VIT, "etc-nested", True,
       {"invariance": "etc-nested", "sub_block": m}) for m in (2, 8)],
]


# --finetune: started from the plain ViT cell of the same data set (its best.pt)
FINETUNE_CELLS = [
    ("inv ViT (etc group, canonical) fine-tuned from plain ViT, per-image etc", INV_VIT, "etc", True,
     {"invariance": "etc"}),
    ("inv ViT (etc-nested group, m=4) fine-tuned from plain ViT backbone, per-image etc-nested", INV_VIT,
     "etc-nested", True, {"invariance": "etc-nested", "sub_block": 4}),
]

# --upstream: label, model, scheme, per_image, model kwargs, the upstream cell it starts from (a CELLS label),
# backbone only (the plain ViT's weights without position embedding, a fresh nested embedding)
UPSTREAM_DATASET = "flowers"
UPSTREAM_CELLS = [
    ("plain ViT, plain images, fine-tuned from flowers plain ViT", PLAIN_VIT, "plain", False, {},
     "plain ViT, plain images", False),
    ("inv ViT (bs group), per-image patch-shuffle, fine-tuned from flowers (same design)", INV_VIT, "patch-shuffle",
     True, {"invariance": "bs"}, "inv ViT (bs group), per-image patch-shuffle", False),
    ("inv ViT (etc-nested group, m=4, mean pool), per-image etc-nested, fine-tuned from flowers (same design)",
     INV_VIT, "etc-nested", True, {"invariance": "etc-nested", "sub_block": 4},
     "inv ViT (etc-nested group, m=4, mean pool), per-image etc-nested", False),
    ("inv ViT (etc-nested group, m=4, attention pool), per-image etc-nested, fine-tuned from flowers (same design)",
     INV_VIT, "etc-nested", True, {"invariance": "etc-nested", "sub_block": 4, "inv_pool": "attn"},
     "inv ViT (etc-nested group, m=4, attention pool), per-image etc-nested", False),
    ("inv ViT (etc-nested group, m=4, set pool), per-image etc-nested, fine-tuned from flowers (same design)",
     INV_VIT, "etc-nested", True, {"invariance": "etc-nested", "sub_block": 4, "inv_pool": "set"},
     "inv ViT (etc-nested group, m=4, set pool), per-image etc-nested", False),
    ("inv ViT (etc-nested group, m=4, mean pool), per-image etc-nested, fine-tuned from flowers plain ViT backbone",
     INV_VIT, "etc-nested", True, {"invariance": "etc-nested", "sub_block": 4}, "plain ViT, plain images", True),
]


def slug(label: str) -> str:
    keep = "".join(ch if ch.isalnum() else "-" for ch in label.lower())
    return "-".join(p for p in keep.split("-") if p)


def run_cell(args, ds: Dict, label: str, model: str, scheme: str, per_image: bool, kw: Dict,
             key_path: Path, pretrained: Optional[str] = None) -> Dict:
    """Train one cell (resuming a cut-off run) and return its row."""
    p = {**ds, **PRESETS[args.preset]}
    epochs = args.epochs or p["epochs"]
    run = args.out / "runs" / f"{args.dataset}__{slug(label)}"
    kw = {**kw, "patch_size": ds["block"]}
    cfg = TrainConfig(data=str(args.data or ds["data"]), model=model, out=str(run),
                      scheme=None if scheme == "plain" else scheme, key=None if scheme == "plain" else str(key_path),
                      block_size=None if scheme == "plain" else ds["block"], per_image=per_image,
                      epochs=epochs, batch_size=p["batch"], lr=LR, subset=p["subset"],
                      test_subset=p["test_subset"], img_size=args.img_size or ds.get("img_size"), seed=args.seed,
                      device=args.device, model_kwargs=kw,
                      pretrained=pretrained, resume=(run / "last.pt").exists())
    summary = train(cfg, show_progress=False)
    return {"dataset": args.dataset, "cell": label, "model": model, "model_kwargs": kw, "scheme": scheme,
            "per_image": per_image, "accuracy": summary["test_acc"], "best_test_accuracy": summary["best_test_acc"], "final_accuracy": summary["final_test_acc"],
            "parameters": summary["parameters"], "train_seconds": summary["train_seconds"], "epochs": epochs,
            "n_train": summary["n_train"], "n_test": summary["n_test"], "img_size": summary.get("img_size"),
            "preset": args.preset, "run": str(run)}


def finetune_source(args, nested: bool = False) -> Optional[str]:
    """The plain ViT's best checkpoint as an invariant ViT state dict (position embedding dropped, the
    patch conv as the canonical embedding's linear map), written beside the runs; None if not trained yet."""
    src = args.out / "runs" / f"{args.dataset}__{slug(CELLS[0][0])}" / "best.pt"
    if not src.exists():
        return None
    dst = args.out / "runs" / f"{args.dataset}__plain-upstream-as-{'nested-' if nested else ''}invariant.pth"
    return plain_as_invariant(src, dst, DATASETS[args.dataset]["block"], nested)


def plain_as_invariant(src: Path, dst: Path, patch: int, nested: bool) -> str:
    """Write the plain ViT checkpoint ``src`` as an invariant ViT state dict to ``dst`` and return its path:
    position embedding dropped; the patch conv as the canonical embedding's linear map, or, ``nested``, a fresh
    sub-block embedding (seed 0: it has no counterpart in the plain patch embedding)."""
    import torch

    from patchcrypt.models.layers import conv_to_matrix

    sd = torch.load(src, map_location="cpu", weights_only=False)["state_dict"]
    sd = {k: v for k, v in sd.items() if k != "pos_embed"}
    if nested:
        from patchcrypt.models import create_model

        fresh = create_model(INV_VIT, seed=0, patch_size=patch, invariance="etc-nested",
                             num_classes=sd["head.weight"].shape[0]).state_dict()
        sd = {k: v for k, v in sd.items() if not k.startswith("patch_embed.")}
        sd.update({k: v for k, v in fresh.items() if k.startswith("patch_embed.")})
    else:
        sd["patch_embed.proj.weight"] = conv_to_matrix(sd["patch_embed.proj.weight"])
    atomic_write(dst, lambda f: torch.save(sd, f))
    return str(dst)


def upstream_runs(upstream: Path, dataset: str, labels: Optional[List[str]] = None) -> Path:
    """The folder of upstream runs ``--upstream`` names (a flowers ``--out`` or its ``runs/``), checked: every
    run that the cells ``labels`` of :data:`UPSTREAM_CELLS` (default all) start from must have its last.pt.
    One line when something is missing."""
    if dataset == UPSTREAM_DATASET:
        raise PatchcryptError(f"--upstream: the upstream runs are {UPSTREAM_DATASET} runs; fine-tune them on "
                              f"another --dataset (hymenoptera)")
    if not upstream.is_dir():
        raise PatchcryptError(f"--upstream {upstream}: no such folder (give the {UPSTREAM_DATASET} runs: an "
                              f"--out of --dataset {UPSTREAM_DATASET} or its runs/ folder)")
    runs = upstream / "runs" if (upstream / "runs").is_dir() else upstream
    for label, *_, source, _backbone in UPSTREAM_CELLS:
        if labels is not None and label not in labels:
            continue
        ckpt = runs / f"{UPSTREAM_DATASET}__{slug(source)}" / "last.pt"
        if not ckpt.is_file():
            raise PatchcryptError(f"--upstream {upstream}: no {ckpt.relative_to(upstream)} (train the "
                                  f"{UPSTREAM_DATASET} cell {source!r} first)")
    return runs


def upstream_weights(args, runs: Path, source: str, backbone: bool) -> str:
    """What a fine-tuned cell starts from: the upstream run of its design (last.pt, loaded as it is: the
    loader resizes the position embedding and replaces the head), or the plain run's backbone as a nested
    invariant ViT state dict (written beside this --out's runs)."""
    ckpt = runs / f"{UPSTREAM_DATASET}__{slug(source)}" / "last.pt"
    if not backbone:
        return str(ckpt)
    dst = args.out / "runs" / f"{args.dataset}__{UPSTREAM_DATASET}-upstream-as-nested-invariant.pth"
    dst.parent.mkdir(parents=True, exist_ok=True)
    return plain_as_invariant(ckpt, dst, DATASETS[args.dataset]["block"], nested=True)


def costs() -> str:
    """Parameters and patch-embedding multiply-adds per image of the plain and invariant ViT-pico, both data
    sets (counted from the layer shapes: canonical = key matmul L·G·K + linear L·D per block; pooled =
    G·H·L + H·D per block; plain = L·D per block)."""
    from patchcrypt.models import create_model

    lines = ["| data | model | group order G | parameters | embedding MACs per image |", "|---|---|---|---|---|"]
    for name, ds in DATASETS.items():
        m = ds["block"]
        size = ds.get("img_size") or 32
        n, L = (size // m) ** 2, m * m * 3
        for label, model_name, kw in (("plain ViT", PLAIN_VIT, {}), ("inv, canonical", INV_VIT, {}),
                                      ("inv, orbit-pooled", INV_VIT, {"inv_embed": "pool"})):
            model = create_model(model_name, img_size=size, patch_size=m, **kw)
            d = model.embed_dim
            if model_name == PLAIN_VIT:
                g, macs = 1, n * L * d
            else:
                g = 96
                pe = model.patch_embed
                macs = n * (L * g * pe.canon.n_keys + L * d) if kw == {} else \
                    n * (g * pe.inner.out_features * L + pe.inner.out_features * d)
            params = sum(p.numel() for p in model.parameters())
            lines.append(f"| {name} {size}px M={m} | {label} | {g} | {params:,} | {macs / 1e6:.2f}M |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=sorted(DATASETS), default="cifar")
    ap.add_argument("--data", default=None, help="override the data folder of --dataset")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    ap.add_argument("--epochs", type=int, default=None, help="fewer epochs than the preset (labelled as such)")
    ap.add_argument("--out", type=Path, default=Path("results/invariant_table"))
    ap.add_argument("--device", default=None)
    ap.add_argument("--img-size", type=int, default=None, help="bring the images to this size instead of the "
                    "data set's (default: hymenoptera 224, the others the model name's 32)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", action="append", default=None, help="run only cells whose label contains this "
                    "text (repeat for several; several processes may share one --out)")
    ap.add_argument("--skip", default=None, help="skip cells whose label contains this text")
    ap.add_argument("--finetune", action="store_true", help="also fine-tune the invariant ViT (etc group) from "
                    "the plain ViT cell's weights")
    ap.add_argument("--upstream", type=Path, default=None, help=f"run the fine-tuned block instead: every design "
                    f"started from the {UPSTREAM_DATASET} run of the same design in this folder (an --out of "
                    f"--dataset {UPSTREAM_DATASET}, or its runs/)")
    ap.add_argument("--costs", action="store_true", help="print parameters and embedding cost, train nothing")
    ap.add_argument("--report", action="store_true", help="print the table of what OUT holds, train nothing")
    args = ap.parse_args(argv)
    if args.costs:
        print(costs())
        return 0
    if args.report:
        report(args.out)
        return 0
    try:
        return run_cells(args)
    except PatchcryptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def selected(args, label: str, scheme: str) -> bool:
    """Whether ``--only`` / ``--skip`` keep a cell, and whether it applies to ``--dataset``."""
    if (args.only and not any(o in label for o in args.only)) or (args.skip and args.skip in label):
        return False
    nested = scheme in ("patch-shuffle", "etc-nested")
    # the nested cells need patches of several sub-blocks; the others keep their own M
    return not ((nested and args.dataset not in NESTED_OK)
                or (not nested and scheme != "plain" and args.dataset in NESTED_ONLY))


def run_cells(args) -> int:
    """Train every cell the arguments select that OUT does not hold yet (a cut-off one resumes)."""
    ds = DATASETS[args.dataset]
    cells = list(CELLS) + (FINETUNE_CELLS if args.finetune else [])
    upstream = {c[0]: c[5:] for c in UPSTREAM_CELLS}
    if args.upstream is not None:
        cells = [c[:5] for c in UPSTREAM_CELLS]
    cells = [c for c in cells if selected(args, c[0], c[2])]
    runs = None
    if args.upstream is not None:   # checked before anything is written
        runs = upstream_runs(args.upstream, args.dataset, [c[0] for c in cells])
    args.out.mkdir(parents=True, exist_ok=True)
    key_path = args.out / "owner.key"
    if not key_path.exists():
        Key.generate().save(key_path)
    for i, (label, model, scheme, per_image, kw) in enumerate(cells, 1):
        cell_file = args.out / f"{args.dataset}__{slug(label)}.json"
        epochs = args.epochs or PRESETS[args.preset]["epochs"]
        if cell_file.exists() and (json.loads(cell_file.read_text()).get("preset"), json.loads(
                cell_file.read_text()).get("epochs")) == (args.preset, epochs):
            continue
        pretrained, source = None, None
        if runs is not None:
            pretrained = upstream_weights(args, runs, *upstream[label])
            source = f"{UPSTREAM_DATASET}: {upstream[label][0]}" + (" (backbone)" if upstream[label][1] else "")
        elif "fine-tuned" in label:
            pretrained = finetune_source(args, nested=scheme == "etc-nested")
            if pretrained is None:
                print(f"[{i}/{len(cells)}] {label}: needs the plain ViT cell first; skipped", flush=True)
                continue
        print(f"[{i}/{len(cells)}] {args.dataset}: {label}", flush=True)
        row = run_cell(args, ds, label, model, scheme, per_image, kw, key_path, pretrained)
        if source:
            row["upstream"] = source
        atomic_write(cell_file, json.dumps(row, indent=1))
        report(args.out)
    report(args.out)
    return 0


def load_rows(out: Path) -> List[Dict]:
    """Every finished cell under ``out`` (one JSON file per cell)."""
    return [json.loads(p.read_text()) for p in sorted(out.glob("*__*.json"))]


def unfinished_rows(out: Path) -> List[Dict]:
    """Cells with epochs done but no result yet (running, or cut off): the last finished epoch's accuracy."""
    labels = {slug(c[0]): c[0] for c in CELLS + FINETUNE_CELLS + UPSTREAM_CELLS}
    rows = []
    for run in sorted((out / "runs").glob("*__*")):
        dataset, _, cell = run.name.partition("__")
        if not (run / "metrics.csv").exists() or (out / f"{run.name}.json").exists() or cell not in labels:
            continue
        lines = (run / "metrics.csv").read_text().strip().splitlines()
        if len(lines) < 2:
            continue
        cols = lines[0].split(",")
        epochs = [dict(zip(cols, ln.split(","))) for ln in lines[1:]]
        planned = _planned_epochs(run)
        rows.append({"dataset": dataset, "cell": labels[cell], "epochs_done": len(epochs),
                     "epochs_planned": planned, "accuracy": max(float(e["test_acc"]) for e in epochs),
                     "last_accuracy": float(epochs[-1]["test_acc"]),
                     "train_seconds": sum(float(e["seconds"]) for e in epochs)})
    return rows


def _epoch_acc(run: Path) -> List[float]:
    """Test accuracy after each finished epoch of a run folder (empty if none)."""
    path = run / "metrics.csv"
    if not path.exists():
        return []
    lines = path.read_text().strip().splitlines()
    col = lines[0].split(",").index("test_acc")
    return [float(ln.split(",")[col]) for ln in lines[1:]]


def matched_gaps(out: Path, dataset: str) -> List[Dict]:
    """Every cell against the plain ViT at the same epoch of the same schedule (for runs not finished yet):
    ``{"cell", "epoch", "planned", "accuracy", "plain", "gap"}``, gap in points."""
    plain = _epoch_acc(out / "runs" / f"{dataset}__{slug(CELLS[0][0])}")
    rows = []
    for label, *_ in CELLS[1:]:
        run = out / "runs" / f"{dataset}__{slug(label)}"
        acc = _epoch_acc(run)
        k = min(len(acc), len(plain))
        if k:
            rows.append({"cell": label, "epoch": k, "planned": _planned_epochs(run), "accuracy": acc[k - 1],
                         "plain": plain[k - 1], "gap": round(100 * (plain[k - 1] - acc[k - 1]), 2)})
    return rows


def _planned_epochs(run: Path) -> Optional[int]:
    for line in (run / "config.yaml").read_text().splitlines() if (run / "config.yaml").exists() else []:
        if line.startswith("epochs:"):
            return int(line.split(":", 1)[1])
    return None


def standard_error_note(rows: List[Dict]) -> str:
    """One line under a table: what one seed's accuracy on the test split can tell (binomial standard error)."""
    sizes = sorted({r["n_test"] for r in rows})
    if not sizes:
        return ""
    n = sizes[0]
    return (f"\n\nOne seed per cell. On {n:,} test images the standard error of one accuracy p is "
            f"sqrt(p(1-p)/{n}): {100 * (0.25 / n) ** 0.5:.1f} points at p = 0.5.")


def report(out: Path) -> str:
    rows = load_rows(out)
    md_parts = []
    for dataset in sorted({r["dataset"] for r in rows + unfinished_rows(out)}):
        rs = [r for r in rows if r["dataset"] == dataset]
        # the plain ViT of each block: from scratch, or fine-tuned from the upstream (--upstream)
        plain = {(r["preset"], r["cell"] == UPSTREAM_CELLS[0][0]): r["accuracy"] for r in rs
                 if r["cell"] in (CELLS[0][0], UPSTREAM_CELLS[0][0])}
        order = [c[0] for c in CELLS + FINETUNE_CELLS + UPSTREAM_CELLS]
        rs.sort(key=lambda r: (r["preset"], order.index(r["cell"]) if r["cell"] in order else len(order)))
        table = []
        for r in rs:
            base = plain.get((r["preset"], "upstream" in r))
            r["gap_to_plain"] = None if base is None else round(100 * (base - r["accuracy"]), 2)
            table.append({"cell": r["cell"], "preset": r["preset"], "epochs": r["epochs"],
                          "train/test": f"{r['n_train']}/{r['n_test']}", "params": r["parameters"],
                          "accuracy %": f"{100 * r['accuracy']:.2f}",
                          "gap to plain (points)": "" if r["gap_to_plain"] is None else f"{r['gap_to_plain']:.2f}",
                          "train s": f"{r['train_seconds']:.0f}"})
        md = f"### {dataset}\n\n" + (markdown_table(table, list(table[0])) if table else "(no finished cell yet)")
        if any("upstream" in r for r in rs):
            md += (f"\n\nRows fine-tuned from {UPSTREAM_DATASET} (--upstream): gap to the plain ViT fine-tuned from "
                   f"the plain {UPSTREAM_DATASET} ViT.")
        md += standard_error_note(rs)
        partial = [r for r in unfinished_rows(out) if r["dataset"] == dataset]
        if partial:
            md += "\n\nNot finished (best test accuracy so far; the schedule's cosine decay has not ended):\n\n" + \
                markdown_table([{"cell": r["cell"], "epochs done": f"{r['epochs_done']}/{r['epochs_planned']}",
                                 "accuracy so far %": f"{100 * r['accuracy']:.2f}",
                                 "train s": f"{r['train_seconds']:.0f}"} for r in partial],
                               ["cell", "epochs done", "accuracy so far %", "train s"])
        md_parts.append(md)
        same = matched_gaps(out, dataset)
        if same:
            md += "\n\nAt the same epoch of the same schedule as the plain ViT (test accuracy after that epoch):\n\n" + \
                markdown_table([{"cell": r["cell"], "epoch": f"{r['epoch']}/{r['planned']}",
                                 "accuracy %": f"{100 * r['accuracy']:.2f}", "plain ViT %": f"{100 * r['plain']:.2f}",
                                 "gap (points)": f"{r['gap']:.2f}"} for r in same],
                               ["cell", "epoch", "accuracy %", "plain ViT %", "gap (points)"])
        (out / f"table_{dataset}.md").write_text(md + "\n")
    md = "\n\n".join(md_parts)
    print(md, flush=True)
    write_results(out, "invariant_table", {"datasets": sorted(DATASETS)}, rows, md)
    return md


if __name__ == "__main__":
    sys.exit(main())
