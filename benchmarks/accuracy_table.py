"""The accuracy table: models × schemes on CIFAR-10, same budget and seed in every cell.

    .venv/bin/python benchmarks/accuracy_table.py                 # CPU preset (about two hours on 2 cores)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/accuracy_table.py --exclude ResNet &   # or as two
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/accuracy_table.py --only ResNet        # single-thread halves

CPU preset: 10,000 training images (balanced subset), all 10,000 test images, 10 epochs, batch 128, seed 0,
M = patch = 4 at 32×32; vit_pico_patch4_32 (142k parameters), convmixer_128_4_patch4_32 (89k), ResNet-18
at width 8 (176k) with and without the block-wise adaptation network (184k). The 30 cells took 122 min of
training in total.
    .venv/bin/python benchmarks/accuracy_table.py --full          # paper-length schedules, for a GPU
    .venv/bin/python benchmarks/accuracy_table.py --quick         # a smoke run in a few minutes

Every cell is a run folder under OUT/runs/<model>__<scheme>; a finished cell (summary.json) is skipped and
a cut-off cell resumes from its last.pt, so the script can be re-run until the table is complete.
results.json, table.md and accuracy.png are rewritten after every cell. All cells share one key, generated
on the first run and kept in OUT/owner.key (mode 0600; never printed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

from patchcrypt import Key  # noqa: E402
from patchcrypt.atomic import atomic_write  # noqa: E402
from patchcrypt.train import TrainConfig, train  # noqa: E402

SCHEMES = [("plain", "plain", None), ("block-pixel", "block-pixel", None), ("etc", "etc", None),
           ("etc + JPEG Q=90", "etc", 90), ("le", "le", None), ("ele", "ele", None), ("pe", "pe", None)]

PRESETS = {
    # name: (train images, test images, epochs, batch, models: label -> (registry name, kwargs, lr))
    "quick": dict(subset=1000, test_subset=1000, epochs=2, batch=128),
    "cpu": dict(subset=10000, test_subset=None, epochs=10, batch=128),
    "full": dict(subset=None, test_subset=None, epochs=200, batch=128),
}
MODELS = {
    "cpu": {"ViT": ("vit_pico_patch4_32", {}, 2e-3), "ConvMixer": ("convmixer_128_4_patch4_32", {}, 5e-3),
            # width 8: 176k parameters, the size of the CPU ViT (142k), and a cell in ~1/4 of width 16's time
            "ResNet-18": ("resnet18_cifar", {"width": 8}, 2e-3),
            "ResNet-18 + adaptation": ("resnet18_cifar_adapt", {"width": 8}, 2e-3)},
    "full": {"ViT": ("vit_small_patch4_32", {}, 1e-3), "ConvMixer": ("convmixer_256_8_patch4_32", {}, 1e-2),
             "ResNet-18": ("resnet18_cifar", {}, 1e-3), "ResNet-18 + adaptation": ("resnet18_cifar_adapt", {}, 1e-3)},
}
MODELS["quick"] = MODELS["cpu"]
EXTRA = [("ViT, position-wise embedding", "ViT", {"embed": "blockwise"}, ["etc", "etc + JPEG Q=90"])]


# run order: the isotropic models first (the claim under test), then the baselines; the table layout is fixed
ORDER = ["ViT", "ViT, position-wise embedding", "ConvMixer", "ResNet-18", "ResNet-18 + adaptation"]


def cells(preset: str):
    return sorted(_cells(preset), key=lambda c: ORDER.index(c[0]) if c[0] in ORDER else len(ORDER))


def _cells(preset: str):
    models = MODELS[preset]
    for scheme_label, scheme, q in SCHEMES:
        for model_label, (name, kw, lr) in models.items():
            yield model_label, scheme_label, name, dict(kw), lr, scheme, q
    for row_label, base, extra_kw, schemes in EXTRA:
        name, kw, lr = models[base]
        for scheme_label, scheme, q in SCHEMES:
            if scheme_label in schemes:
                yield row_label, scheme_label, name, {**kw, **extra_kw}, lr, scheme, q


def slug(*parts: str) -> str:
    return "__".join(p.lower().replace(" ", "-").replace(",", "").replace("+", "plus").replace("=", "") for p in parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
                                          / "cifar10-jpeg"))
    ap.add_argument("--out", type=Path, default=Path("results/accuracy_table"))
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--full", action="store_true", help="all 50,000 images, paper-length schedules (GPU)")
    group.add_argument("--quick", action="store_true", help="a smoke run")
    ap.add_argument("--device", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None, help="run only cells whose model or scheme contains this text; "
                    "several processes with different --only may share one --out")
    ap.add_argument("--exclude", default=None, help="skip cells whose model or scheme contains this text")
    args = ap.parse_args(argv)
    preset = "full" if args.full else "quick" if args.quick else "cpu"
    p = PRESETS[preset]
    args.out.mkdir(parents=True, exist_ok=True)
    key_path = args.out / "owner.key"
    if not key_path.exists():
        Key.generate().save(key_path)
    results_path = args.out / "results.json"
    done = {}
    if results_path.exists():
        for r in json.loads(results_path.read_text()).get("rows", []):
            done[(r["model"], r["scheme"])] = r
    header = (f"CIFAR-10 ({args.data}); {p['subset'] or 50000} training images, "
              f"{p['test_subset'] or 10000} test images, {p['epochs']} epochs, batch {p['batch']}, "
              f"seed {args.seed}, M = 4 at 32×32; preset '{preset}'")
    print(header, flush=True)
    all_cells = list(cells(preset))
    for i, (model_label, scheme_label, name, kw, lr, scheme, q) in enumerate(all_cells, 1):
        if args.only and args.only not in model_label and args.only not in scheme_label:
            continue
        if args.exclude and (args.exclude in model_label or args.exclude in scheme_label):
            continue
        run = args.out / "runs" / slug(model_label, scheme_label)
        if (model_label, scheme_label) in done and (run / "summary.json").exists():
            continue
        print(f"[{i}/{len(all_cells)}] {model_label} on {scheme_label} ({name})", flush=True)
        cfg = TrainConfig(data=args.data, model=name, out=str(run), scheme=None if scheme == "plain" else scheme,
                          key=None if scheme == "plain" else str(key_path), block_size=None if scheme == "plain" else 4,
                          jpeg_quality=q, epochs=p["epochs"], batch_size=p["batch"], lr=lr, subset=p["subset"],
                          test_subset=p["test_subset"], seed=args.seed, device=args.device, model_kwargs=kw,
                          resume=(run / "last.pt").exists())
        summary = train(cfg, show_progress=False)
        done[(model_label, scheme_label)] = {
            "model": model_label, "scheme": scheme_label, "registry_name": name, "model_kwargs": kw,
            "accuracy": summary["test_acc"], "best_test_accuracy": summary["best_test_acc"], "final_accuracy": summary["final_test_acc"],
            "parameters": summary["parameters"], "train_seconds": summary["train_seconds"],
            "encrypt_fraction": summary["encrypt_fraction"], "run": str(run)}
        report(args.out, header, preset, done)
    report(args.out, header, preset, done)
    return 0


def report(out: Path, header: str, preset: str, done) -> None:
    # cells finished by another process on the same folder (e.g. one per model family with --only) count too
    if (out / "results.json").exists():
        for r in json.loads((out / "results.json").read_text()).get("rows", []):
            if Path(r.get("run", ""), "summary.json").exists():
                done.setdefault((r["model"], r["scheme"]), r)
    rows = list(done.values())
    display = ["ViT", "ConvMixer", "ResNet-18", "ResNet-18 + adaptation", "ViT, position-wise embedding"]
    models = sorted(dict.fromkeys(r["model"] for r in rows),
                    key=lambda m: display.index(m) if m in display else len(display))
    schemes = [s for s, _, _ in SCHEMES]
    plain = {r["model"]: r["accuracy"] for r in rows if r["scheme"] == "plain"}
    for r in rows:
        base = plain.get(r["model"]) if "position-wise" not in r["model"] else plain.get("ViT")
        r["drop_vs_plain"] = None if base is None else round(100 * (base - r["accuracy"]), 2)
    table_rows = []
    for s in schemes:
        row = {"scheme": s}
        for m in models:
            r = done.get((m, s))
            row[m] = "" if r is None else (f"{100 * r['accuracy']:.1f}" + (
                "" if r["drop_vs_plain"] is None or s == "plain" else f" ({-r['drop_vs_plain']:+.1f})"))
        table_rows.append(row)
    md = header + "\n\nTop-1 test accuracy in % (in brackets: change vs the same model on plain images)\n\n" + \
        markdown_table(table_rows, ["scheme"] + models)
    print(md, flush=True)
    (out / "table.md").write_text(md + "\n")
    figures = []
    if rows:
        _chart(out / "accuracy.png", models, schemes, done)
        figures = ["accuracy.png"]
    write_results(out, "accuracy_table", {"preset": preset, "header": header}, rows, md, figures)


def _chart(path: Path, models, schemes, done) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(11, 4.2))
    width = 0.8 / max(1, len(models))
    x = np.arange(len(schemes))
    for k, m in enumerate(models):
        vals = [100 * done[(m, s)]["accuracy"] if (m, s) in done else np.nan for s in schemes]
        ax.bar(x + (k - (len(models) - 1) / 2) * width, vals, width, label=m)
    ax.set_xticks(x, schemes, rotation=15)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("CIFAR-10: models trained and tested on encrypted images")
    ax.set_ylim(0, 100)  # room above the bars for the legend
    ax.legend(fontsize=8, ncols=len(models), loc="upper center")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
