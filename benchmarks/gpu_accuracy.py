"""Full-scale CIFAR-10 accuracy on one GPU: a real-size ViT and ConvMixer on plain, block-pixel and etc images.

    PYTHONPATH=src python3 scripts/pack_cifar.py             # once, beside ../shared: data/cifar10-pack.npz
    PYTHONPATH=src python3 benchmarks/gpu_accuracy.py --out OUT --budget-s 420      # on the GPU machine
    PYTHONPATH=src python3 benchmarks/gpu_accuracy.py --quick --pack P --out OUT   # same code, CPU, < 1 min
    PYTHONPATH=src python3 benchmarks/gpu_accuracy.py --table --out OUT            # re-print OUT's table

A grid over :func:`patchcrypt.train.train`: every cell is one library run with the GPU recipe of
:class:`~patchcrypt.train.TrainConfig` (``data_on_device``, ``amp``, ``fused``, ``clip_grad``,
``channels_last`` for ConvMixer on CUDA). All 50,000 training and 10,000 test images are decoded once from
the pack and handed to every run (``train(..., sets=...)``), which keeps them as uint8 tensors on the device;
every training step runs there: batch gather, augmentation (random crop with 4 pixels of edge padding,
horizontal flip: :func:`patchcrypt.augment.random_crop_flip`), encryption (the cipher's compiled gather +
XOR on the device's tensors), then the model under bf16 autocast; AdamW (fused on CUDA; no weight decay on
norms, biases, position embedding and class token: the library's rule) with gradient clipping at 1.0,
warm-up + cosine. Models: ``vit_small_depth7_patch4_32`` (D=384, depth 7, 6 heads, 12.5M parameters)
and ConvMixer-256/8 with 4×4 patches; M = patch = 4 at 32×32, one key for every cell.

Cells, per model: plain; block-pixel; etc with the shared patch embedding; etc with position-wise
embeddings (one per block position); and the keyed-model rows: the plain-trained model keyed for
block-pixel (shared embedding) and for etc (position-wise), evaluated on encrypted test images in float32
beside the plain model on plain images (ConvMixer refuses both: block scrambling moves its patches).

Sizing: before training, a few steps of every model variant are timed; the epochs of each model are then
chosen so that all cells fit in ``--budget-s`` seconds from the start of the script (every cell of one
model gets the same epochs, so plain and encrypted compare at equal training; a ViT cell gets twice a
ConvMixer cell's time, since a ViT trained from scratch needs more epochs). A cell that would still end
past the budget (plus ``--slack-s``) is skipped and recorded as such. After every finished cell,
``OUT/results.json`` (the project's results format) and ``OUT/table.md`` are rewritten atomically, so a run
cut off at any point still leaves every finished cell. Without ``--key`` the key is a fresh one in a private
temporary file, and the runs' folders are temporary too; with ``--key FILE`` they are kept in
``OUT/runs/<cell>`` and a second invocation reuses every finished cell (same epochs) and resumes a cut-off
one (``--resume``). Outputs name the key's fingerprint, never the key.

Only torch, numpy and Pillow are needed (no package needs installing on the GPU machine): without tqdm the
library's progress bar is replaced by a silent one, without PyYAML a run's config.yaml is written as JSON.
"""

from __future__ import annotations

import argparse
import copy
import csv
import importlib.machinery
import importlib.util
import json
import math
import re
import shutil
import sys
import tempfile
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(REPO / "src"))  # PYTHONPATH=src wins when set; this makes a bare run work too
from _common import markdown_table, write_results  # noqa: E402


def _silent_progress_bar() -> None:
    """Where tqdm is not installed (the bare GPU machine), a silent stand-in for the library's progress bar
    (the bars are off in this script anyway: ``show_progress=False``)."""
    try:
        if importlib.util.find_spec("tqdm") is not None and __import__("tqdm") is not None:
            return
    except (ImportError, ValueError):
        pass

    class _Bar:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            return None

        def update(self, n: int = 1) -> None:
            pass

        def set_postfix(self, *args, **kwargs) -> None:
            pass

    module = types.ModuleType("tqdm", "a silent stand-in for tqdm (benchmarks/gpu_accuracy.py)")
    module.__spec__ = importlib.machinery.ModuleSpec("tqdm", None)  # find_spec("tqdm") must answer, not raise
    module.tqdm = _Bar  # type: ignore[attr-defined]
    sys.modules["tqdm"] = module


