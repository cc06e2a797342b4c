"""Key recovery from a keyed ViT's weights, on a ViT trained on CIFAR-10.

    .venv/bin/python benchmarks/weights_attack.py                 # vit_pico, 10 epochs on 10,000 images
    .venv/bin/python benchmarks/weights_attack.py --epochs 30 --out results/weights_attack_30ep

Trains (once; cached in OUT/victim_run and OUT/reference_run, resumed when cut off) two plain ViTs on
CIFAR-10: the victim (seed 0) and the attacker's own reference model (seed 1, another sample of training
images). The victim is keyed for block-pixel (shared embedding) and etc (position-wise embeddings) under a
fresh key; the attacks then read the key off the keyed model:

* (a) with the victim's plain weights (a public checkpoint the keyed model was made from);
* (b) from the keyed weights alone, with a generic smoothness template;
* (b') from the keyed weights alone, with the reference model's structure as the template;
* a check of the arrangement solver, not an attack: the victim's own plain structure as the template (what
  (b') would reach if the reference's structure matched the victim's exactly).

Scored against the true key map (exact share; share up to the one global symmetry the weights cannot fix;
block order up to the grid's symmetries; in-block maps up to one global state) and by decryptions of
CIFAR-10 test images. Each row is saved to OUT/results.json when done, so a rerun resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

from patchcrypt import Key  # noqa: E402
from patchcrypt.attacks.weights import run_weights_attack  # noqa: E402
from patchcrypt.data import load_dataset  # noqa: E402
from patchcrypt.models import build_model, load_checkpoint  # noqa: E402
from patchcrypt.train import TrainConfig, train  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cifar10-jpeg"
ATTACKS = [("a: plain weights", dict(with_plain=True)), ("b: keyed weights, generic template",
                                                        dict(with_plain=False)),
           ("b': keyed weights, reference template", dict(with_plain=False, reference="reference")),
           ("check: victim's own plain structure as template", dict(with_plain=False, reference="victim"))]


def trained(data: Path, out: Path, model: str, epochs: int, subset: int, seed: int) -> torch.nn.Module:
    if not (out / "summary.json").exists():
        print(f"training {model} (seed {seed}) on {subset} CIFAR-10 images for {epochs} epochs -> {out}", flush=True)
        train(TrainConfig(data=str(data), model=model, out=str(out), epochs=epochs, batch_size=128, lr=2e-3,
                          subset=subset, test_subset=1000, seed=seed, device="cpu",
                          resume=(out / "last.pt").exists()), show_progress=False)
    return build_model(load_checkpoint(out)).float().eval()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--model", default="vit_pico_patch4_32")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--subset", type=int, default=10000)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path("results/weights_attack"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    victim = trained(args.data, args.out / "victim_run", args.model, args.epochs, args.subset, seed=0)
    reference = trained(args.data, args.out / "reference_run", args.model, args.epochs, args.subset, seed=1)
    test = load_dataset(args.data, "test").subset(args.n_test).images
    path = args.out / "results.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    done = {(r["scheme"], r["attack"]) for r in rows}
    key = Key.generate()
    for scheme in ("block-pixel", "etc"):
        for label, opts in ATTACKS:
            if (scheme, label) in done:
                continue
            res = run_weights_attack(scheme, victim.patch_size, test, key=key, plain_model=victim,
                                     with_plain=opts["with_plain"],
                                     reference_model={"reference": reference, "victim": victim}.get(
                                         opts.get("reference")))
            m = res.metrics()
            row = {"scheme": scheme, "attack": label, "embedding": m["embedding"],
                   "key_map": m["key_map_fraction"], "key_map_up_to_global": m["key_map_fraction_up_to_global"],
                   "block_order": m["block_order_fraction"],
                   "block_order_up_to_grid_symmetry": m["block_order_fraction_up_to_grid_symmetry"],
                   "inblock_up_to_global": m["inblock_fraction_up_to_global"],
                   "exact_decryptions": m["exact_images"], "ssim": m["ssim"], "seconds": m["seconds"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
            write_results(args.out, "weights_attack", vars(args) | {"data": str(args.data), "out": str(args.out)},
                          rows, "")
    cols = ["scheme", "attack", "embedding", "key_map", "key_map_up_to_global", "block_order_up_to_grid_symmetry",
            "inblock_up_to_global", "exact_decryptions", "ssim", "seconds"]
    heads = ["scheme", "attack", "embedding", "key map exact", "key map up to global", "block order up to grid sym.",
             "in-block maps up to global", "exact decryptions", "SSIM", "s"]
    summary = json.loads((args.out / "victim_run" / "summary.json").read_text())
    acc = summary.get("best_test_acc", summary.get("test_acc"))
    md = (f"Keyed {args.model} ({args.epochs} epochs on {args.subset} CIFAR-10 images; plain test accuracy "
          f"{acc:.3f}), {args.n_test} CIFAR-10 test images decrypted with the recovered key\n\n"
          + markdown_table(rows, cols, heads))
    print(md)
    write_results(args.out, "weights_attack", vars(args) | {"data": str(args.data), "out": str(args.out)}, rows, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
