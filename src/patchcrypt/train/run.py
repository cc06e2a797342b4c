"""The run folder: refuse to overwrite, ``--resume`` from ``last.pt``, per-epoch checkpoints and metrics.csv,
``config.yaml`` and ``summary.json``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..atomic import atomic_write
from ..errors import PatchcryptError
from ..models import load_checkpoint, save_checkpoint
from .config import TrainConfig, config_changes

FIELDS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "images_per_s", "encrypt_fraction",
          "seconds"]
VAL_FIELDS = ["val_loss", "val_acc"]  # runs with a validation split (--val-split) only


def check_run_folder(cfg: TrainConfig, out: Path) -> Optional[Dict]:
    """On --resume return the last checkpoint (config must match); else refuse to overwrite a run."""
    last = out / "last.pt"
    if not cfg.resume:
        if last.exists() or (out / "metrics.csv").exists():
            raise PatchcryptError(f"{out} already holds a run; use --resume to continue it or another --out")
        return None
    if not last.exists():
        raise PatchcryptError(f"{out}: nothing to resume (no last.pt)")
    ckpt = load_checkpoint(last)
    saved = ckpt.get("config") or {}
    diff = config_changes(saved, cfg)
    if diff:
        raise PatchcryptError(f"--resume with a different config ({', '.join(diff)}); the run was made with "
                              + ", ".join(f"{k}={saved.get(k)!r}" for k in diff))
    return ckpt


def start_run(cfg: TrainConfig, out: Path) -> None:
    """Rank 0 before the first epoch: the run folder and its ``config.yaml``."""
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.yaml", _yaml(cfg.to_dict()))


def restore(ckpt: Dict, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
            out: Path) -> Tuple[int, float, List[Dict]]:
    """Load ``last.pt``'s weights, optimiser and schedule; returns (first epoch to run, best accuracy, rows).
    A field of the wrong type or shape is one line naming it (a damaged file), never a KeyError."""
    extra = ckpt.get("extra") or {}
    best = extra.get("best_acc", -1.0)
    for name, ok in (("epoch", isinstance(ckpt.get("epoch"), int)),
                     ("optimizer", isinstance(extra.get("optimizer"), dict)),
                     ("scheduler", isinstance(extra.get("scheduler"), dict)),
                     ("best_acc", isinstance(best, (int, float)) and not isinstance(best, bool))):
        if not ok:
            raise PatchcryptError(f"{out / 'last.pt'}: damaged checkpoint ({name} is missing or has the wrong type); "
                                  "cannot resume")
    try:
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(extra["optimizer"])
        scheduler.load_state_dict(extra["scheduler"])
    except (KeyError, ValueError, TypeError, RuntimeError, AttributeError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise PatchcryptError(f"{out / 'last.pt'}: damaged checkpoint, cannot resume ({first})") from None
    start_epoch = ckpt["epoch"] + 1
    return start_epoch, float(best), read_metrics(out / "metrics.csv")[:start_epoch - 1]


def selected_epoch(rows: List[Dict]) -> Optional[int]:
    """The epoch a run's result is: the first with the best validation accuracy where the rows have one, else
    the last. Never chosen on the test accuracy."""
    if not rows:
        return None
    if "val_acc" not in rows[-1]:
        return int(rows[-1]["epoch"])
    return int(max(rows, key=lambda r: (r["val_acc"], -r["epoch"]))["epoch"])


def save_epoch(out: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, rows: List[Dict],
               ckpt_meta: Dict[str, Any]) -> None:
    """Rank 0 after each epoch: ``last.pt`` (with optimiser and schedule, for --resume), ``best.pt`` when this
    epoch is the one :func:`selected_epoch` chooses (best validation accuracy so far, or the last epoch where
    there is no validation split), and metrics.csv."""
    row = rows[-1]
    chosen = selected_epoch(rows)
    best = next(r for r in rows if r["epoch"] == chosen)
    extra = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "best_acc": float(best.get("val_acc", best["test_acc"])), "selected_epoch": chosen}
    save_checkpoint(out / "last.pt", model, epoch=row["epoch"], metrics=row, extra=extra, **ckpt_meta)
    if chosen == row["epoch"]:
        save_checkpoint(out / "best.pt", model, epoch=row["epoch"], metrics=row, **ckpt_meta)
    write_metrics(out / "metrics.csv", rows)


def print_epoch(row: Dict[str, Any], epochs: int) -> None:
    """Rank 0's one line per epoch on stdout."""
    val = f"  val {row['val_acc']:.3f}" if "val_acc" in row else ""
    print(f"epoch {row['epoch']}/{epochs}: loss {row['train_loss']:.4f}  train {row['train_acc']:.3f}{val}  "
          f"test {row['test_acc']:.3f}  {row['images_per_s']:.0f} img/s  "
          f"encryption {100 * row['encrypt_fraction']:.2f}% of the step", flush=True)


def summarize(rows: List[Dict], facts: Dict[str, Any], epochs: int) -> Dict[str, Any]:
    """``summary.json``'s content: the run's ``facts`` (model, data, record ...), then the results of ``rows``.

    ``test_acc`` is the test accuracy of the chosen epoch (``selected_by``: the validation split, or the last
    epoch); ``best_test_acc``, the best test accuracy over the epochs, is chosen on the test split itself and
    is kept only as an optimistic reference."""
    chosen = selected_epoch(rows)
    row = next((r for r in rows if r["epoch"] == chosen), None)
    return {**facts,
            "test_acc": row["test_acc"] if row else None, "selected_epoch": chosen,
            "selected_by": ("validation accuracy" if row and "val_acc" in row else "last epoch"),
            "val_acc": row.get("val_acc") if row else None,
            "final_test_acc": rows[-1]["test_acc"] if rows else None,
            "best_test_acc": max(r["test_acc"] for r in rows) if rows else -1.0,
            "epochs": epochs, "train_seconds": round(sum(r["seconds"] for r in rows), 1),
            "images_per_s": round(float(np.mean([r["images_per_s"] for r in rows])), 1) if rows else None,
            "encrypt_fraction": round(float(np.mean([r["encrypt_fraction"] for r in rows])), 5) if rows else None}


def write_summary(out: Path, summary: Dict[str, Any]) -> None:
    """``out/summary.json``, written atomically."""
    write_text(out / "summary.json", json.dumps(summary, indent=1))


# -- small file helpers ----------------------------------------------------------------------------------------
def write_text(path: Path, text: str) -> None:
    atomic_write(path, text)


def write_metrics(path: Path, rows: List[Dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS + (VAL_FIELDS if rows and "val_acc" in rows[-1] else []))
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def read_metrics(path: Path) -> List[Dict]:
    if not path.is_file():
        return []
    with open(path) as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in r.items() if v not in ("", None)}
                for r in csv.DictReader(f)]


def _yaml(d: Dict) -> str:
    """``d`` as YAML; as JSON (which YAML reads) where PyYAML is not installed (a bare GPU machine)."""
    try:
        import yaml
    except ImportError:
        return json.dumps(d, indent=1) + "\n"
    return yaml.safe_dump(d, sort_keys=False)