_silent_progress_bar()

from patchcrypt import Key, PatchcryptError  # noqa: E402
from patchcrypt.augment import random_crop_flip as crop_flip  # noqa: E402,F401  (the grid's augmentation)
from patchcrypt.ciphers import create_cipher  # noqa: E402
from patchcrypt.data import read_pack  # noqa: E402
from patchcrypt.models import create_model, load_checkpoint  # noqa: E402
from patchcrypt.models.keyed import key_model  # noqa: E402
from patchcrypt.runtime import to_nchw  # noqa: E402
from patchcrypt.atomic import atomic_write  # noqa: E402
from patchcrypt.train import TrainConfig, train  # noqa: E402

BLOCK = 4


@dataclass(frozen=True)
class ModelSpec:
    """A model family of the grid: registry name, size overrides and its optimiser settings."""

    label: str
    name: str
    kwargs: Dict = field(default_factory=dict)
    lr: float = 1e-3
    weight_decay: float = 0.05
    time_weight: float = 1.0  # share of the budget per cell, relative to the other models' cells


MODELS = {
    # a ViT trained from scratch on CIFAR-10 needs many more epochs than a ConvMixer: twice the time per cell
    "ViT": ModelSpec("ViT-384/7", "vit_small_depth7_patch4_32", {}, lr=1e-3, weight_decay=0.05, time_weight=2.0),
    # ConvMixer's CIFAR-10 recipe (Trockman & Kolter): AdamW at lr 0.01, weight decay 0.01, batch 512
    "ConvMixer": ModelSpec("ConvMixer-256/8", "convmixer_256_8_patch4_32", {}, lr=1e-2, weight_decay=0.01),
}
QUICK_MODELS = {  # the same families at toy size: the smoke test is about wiring, not accuracy
    "ViT": ModelSpec("ViT (toy size)", "vit_small_depth7_patch4_32", dict(embed_dim=32, depth=1, num_heads=2),
                     lr=1e-3),
    "ConvMixer": ModelSpec("ConvMixer (toy size)", "convmixer_256_8_patch4_32", dict(dim=32, depth=1), lr=1e-2,
                           weight_decay=0.01),
}


@dataclass(frozen=True)
class Cell:
    model: str     # key of MODELS
    label: str     # row of the table
    scheme: str    # cipher registry name ("plain": none)
    embed: str     # "shared" or "blockwise"


# Run order = priority if the run is cut off: both plain models (and their keyed rows) first.
CELLS = [
    Cell("ViT", "plain", "plain", "shared"),
    Cell("ConvMixer", "plain", "plain", "shared"),
    Cell("ViT", "block-pixel", "block-pixel", "shared"),
    Cell("ViT", "etc, position-wise embeddings", "etc", "blockwise"),
    Cell("ViT", "etc, shared embedding", "etc", "shared"),
    Cell("ConvMixer", "block-pixel", "block-pixel", "shared"),
    Cell("ConvMixer", "etc, shared embedding", "etc", "shared"),
    Cell("ConvMixer", "etc, position-wise embeddings", "etc", "blockwise"),
]
KEYED = [("block-pixel", "plain-trained, keyed for block-pixel (shared embedding)"),
         ("etc", "plain-trained, keyed for etc (position-wise embeddings)")]
ROW_ORDER = ["plain", "block-pixel", "etc, shared embedding", "etc, position-wise embeddings"] + [k for _, k in KEYED]


