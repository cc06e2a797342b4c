"""The transfer table: a ViT pretrained on plain images of five CIFAR-10 classes, fine-tuned on encrypted
images of the other five (a task it never saw), against training from scratch.

    .venv/bin/python benchmarks/transfer_table.py              # CPU preset (see --help for the sizes)
    .venv/bin/python benchmarks/transfer_table.py --quick      # a smoke run in a few minutes
    .venv/bin/python benchmarks/transfer_table.py --models vit,convmixer   # ConvMixer rows too

Upstream: ``--model`` trained plain on ``--up-images`` images of airplane, automobile, bird, cat, deer for
``--up-epochs`` epochs (once; cached in OUT/runs/upstream-<model>). Downstream: dog, frog, horse, ship,
truck, ``--images`` training images, ``--test-images`` test images, ``--epochs`` epochs, batch 128, seed 0,
M = patch = 4 at 32×32. Rows: the images the downstream model is trained and tested on; columns:

* from scratch: random init, trained on those images (lr ``--scratch-lr``);
* fine-tune, --init plain: the paper's method, the plain pretrained weights fine-tuned on encrypted images;
* fine-tune, --init keyed: the pretrained weights first transformed with the key (centred inputs;
  position-wise embeddings for per-block keys), then fine-tuned;
* linear probe, keyed init: the keyed backbone frozen, the head alone trained.

Fine-tuning and probe cells use ``--lr``. Every cell has the same data, budget and seed; the reported
figure is the test accuracy after the last epoch. One extra cell, "plain, position-wise embedding", is plain
fine-tuning with the shared embedding copied to every position: the exact counterpart of keyed init on
etc (keyed etc fine-tuning is its keyed image), so its gap to plain fine-tuning measures what untying the
embedding costs (each position's embedding then sees only its own gradient).

Resumable: each cell is a run folder under OUT/runs/; finished cells are skipped, a cut-off cell resumes
from its last.pt. results.json and table.md are rewritten after every cell. One key for all cells, made on
the first run and kept in OUT/owner.key (mode 0600; never printed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

import torch  # noqa: E402

from patchcrypt import Key  # noqa: E402
from patchcrypt.errors import PatchcryptError  # noqa: E402
from patchcrypt.train import TrainConfig, train  # noqa: E402

UPSTREAM = ["airplane", "automobile", "bird", "cat", "deer"]
DOWNSTREAM = ["dog", "frog", "horse", "ship", "truck"]
ROWS = [("plain", "plain", None), ("block-pixel", "block-pixel", None), ("etc", "etc", None),
        ("etc + JPEG Q=90", "etc", 90), ("le", "le", None)]
COLUMNS = ["from scratch", "fine-tune, --init plain (paper)", "fine-tune, --init keyed", "linear probe, keyed init"]
MODELS = {"vit": ("ViT", "vit_pico_patch4_32", {}), "convmixer": ("ConvMixer", "convmixer_128_4_patch4_32", {})}
PRESETS = {"cpu": dict(up_images=10000, up_epochs=4, images=2000, epochs=5, test_images=2000),
           "quick": dict(up_images=2000, up_epochs=1, images=500, epochs=1, test_images=500)}


def split_tree(data: Path, out: Path, classes) -> Path:
    """An ImageFolder of ``classes`` only: symlinks to the class folders of ``data``/{train,test}."""
    for split in ("train", "test"):
        (out / split).mkdir(parents=True, exist_ok=True)
        for c in classes:
            link = out / split / c
            if not link.exists():
                if not (data / split / c).is_dir():
                    raise PatchcryptError(f"{data / split / c}: no such class folder")
                os.symlink((data / split / c).resolve(), link)
    return out


def slug(*parts: str) -> str:
    return "__".join(p.lower().replace(" ", "-").replace(",", "").replace("+", "plus").replace("=", "")
                     .replace("--", "") for p in parts)


def cells(models):
    """(model label, row label, column, scheme, jpeg quality, registry name, model kwargs) in run order.

    The order puts the comparisons the table is for first (fine-tuning plain vs keyed on the schemes a ViT
    can absorb), so a cut-off run still answers the main question; the table layout is fixed.
    """
    rows = {r: (scheme, q) for r, scheme, q in ROWS}
    ft_plain, ft_keyed, scratch, probe = COLUMNS[1], COLUMNS[2], COLUMNS[0], COLUMNS[3]
    order = [("plain", ft_plain), ("block-pixel", ft_plain), ("block-pixel", ft_keyed), ("etc", ft_plain),
             ("etc", ft_keyed), ("plain", scratch), ("block-pixel", scratch), ("etc", scratch),
             ("plain, position-wise embedding", ft_plain), ("etc + JPEG Q=90", ft_plain),
             ("etc + JPEG Q=90", ft_keyed), ("etc + JPEG Q=90", scratch), ("le", scratch), ("le", ft_plain),
             ("plain", probe), ("block-pixel", probe), ("etc", probe), ("etc + JPEG Q=90", probe)]
    # not run: keyed columns on le (refused: nibble schemes are not affine in pixel values, shown as n/a);
    # --init keyed on plain images (the identity key: the same run as --init plain)
    for m in models:
        label, name, kw = MODELS[m]
        for row, col in order:
            if row.startswith("plain, position-wise"):
                yield label, row, col, "plain", None, name, {**kw, "embed": "blockwise"}
            else:
                yield label, row, col, rows[row][0], rows[row][1], name, kw


def trajectory(out: Path, up_ckpt: Path, down_data: Path, key_path: Path, steps: int, lr: float, seed: int) -> str:
    """How closely keyed fine-tuning on encrypted batches follows plain fine-tuning on the same plain batches.

    ``steps`` AdamW steps (batch 64, the library's optimiser and weight-decay groups, no augmentation) from
    the upstream model, on real downstream images; compared on 1,000 downstream test images.
    """
    import copy

    from patchcrypt.ciphers import create_cipher
    from patchcrypt.data import load_dataset
    from patchcrypt.models import create_model, load_checkpoint
    from patchcrypt.models.keyed import apply_key, block_maps, centre_input
    from patchcrypt.models.pretrained import load_weights
    from patchcrypt.runtime import to_nchw
    from patchcrypt.train import make_optimizer

    torch.manual_seed(seed)
    key = Key.load(key_path)
    tr = load_dataset(down_data, "train").subset(steps * 64, seed)
    te = load_dataset(down_data, "test").subset(1000, seed)
    x_tr, y_tr, x_te = to_nchw(tr.images), torch.from_numpy(tr.labels), to_nchw(te.images)
    order = torch.randperm(len(x_tr), generator=torch.Generator().manual_seed(seed))
    batches = [(x_tr[order[i:i + 64]], y_tr[order[i:i + 64]]) for i in range(0, len(order), 64)]
    ckpt = load_checkpoint(up_ckpt)

    def upstream(embed: str = "shared"):  # the same fresh head whatever the embedding
        m = create_model(ckpt["model"], seed=seed, num_classes=len(tr.classes))
        load_weights(m, up_ckpt, classes=tr.classes)
        return m.to_blockwise() if embed == "blockwise" else m

    def fit(model, cipher):
        opt = make_optimizer(model, TrainConfig(lr=lr))
        model.train()
        for x, y in batches:
            loss = torch.nn.functional.cross_entropy(model(cipher.encrypt(x) if cipher else x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            return model(cipher.encrypt(x_te) if cipher else x_te)

    cases = [("block-pixel", "centred keyed init (--init keyed)", True, "shared"),
             ("block-pixel", "uncentred keyed model (keyed-model's transformation)", False, "shared"),
             ("etc", "centred keyed init, vs plain fine-tuning (shared embedding)", True, "shared"),
             ("etc", "centred keyed init, vs plain fine-tuning (position-wise embedding)", True, "blockwise")]
    rows, cache = [], {}
    for scheme, label, centred, plain_embed in cases:
        cipher = create_cipher(scheme, key, block_size=4)
        plain = upstream(plain_embed)
        keyed = copy.deepcopy(upstream())
        if centred:
            centre_input(plain)
        apply_key(keyed, block_maps(scheme, key, 4, plain.img_size), centred=centred)
        with torch.no_grad():
            start = float((keyed.eval()(cipher.encrypt(x_te)) - plain.eval()(x_te)).abs().max())
        ref_key = (plain_embed, centred)
        ref = cache[ref_key] if ref_key in cache else fit(plain, None)
        cache[ref_key] = ref
        got = fit(keyed, cipher)
        rows.append({"images": scheme, "keyed model": label, "max abs Δlogit before": f"{start:.1e}",
                     f"max abs Δlogit after {steps} steps": f"{float((got - ref).abs().max()):.1e}",
                     "mean abs Δlogit": f"{float((got - ref).abs().mean()):.1e}",
                     "same prediction": f"{100 * float((got.argmax(1) == ref.argmax(1)).float().mean()):.1f}%"})
    cols = list(rows[0])
    md = (f"Keyed fine-tuning on encrypted batches vs plain fine-tuning on the same plain batches: {steps} AdamW "
          f"steps (lr {lr}, batch 64) from the upstream model, logits on 1,000 downstream test images\n\n"
          + markdown_table(rows, cols))
    print(md, flush=True)
    (out / "trajectory.md").write_text(md + "\n")
    (out / "trajectory.json").write_text(json.dumps({"steps": steps, "lr": lr, "rows": rows}, indent=1))
    return md


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared"
                    / "datasets" / "cifar10-jpeg")
    ap.add_argument("--out", type=Path, default=Path("results/transfer_table"))
    ap.add_argument("--quick", action="store_true", help="a smoke run (tiny sizes)")
    ap.add_argument("--models", default="vit", help="comma-separated: vit, convmixer")
    ap.add_argument("--up-images", type=int, default=None, help="upstream training images (5 classes)")
    ap.add_argument("--up-epochs", type=int, default=None)
    ap.add_argument("--images", type=int, default=None, help="downstream training images (5 other classes)")
    ap.add_argument("--epochs", type=int, default=None, help="downstream epochs, every cell")
    ap.add_argument("--test-images", type=int, default=None, help="downstream test images (of 5,000)")
    ap.add_argument("--lr", type=float, default=1e-3, help="fine-tuning and probe learning rate")
    ap.add_argument("--scratch-lr", type=float, default=2e-3, help="learning rate from scratch (and upstream)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None)
    ap.add_argument("--only", default=None, help="run only cells whose row or column contains this text")
    ap.add_argument("--trajectory", type=int, default=None, metavar="STEPS",
                    help="instead of the grid: compare keyed and plain fine-tuning step by step for STEPS steps "
                    "(needs the upstream model; trains it if absent)")
    args = ap.parse_args(argv)
    p = dict(PRESETS["quick" if args.quick else "cpu"])
    for k in p:
        if getattr(args, k) is not None:
            p[k] = getattr(args, k)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; valid: {', '.join(MODELS)}")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    key_path = out / "owner.key"
    if not key_path.exists():
        Key.generate().save(key_path)
    up_data = split_tree(args.data, out / "data" / "upstream", UPSTREAM)
    down_data = split_tree(args.data, out / "data" / "downstream", DOWNSTREAM)
    config = {**p, "lr": args.lr, "scratch_lr": args.scratch_lr, "seed": args.seed, "models": models,
              "upstream_classes": UPSTREAM, "downstream_classes": DOWNSTREAM}
    header = (f"CIFAR-10 ({args.data}): upstream {p['up_images']} plain images of {', '.join(UPSTREAM)}, "
              f"{p['up_epochs']} epochs; downstream {p['images']} training images of {', '.join(DOWNSTREAM)}, "
              f"{p['test_images']} of their test images, {p['epochs']} epochs, batch 128, seed {args.seed}, M = patch = 4; "
              f"lr {args.lr} (fine-tuning, probe), {args.scratch_lr} (scratch, upstream)")
    print(header, flush=True)
    results_path = out / "results.json"
    done = {}
    if results_path.exists():
        prior = json.loads(results_path.read_text())
        if all(prior.get("config", {}).get(k) == v for k, v in p.items()):
            for r in prior.get("rows", []):
                if Path(r["run"], "summary.json").exists():
                    done[(r["model"], r["row"], r["column"])] = r

    upstream = {}
    for m in models:
        label, name, kw = MODELS[m]
        run = out / "runs" / f"upstream-{m}-{p['up_images']}x{p['up_epochs']}"
        if not (run / "summary.json").exists():
            print(f"upstream {label} ({name}) on plain {', '.join(UPSTREAM)}", flush=True)
            train(TrainConfig(data=str(up_data), model=name, out=str(run), epochs=p["up_epochs"], batch_size=128,
                              lr=args.scratch_lr, subset=p["up_images"], test_subset=p["test_images"], seed=args.seed, device=args.device,
                              model_kwargs=dict(kw), resume=(run / "last.pt").exists()), show_progress=False)
        s = json.loads((run / "summary.json").read_text())
        upstream[label] = {"run": str(run), "accuracy": s["final_test_acc"], "train_seconds": s["train_seconds"]}
        print(f"upstream {label}: {100 * s['final_test_acc']:.1f}% on its own 5 classes", flush=True)
    config["upstream"] = upstream
    if args.trajectory:
        first = MODELS[models[0]][0]
        trajectory(out, Path(upstream[first]["run"]) / "last.pt", down_data, key_path, args.trajectory, args.lr,
                   args.seed)
        return 0

    todo = list(cells(models))
    for i, (label, row, col, scheme, q, name, kw) in enumerate(todo, 1):
        if (label, row, col) in done:
            continue
        if args.only and args.only not in row and args.only not in col:
            continue
        run = out / "runs" / f"{p['images']}x{p['epochs']}-test{p['test_images']}" / slug(label, row, col)
        print(f"[{i}/{len(todo)}] {label}: {row} — {col}", flush=True)
        encrypted = scheme != "plain"
        ft = col != COLUMNS[0]
        cfg = TrainConfig(data=str(down_data), model=name, out=str(run), scheme=scheme if encrypted else None,
                          key=str(key_path) if encrypted else None, block_size=4 if encrypted else None,
                          jpeg_quality=q, epochs=p["epochs"], batch_size=128, lr=args.lr if ft else args.scratch_lr,
                          subset=p["images"], test_subset=p["test_images"], seed=args.seed, device=args.device, model_kwargs=dict(kw),
                          pretrained=str(Path(upstream[label]["run"]) / "last.pt") if ft else None,
                          init="keyed" if "keyed" in col else "plain",
                          freeze="backbone" if "probe" in col else None, resume=(run / "last.pt").exists())
        try:
            s = train(cfg, show_progress=False)
        except PatchcryptError as exc:  # a refusal is a result: the cell says why
            done[(label, row, col)] = {"model": label, "row": row, "column": col, "accuracy": None,
                                       "refused": str(exc), "run": str(run)}
            print(f"  refused: {exc}", flush=True)
            continue
        done[(label, row, col)] = {"model": label, "row": row, "column": col, "accuracy": s["final_test_acc"],
                                   "best_accuracy": s["best_test_acc"], "parameters": s["parameters"],
                                   "train_seconds": s["train_seconds"], "run": str(run)}
        report(out, header, config, done, models)
    report(out, header, config, done, models)
    return 0


def report(out: Path, header: str, config, done, models) -> str:
    rows = []
    for m in models:
        label = MODELS[m][0]
        ref = done.get((label, "plain", COLUMNS[1]), {}).get("accuracy")
        for row in [r for r, _, _ in ROWS] + ["plain, position-wise embedding"]:
            line = {"images": row if len(models) == 1 else f"{label}: {row}"}
            for col in COLUMNS:
                r = done.get((label, row, col))
                if r is None:
                    if "keyed" in col and row == "le":
                        line[col] = "n/a (not affine)"
                    elif col == COLUMNS[2] and row == "plain":
                        line[col] = "= --init plain"
                    elif row.startswith("plain, position-wise") and col != COLUMNS[1]:
                        line[col] = ""
                    else:
                        line[col] = "…"
                elif r["accuracy"] is None:
                    line[col] = "refused"
                else:
                    gap = "" if ref is None or col == COLUMNS[0] or (row == "plain" and col == COLUMNS[1]) \
                        else f" ({100 * (r['accuracy'] - ref):+.1f})"
                    line[col] = f"{100 * r['accuracy']:.1f}{gap}"
            rows.append(line)
    ups = "; ".join(f"upstream {k}: {100 * v['accuracy']:.1f}% on its five classes" for k, v in
                    config.get("upstream", {}).items())
    md = (header + "\n\n" + ups + "\n\nTop-1 test accuracy on the five downstream classes in % after the last "
          "epoch (in brackets: change vs fine-tuning on plain images)\n\n"
          + markdown_table(rows, ["images"] + COLUMNS))
    print(md, flush=True)
    (out / "table.md").write_text(md + "\n")
    write_results(out, "transfer_table", config, list(done.values()), md)
    return md


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("PATCHCRYPT_THREADS", "1")))
    sys.exit(main())
