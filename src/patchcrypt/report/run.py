"""The section of one training run: its facts, loss and accuracy curves, confusion matrix and examples."""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..bounded import METADATA_MAX, read_text_bounded
from ..errors import PatchcryptError
from ..record import EncryptionRecord
from .examples import ExamplePlan, plan_examples, render_examples
from .inputs import Item, read_json
from .markup import fig_png, file_img, img_tag, shown_path


def run_record(run: Path) -> Tuple[Dict, Dict, EncryptionRecord]:
    """(config, summary, encryption record) of a run folder."""
    summary = read_json(run / "summary.json") if (run / "summary.json").is_file() else {}
    summary = summary if isinstance(summary, dict) else {}
    config = _read_config(run / "config.yaml")
    return config, summary, EncryptionRecord.from_run(config, summary)


def run_plan(item: Item, key=None, data_roots: Sequence[Path] = (), n_examples: int = 4) -> ExamplePlan:
    """What the run's section will show as examples (see :mod:`patchcrypt.report.examples`)."""
    config, _, record = run_record(item.path)
    return plan_examples(config, record, key, data_roots, n_examples)


def run_section(item: Item, plan: Optional[ExamplePlan] = None, page_shows_plain: bool = True) -> str:
    """The run's section: facts, curves, confusion matrix, and the examples ``plan`` (none when None)."""
    run = item.path
    config, summary, record = run_record(run)
    rows = _read_metrics(run / "metrics.csv")
    facts = {"model": summary.get("model") or config.get("model"), "scheme": record.scheme,
             "block size": record.block_size, "JPEG quality": summary.get("jpeg_quality"),
             "key fingerprint": record.key_fingerprint,
             "training images": summary.get("n_train"), "test images": summary.get("n_test"),
             "test split": summary.get("test_split"), "validation split": summary.get("validation"),
             "epochs": len(rows), **_accuracy_facts(summary),
             "final test accuracy": _pct(summary.get("final_test_acc")),
             "preprocessing": summary.get("preprocessing"),
             "encryption share of a step": _pct(summary.get("encrypt_fraction"), 2)}
    parts = [f"<h2>Run {html.escape(run.name)}</h2>", f'<p class="src">{html.escape(shown_path(run))}</p>',
             "<table class=facts>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                                            for k, v in facts.items() if v not in (None, "")) + "</table>"]
    if rows:
        parts.append(img_tag(_curves(rows, run.name), f"{run.name}: loss and accuracy per epoch"))
    if (run / "confusion.png").is_file():
        parts.append(file_img(run / "confusion.png", f"{run.name}: confusion matrix", run))
    if plan is not None:
        parts.append(render_examples(plan, page_shows_plain))
    return "<section>" + "\n".join(parts) + "</section>"


def _accuracy_facts(summary: dict) -> dict:
    """The run's accuracy as it was chosen: the chosen epoch's test accuracy and what chose it; a run from
    before validation splits has only the best test accuracy over the epochs, labelled as the test-selected,
    optimistic figure it is."""
    if summary.get("test_acc") is None:
        return {"best test accuracy over the epochs (chosen on the test set)": _pct(summary.get("best_test_acc"))}
    how = summary.get("selected_by") or "last epoch"
    return {"test accuracy": f"{_pct(summary['test_acc'])} (epoch {summary.get('selected_epoch')}, {how})"}


def _pct(v, digits: int = 1):
    return None if v is None else f"{100 * float(v):.{digits}f}%"


def _read_metrics(path: Path) -> List[Dict[str, float]]:
    try:
        text = read_text_bounded(path, METADATA_MAX, "metrics")
        return [{k: float(v) for k, v in r.items() if v not in (None, "")} for r in csv.DictReader(io.StringIO(text))]
    except (PatchcryptError, ValueError) as exc:
        raise PatchcryptError(f"{path}: unreadable metrics ({exc})") from None


def _read_config(path: Path) -> Dict:
    if not path.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(read_text_bounded(path, METADATA_MAX, "config"))
    except (PatchcryptError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _curves(rows: List[Dict[str, float]], name: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for k, lab in (("train_loss", "train"), ("test_loss", "test")):
        if all(k in r for r in rows):
            a.plot(ep, [r[k] for r in rows], marker="o", ms=3, label=lab)
    a.set_title("loss")
    a.set_xlabel("epoch")
    for k, lab in (("train_acc", "train"), ("test_acc", "test")):
        if all(k in r for r in rows):
            b.plot(ep, [100 * r[k] for r in rows], marker="o", ms=3, label=lab)
    b.set_title("accuracy (%)")
    b.set_xlabel("epoch")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(name)
    fig.tight_layout()
    return fig_png(fig)