class Budget:
    """Wall-clock accounting from the start of the script."""

    def __init__(self, seconds: float, slack: float) -> None:
        self.t0 = time.perf_counter()
        self.seconds, self.slack = seconds, slack

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.seconds - self.elapsed()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def slug(cell: "Cell") -> str:
    """A cell's run folder name: ``ViT-etc-blockwise``."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", f"{cell.model}-{cell.scheme}-{cell.embed}")


class Runner:
    """The data (decoded once), the key and the settings; trains every cell with :func:`patchcrypt.train.train`
    and evaluates the keyed rows."""

    def __init__(self, args: argparse.Namespace, device: torch.device, models: Dict[str, ModelSpec],
                 sets: Tuple, key: Key, key_path: Path, runs: Path) -> None:
        self.args, self.device, self.models, self.sets = args, device, models, sets
        self.key_path, self.runs = key_path, runs
        self.x_test = to_nchw(sets[1].images).to(device)             # for the keyed rows
        self.y_test = torch.from_numpy(sets[1].labels).to(device)
        self.ciphers = {s: create_cipher(s, key, block_size=BLOCK) for s in ("block-pixel", "etc")}
        self.amp = device.type in ("cuda", "cpu") and not args.no_amp
        self.batch = args.batch
        self.steps_per_epoch = math.ceil(len(sets[0]) / self.batch)

    # -- pieces ------------------------------------------------------------------------------------------------
    def config(self, model_key: str, scheme: str, embed: str, epochs: int, out: Path,
               max_steps: Optional[int] = None, resume: bool = False) -> TrainConfig:
        """The library run of one cell: the GPU recipe, the model's optimiser settings, one key for all cells."""
        spec, enc = self.models[model_key], scheme != "plain"
        cuda = self.device.type == "cuda"
        return TrainConfig(data=str(self.args.pack), model=spec.name, out=str(out), scheme=scheme if enc else None,
                           key=str(self.key_path) if enc else None, block_size=BLOCK if enc else None,
                           epochs=epochs, batch_size=self.batch, lr=spec.lr, weight_decay=spec.weight_decay,
                           warmup_epochs=1.0, label_smoothing=0.1, augment="crop-flip", seed=self.args.seed,
                           device=str(self.device), model_kwargs=dict(spec.kwargs, embed=embed),
                           max_steps=max_steps, resume=resume, data_on_device=True, amp=self.amp, fused=cuda,
                           clip_grad=1.0, channels_last=cuda and model_key == "ConvMixer",
                           eval_batch=self.args.eval_batch)

    @torch.no_grad()
    def predict(self, model: nn.Module, x: torch.Tensor, amp: bool) -> torch.Tensor:
        """Logits (float32, on the device) for uint8 (N, C, H, W) on the device, in eval mode."""
        model.eval()
        out = []
        for i in range(0, len(x), self.args.eval_batch):
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
                out.append(model(x[i:i + self.args.eval_batch]).float())
        return torch.cat(out)

    def accuracy(self, logits: torch.Tensor) -> float:
        return float((logits.argmax(1) == self.y_test).float().mean())

    # -- timing ------------------------------------------------------------------------------------------------
    def _timed_run(self, model_key: str, embed: str, out: Path, steps: int) -> float:
        """Wall seconds of a whole library run of ``steps`` steps of etc training (set-up to summary)."""
        sync(self.device)
        t0 = time.perf_counter()
        train(self.config(model_key, "etc", embed, 1, out, max_steps=steps), show_progress=False, sets=self.sets)
        sync(self.device)
        return time.perf_counter() - t0

    def time_variant(self, model_key: str, embed: str) -> Dict[str, float]:
        """Seconds per training step (etc encryption, the dearest scheme), of a run's fixed part (set-up, one
        test-set evaluation, one checkpoint; ``eval_s``) and per epoch (its steps plus that fixed part, which
        the library repeats each epoch), from two library runs: ``--warmup-steps`` steps, then warm-up +
        ``--timed-steps`` steps (the difference is the timed steps alone)."""
        w, t = self.args.warmup_steps, self.args.timed_steps
        with tempfile.TemporaryDirectory(dir=self.runs) as tmp:
            short = self._timed_run(model_key, embed, Path(tmp) / "warmup", w)
            if self.device.type == "cuda" and self.args.sync_debug:
                torch.cuda.set_sync_debug_mode("warn")  # any host sync inside a step is printed
            try:
                long = self._timed_run(model_key, embed, Path(tmp) / "timed", w + t)
            finally:
                if self.device.type == "cuda":
                    torch.cuda.set_sync_debug_mode(0)
        step_s = max(long - short, 0.0) / t
        eval_s = max(short - w * step_s, 0.0)
        return {"step_s": step_s, "eval_s": eval_s, "epoch_s": step_s * self.steps_per_epoch + eval_s}

    # -- one cell ------------------------------------------------------------------------------------------------
    def _finished(self, out: Path, epochs: int) -> Optional[Dict]:
        """The summary of a finished run of ``epochs`` epochs in ``out`` (a second invocation with --key)."""
        path = out / "summary.json"
        if path.is_file():
            summary = json.loads(path.read_text())
            if summary.get("epochs") == epochs:
                return summary
            shutil.rmtree(out)  # another length of run: train again
        return None

    def train_cell(self, cell: Cell, epochs: int, log) -> Tuple[Dict, nn.Module]:
        spec = self.models[cell.model]
        out = self.runs / slug(cell)
        summary = self._finished(out, epochs)
        if summary is None:
            resume = (out / "last.pt").is_file()
            if resume:
                log(f"  resuming {out}")
            elif out.exists():
                shutil.rmtree(out)  # no checkpoint yet: nothing to resume
            summary = train(self.config(cell.model, cell.scheme, cell.embed, epochs, out, resume=resume),
                            show_progress=False, sets=self.sets)
        else:
            log(f"  {out} holds this cell already ({epochs} epochs): reused")
        with open(out / "metrics.csv") as f:
            losses = [round(float(r["train_loss"]), 4) for r in csv.DictReader(f)]
        ckpt = load_checkpoint(out / "last.pt")
        model = create_model(spec.name, **ckpt["model_kwargs"])
        model.load_state_dict(ckpt["state_dict"])
        acc = summary["final_test_acc"]
        row = {"kind": "trained", "model": spec.label, "registry_name": spec.name, "model_kwargs": spec.kwargs,
               "cell": cell.label, "scheme": cell.scheme, "embed": cell.embed, "status": "done",
               "accuracy": round(acc, 5), "epochs": epochs, "batch": self.batch, "lr": spec.lr,
               "weight_decay": spec.weight_decay, "parameters": summary["parameters"],
               "train_seconds": summary["train_seconds"], "images_per_s": summary["images_per_s"],
               "train_loss": losses}
        return row, model.to(self.device)

    # -- keyed rows ------------------------------------------------------------------------------------------------
    def keyed_rows(self, model_key: str, plain: nn.Module, key: Key, wrong: Key) -> List[Dict]:
        """Key copies of the plain-trained model; compare in float32 (TF32 off) with the plain model."""
        spec = self.models[model_key]
        tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        rows = []
        try:
            ref_logits = self.predict(plain, self.x_test, amp=False)
            ref_acc = self.accuracy(ref_logits)
            for scheme, label in KEYED:
                row = {"kind": "keyed", "model": spec.label, "registry_name": spec.name, "cell": label,
                       "scheme": scheme, "plain_model_fp32_accuracy": round(ref_acc, 5)}
                keyed = copy.deepcopy(plain).cpu().float()  # the transformation works in float64 on the host
                try:
                    info = key_model(keyed, key, scheme, BLOCK)
                except PatchcryptError as exc:
                    rows.append({**row, "status": "refused", "reason": str(exc)})
                    continue
                keyed = keyed.to(self.device)
                enc = self.ciphers[scheme].encrypt(self.x_test)
                logits = self.predict(keyed, enc, amp=False)
                other = create_cipher(scheme, wrong, block_size=BLOCK).encrypt(self.x_test)
                rows.append({**row, "status": "done", "accuracy": round(self.accuracy(logits), 5),
                             "mode": info["mode"], "added_parameters": info["added_parameters"],
                             "same_prediction_as_plain": round(float((logits.argmax(1) == ref_logits.argmax(1))
                                                                     .float().mean()), 5),
                             "max_abs_logit_difference": float((logits - ref_logits).abs().max()),
                             "wrong_key_accuracy": round(self.accuracy(self.predict(keyed, other, amp=False)), 5),
                             "plain_model_on_encrypted_accuracy": round(
                                 self.accuracy(self.predict(plain, enc, amp=False)), 5)})
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        return rows


