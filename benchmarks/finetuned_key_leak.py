"""Does a model fine-tuned with ``--init keyed`` still give its key away to whoever holds the public checkpoint?

    .venv/bin/python benchmarks/transfer_table.py            # first: the runs this script reads
    .venv/bin/python benchmarks/finetuned_key_leak.py        # then: attack every keyed fine-tuning run

``--init keyed`` starts from a public pretrained checkpoint transformed with the owner's key; the server
trains it further and keeps it. This script plays that server: for every ``fine-tune --init keyed`` and
``linear probe`` run of the transfer table (TRANSFER/runs/*/vit__*keyed*), it runs the model-weight attack
with the public upstream checkpoint it started from (its config's ``pretrained``) as the plain weights and scores the
recovered key map against the owner's key (read from TRANSFER/owner.key for scoring only), then decrypts
CIFAR-10 test images with it. Prints one row per run and writes OUT/results.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

from patchcrypt import Key  # noqa: E402
from patchcrypt.attacks.weights import run_weights_attack  # noqa: E402
from patchcrypt.data import load_dataset  # noqa: E402
from patchcrypt.errors import PatchcryptError  # noqa: E402
from patchcrypt.models.checkpoint import build_model, load_checkpoint  # noqa: E402

SCHEMES = {"block-pixel": "block-pixel", "etc": "etc", "etc-plus-jpeg-q90": "etc"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transfer", type=Path, default=Path("results/transfer_table"),
                    help="a transfer_table.py output folder (its --out)")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets"
                    / "cifar10-jpeg")
    ap.add_argument("--images", type=int, default=100, help="test images to decrypt with the recovered key")
    ap.add_argument("--out", type=Path, default=Path("results/finetuned_key_leak"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    if not (args.transfer / "owner.key").is_file():
        raise SystemExit(f"error: {args.transfer} holds no transfer-table runs; run benchmarks/transfer_table.py")
    key = Key.load(args.transfer / "owner.key")
    test = load_dataset(args.data, split="test", subset=args.images).images
    rows = []
    for run in sorted((args.transfer / "runs").glob("*/vit__*keyed*")):
        images = run.name.split("__")[1]
        if images not in SCHEMES:
            continue
        # the public checkpoint this run started from, as its config names it (relative to the repo root)
        pretrained = Path(yaml.safe_load((run / "config.yaml").read_text())["pretrained"])
        if not pretrained.is_absolute():  # relative to where transfer_table.py ran: an ancestor of TRANSFER
            pretrained = next((a / pretrained for a in args.transfer.resolve().parents
                               if (a / pretrained).is_file()), pretrained)
        plain = build_model(load_checkpoint(pretrained))
        keyed = build_model(load_checkpoint(run))
        try:
            res = run_weights_attack(SCHEMES[images], 4, test, key=key, plain_model=plain, keyed_model=keyed,
                                     with_plain=True)
        except PatchcryptError as exc:
            print(f"{run.name}: {exc}")
            continue
        row = {"run": f"{run.parent.name}/{run.name}", "scheme": SCHEMES[images],
               "key_map_fraction": res.extra["key_map_fraction"],
               "exact_decryptions": res.metrics()["exact_images"]}
        rows.append(row)
        print(row, flush=True)
    md = markdown_table(rows, ["run", "scheme", "key_map_fraction", "exact_decryptions"],
                        ["fine-tuned keyed model", "scheme", "key map recovered", "test images decrypted exactly"])
    print(md)
    write_results(args.out, "finetuned_key_leak", {"transfer": str(args.transfer), "images": args.images}, rows, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
