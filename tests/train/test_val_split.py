"""The classic transfer-learning layout (``train/`` + ``val/``, photos of mixed sizes) trains and evaluates
with no renaming, and the checkpoint is chosen on a validation split, never on the test split."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from patchcrypt.cli import main
from patchcrypt.codec import write_image
from patchcrypt.models import load_checkpoint
from patchcrypt.train import train

from train_helpers import tiny_config as cfg

SIZES = ((40, 56), (64, 48), (36, 36), (80, 60))  # mixed sizes, as a user's photos are


def photo_tree(root: Path, splits=(("train", 10), ("val", 4))) -> Path:
    """``root/<split>/{ants,bees}/*.png``: generated images of several sizes (bright vs dark, with noise)."""
    rng = np.random.default_rng(31)
    for split, n in splits:
        for ci, cls in enumerate(("ants", "bees")):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                h, w = SIZES[i % len(SIZES)]
                img = np.clip(60 + 120 * ci + rng.integers(0, 60, (h, w, 3)), 0, 255).astype(np.uint8)
                write_image(root / split / cls / f"{i:03d}.png", img)
    return root


def _metrics(out: Path):
    with open(out / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_train_and_val_folders_train_and_test_on_val(tmp_path):
    data = photo_tree(tmp_path / "photos")
    out = tmp_path / "run"
    s = train(cfg(data, out, epochs=2, img_size=32), show_progress=False)
    assert s["test_split"] == "val/" and s["n_test"] == 8 and s["n_train"] == 20
    assert s["validation"] is None and s["selected_by"] == "last epoch" and s["selected_epoch"] == 2
    assert s["test_acc"] == float(_metrics(out)[-1]["test_acc"])
    assert load_checkpoint(out / "best.pt")["epoch"] == 2
    assert s["preprocessing"] == ("to 32: training random-resized crop and flip; test and validation resize the "
                                  "short side to size/0.875, centre crop")


def test_held_out_share_chooses_the_checkpoint(tmp_path):
    data = photo_tree(tmp_path / "photos")
    out = tmp_path / "run"
    s = train(cfg(data, out, epochs=3, img_size=32, val_split="0.2"), show_progress=False)
    assert s["validation"] == "20% of train/ held out" and s["n_val"] == 4 and s["n_train"] == 16
    rows = _metrics(out)
    accs = [float(r["val_acc"]) for r in rows]
    chosen = int(rows[int(np.argmax(accs))]["epoch"])  # the first best validation epoch
    assert s["selected_by"] == "validation accuracy" and s["selected_epoch"] == chosen
    assert s["test_acc"] == float(rows[chosen - 1]["test_acc"])
    assert load_checkpoint(out / "best.pt")["epoch"] == chosen


def test_val_folder_beside_test_is_the_validation_split(tmp_path):
    data = photo_tree(tmp_path / "photos", (("train", 8), ("val", 3), ("test", 2)))
    s = train(cfg(data, tmp_path / "run", epochs=1, img_size=32), show_progress=False)
    assert s["test_split"] == "test/" and s["n_test"] == 4
    assert s["validation"] == "val/" and s["n_val"] == 6 and s["selected_by"] == "validation accuracy"


def test_held_out_split_is_the_same_streamed_and_in_memory(tmp_path):
    data = photo_tree(tmp_path / "photos")
    ram = train(cfg(data, tmp_path / "ram", img_size=32, val_split="0.25", stream=False), show_progress=False)
    streamed = train(cfg(data, tmp_path / "stream", img_size=32, val_split="0.25", stream=True, workers=0),
                     show_progress=False)
    assert ram["n_val"] == streamed["n_val"] == 4 and ram["n_train"] == streamed["n_train"] == 16
    assert ram["test_acc"] == streamed["test_acc"] and ram["val_acc"] == streamed["val_acc"]


@pytest.mark.parametrize("value,match", [("val", "val/ is this data's test split"),
                                         ("0.9", "must be in (0, 0.5]"),
                                         ("holdout", "has no holdout/ folder")])
def test_bad_val_split_is_one_line(tmp_path, capsys, value, match):
    data = photo_tree(tmp_path / "photos", (("train", 2), ("val", 1)))
    capsys.readouterr()
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--val-split", value])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and match in err[0], err


def test_cli_closing_line_and_evaluate_read_val(tmp_path, capsys):
    data = photo_tree(tmp_path / "photos")
    out = tmp_path / "run"
    capsys.readouterr()
    code = main(["train", "--data", str(data), "--out", str(out), "--img-size", "32", "--epochs", "1",
                 "--batch-size", "8", "--val-split", "0.2"])
    text, err = capsys.readouterr()
    assert code == 0 and "chosen on the validation split, 20% of train/ held out (4 images)" in text
    # off a terminal no bar: one line per epoch, with its validation accuracy
    epochs = [line for line in text.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 1 and epochs[0].startswith("epoch 1/1:") and " val " in epochs[0]
    assert "test split val/ (8 images)" in text and "best test accuracy" not in text
    code = main(["evaluate", str(out), "--data", str(data), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["n_images"] == 8 and result["split"] == "val/"