# -- planning ----------------------------------------------------------------------------------------------------
def choose_epochs(timings: Dict[Tuple[str, str], Dict[str, float]], cells: List[Cell], seconds: float,
                  min_epochs: int, max_epochs: int, reserve_s: float,
                  weights: Optional[Dict[str, float]] = None) -> Dict[str, int]:
    """Epochs per model so that all ``cells`` fit in ``seconds`` (less ``reserve_s``).

    Args:
        timings: (model, embed) → {"epoch_s", "eval_s"} measured on the device.
        weights: model → relative time per cell (default 1 each); a model's cells share its time.

    Every cell of one model gets the same epochs (plain and encrypted compare at equal training), as many
    as the model's time allows over its cells' measured epoch times, within [min_epochs, max_epochs].
    """
    weights = weights or {}
    total_weight = sum(weights.get(c.model, 1.0) for c in cells)
    available = max(0.0, seconds - reserve_s)
    epochs = {}
    for m in dict.fromkeys(c.model for c in cells):
        mine = [c for c in cells if c.model == m]
        budget = available * sum(weights.get(m, 1.0) for _ in mine) / max(total_weight, 1e-9)
        per_epoch = sum(timings[(m, c.embed)]["epoch_s"] for c in mine)
        evals = sum(timings[(m, c.embed)]["eval_s"] for c in mine)
        fit = int((budget - evals) // max(per_epoch, 1e-9))
        epochs[m] = max(min_epochs, min(max_epochs, fit))
    return epochs


# -- output ------------------------------------------------------------------------------------------------------
def render(rows: List[Dict], header: str) -> str:
    """The accuracy table (rows: cells, columns: models) and the per-cell details, as markdown."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    plain = {r["model"]: r["accuracy"] for r in rows if r.get("cell") == "plain" and r.get("status") == "done"}
    table = []
    for label in ROW_ORDER:
        line = {"cell": label}
        for m in models:
            r = next((r for r in rows if r["model"] == m and r["cell"] == label), None)
            if r is None:
                line[m] = ""
            elif r["status"] != "done":
                line[m] = r["status"]
            else:
                base = r.get("plain_model_fp32_accuracy", plain.get(m))
                delta = "" if label == "plain" or base is None else f" ({100 * (r['accuracy'] - base):+.2f})"
                line[m] = f"{100 * r['accuracy']:.2f}{delta}"
        table.append(line)
    details = []
    for r in rows:
        d = {"model": r["model"], "cell": r["cell"], "status": r["status"]}
        if r["kind"] == "trained" and r["status"] == "done":
            d.update(epochs=r["epochs"], params=f"{r['parameters']:,}", train_s=f"{r['train_seconds']:.1f}",
                     img_s=f"{r['images_per_s']:,.0f}", note=f"final train loss {r['train_loss'][-1]}")
        elif r["kind"] == "keyed" and r["status"] == "done":
            d.update(note=(f"float32; plain model on plain images {100 * r['plain_model_fp32_accuracy']:.2f}%; "
                           f"same prediction {100 * r['same_prediction_as_plain']:.2f}%; largest logit change "
                           f"{r['max_abs_logit_difference']:.2g}; wrong key {100 * r['wrong_key_accuracy']:.2f}%; "
                           f"plain model on these images {100 * r['plain_model_on_encrypted_accuracy']:.2f}%; "
                           f"+{r['added_parameters']:,} parameters"))
        elif r["status"] != "done":
            d.update(note=r.get("reason", ""))
        details.append(d)
    return (f"{header}\n\nTop-1 test accuracy in % (in brackets: change against the same model on plain images; "
            "keyed rows against the plain model in float32)\n\n"
            + markdown_table(table, ["cell"] + models)
            + "\n\n" + markdown_table(details, ["model", "cell", "status", "epochs", "params", "train_s", "img_s",
                                                "note"],
                                      ["model", "cell", "status", "epochs", "parameters", "train s", "images/s",
                                       "note"]))


def save(out: Path, header: str, config: Dict, rows: List[Dict]) -> str:
    md = render(rows, header)
    write_results(out, "gpu_accuracy", config, rows, md)
    atomic_write(out / "table.md", md + "\n")
    return md


# -- main ----------------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack", type=Path, default=REPO / "data" / "cifar10-pack.npz")
    ap.add_argument("--out", type=Path, default=Path("results/gpu_accuracy"))
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="wall-clock seconds for the whole run, start to finish (epochs are chosen to fit)")
    ap.add_argument("--slack-s", type=float, default=30.0,
                    help="a cell projected to end later than budget + slack is skipped")
    ap.add_argument("--epochs", type=int, default=None, help="fixed epochs for every cell (no budget sizing)")
    ap.add_argument("--max-epochs", type=int, default=200)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--eval-batch", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--no-amp", action="store_true", help="float32 training (default: bf16 autocast)")
    ap.add_argument("--warmup-steps", type=int, default=5)
    ap.add_argument("--timed-steps", type=int, default=20)
    ap.add_argument("--sync-debug", action="store_true", help="CUDA: warn on any host sync in timed steps")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run of the same code: CPU, 256 training / 128 test images, toy models, 1 epoch")
    ap.add_argument("--table", action="store_true", help="only re-print the table from OUT/results.json")
    ap.add_argument("--key", type=Path, default=None,
                    help="the owner's key file: keeps each cell's run in OUT/runs so that a second invocation "
                         "reuses finished cells and resumes a cut-off one (default: a fresh temporary key)")
    args = ap.parse_args(argv)
    if args.table:
        path = args.out / "results.json"
        if not path.is_file():
            print(f"error: {path}: no results yet", file=sys.stderr)
            return 2
        data = json.loads(path.read_text())
        print(render(data["rows"], data["config"].get("header", "")))
        return 0
    try:
        return run(args)
    except PatchcryptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    budget = Budget(args.budget_s, args.slack_s)
    n_train = n_test = None
    models = MODELS
    if args.quick:
        n_train, n_test, models = 256, 128, QUICK_MODELS
        args.batch, args.eval_batch = 64, 128
        args.warmup_steps, args.timed_steps, args.max_epochs = 1, 2, 1
        args.device = args.device or "cpu"
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu":
        torch.set_num_threads(1 if args.quick else torch.get_num_threads())
    else:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    log = lambda msg: print(f"[{budget.elapsed():6.1f} s] {msg}", flush=True)  # noqa: E731
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    log(f"torch {torch.__version__} on {device_name}; reading {args.pack}")

    sets = read_pack(args.pack, ("train", "test"))
    train_set, test_set = sets["train"].subset(n_train, args.seed), sets["test"].subset(n_test, args.seed)
    if train_set.shape != (32, 32, 3):
        raise PatchcryptError(f"{args.pack}: images are {train_set.shape}; this benchmark takes 32x32 RGB (CIFAR-10)")
    if len(train_set) < args.batch:
        raise PatchcryptError(f"{len(train_set)} training images are fewer than one batch of {args.batch}")
    log(f"decoded {len(train_set):,} training and {len(test_set):,} test images; every cell keeps them on "
        f"{device} as uint8")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpu_accuracy-") as tmp:
        if args.key is not None:  # the owner's key: run folders kept in OUT/runs, a second invocation resumes
            key, key_path, runs = Key.load(args.key), args.key, args.out / "runs"
        else:  # a fresh key in a private temporary file, removed with the runs at the end
            key, runs = Key.generate(), Path(tmp) / "runs"
            key_path = key.save(Path(tmp) / "owner.key")
        runs.mkdir(parents=True, exist_ok=True)
        runner = Runner(args, device, models, (train_set, test_set), key, key_path, runs)
        return grid(args, runner, budget, log, device_name, key)


def grid(args: argparse.Namespace, runner: Runner, budget: Budget, log, device_name: str, key: Key) -> int:
    """Time the model variants, choose the epochs, train every cell (and the keyed rows), saving after each."""
    models = runner.models
    wrong = Key.generate()  # in memory only
    n_train, n_test = len(runner.sets[0]), len(runner.sets[1])
    header = (f"CIFAR-10 from {args.pack.name}: {n_train:,} training / {n_test:,} test images, "
              f"batch {args.batch}, patchcrypt.train: AdamW + cosine, gradient clipping 1.0, label smoothing 0.1, "
              f"crop (pad 4) + flip, {'bf16 autocast' if runner.amp else 'float32'}, M = patch = 4 at 32×32, "
              f"seed {args.seed}; {device_name}, torch {torch.__version__}"
              + ("; --quick smoke run" if args.quick else ""))
    config = {"header": header, "device": device_name, "torch": torch.__version__, "n_train": n_train,
              "n_test": n_test, "batch": args.batch, "budget_s": args.budget_s, "seed": args.seed,
              "amp": runner.amp, "quick": args.quick, "key_fingerprint": key.fingerprint,
              "trainer": "patchcrypt.train"}
    rows: List[Dict] = []

    timings = {}
    for m, embed in dict.fromkeys((c.model, c.embed) for c in CELLS):
        timings[(m, embed)] = runner.time_variant(m, embed)
        t = timings[(m, embed)]
        log(f"timed {models[m].label} ({embed} embedding): {1000 * t['step_s']:.1f} ms/step, "
            f"{t['epoch_s']:.1f} s/epoch, set-up + test + checkpoint {t['eval_s']:.2f} s")
    if args.epochs:
        epochs = {m: args.epochs for m in models}
    else:
        epochs = choose_epochs(timings, CELLS, budget.left(), 1, args.max_epochs, reserve_s=0.03 * args.budget_s,
                               weights={m: spec.time_weight for m, spec in models.items()})
    config.update(timings={f"{m} {e}": v for (m, e), v in timings.items()}, epochs=epochs)
    log("epochs: " + ", ".join(f"{models[m].label} {e}" for m, e in epochs.items())
        + f" ({budget.left():.0f} s of the budget left)")
    save(args.out, header, config, rows)

    for cell in CELLS:
        spec = models[cell.model]
        t = timings[(cell.model, cell.embed)]
        projected = epochs[cell.model] * t["epoch_s"] + t["eval_s"]
        if projected > budget.left() + budget.slack:
            log(f"skip {spec.label} on {cell.label}: needs about {projected:.0f} s, {budget.left():.0f} s left")
            rows.append({"kind": "trained", "model": spec.label, "registry_name": spec.name, "cell": cell.label,
                         "scheme": cell.scheme, "embed": cell.embed, "status": "skipped",
                         "reason": f"budget: needed about {projected:.0f} s, {max(0.0, budget.left()):.0f} s left"})
            save(args.out, header, config, rows)
            continue
        log(f"train {spec.label} on {cell.label} ({epochs[cell.model]} epochs, about {projected:.0f} s)")
        row, model = runner.train_cell(cell, epochs[cell.model], log)
        rows.append(row)
        save(args.out, header, config, rows)
        log(f"  {spec.label} on {cell.label}: {100 * row['accuracy']:.2f}% in {row['train_seconds']:.0f} s")
        if cell.scheme == "plain":
            for r in runner.keyed_rows(cell.model, model, key, wrong):
                rows.append(r)
                log(f"  {spec.label} {r['cell']}: " + (f"{100 * r['accuracy']:.2f}%" if r["status"] == "done"
                                                       else f"refused ({r['reason']})"))
            save(args.out, header, config, rows)
        del model
    log(f"done in {budget.elapsed():.0f} s; {args.out / 'results.json'}")
    print(save(args.out, header, config, rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
