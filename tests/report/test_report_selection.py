"""A run's section gives the test accuracy of the epoch that was chosen and what chose it; a run from before
validation splits shows its best test accuracy over the epochs, labelled as test-selected."""

from __future__ import annotations

import json

from patchcrypt.cli import main


def _run(root, name, summary):
    run = root / name
    run.mkdir()
    (run / "metrics.csv").write_text("epoch,train_loss,test_acc\n1,2.0,0.5\n2,1.0,0.6\n")
    (run / "config.yaml").write_text("data: photos\nscheme: plain\n")
    (run / "summary.json").write_text(json.dumps({"model": "vit_pico_patch4_32", **summary}))
    return run


def test_chosen_epoch_and_old_runs(tmp_path, capsys):
    new = _run(tmp_path, "new", {"test_acc": 0.5, "selected_epoch": 1, "selected_by": "validation accuracy",
                                 "best_test_acc": 0.6, "test_split": "val/", "validation": "10% of train/ held out"})
    old = _run(tmp_path, "old", {"best_test_acc": 0.6, "final_test_acc": 0.6})
    assert main(["report", str(new), str(old), "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    new_part, old_part = page[page.index("<h2>Run new"):page.index("<h2>Run old")], page[page.index("<h2>Run old"):]
    assert "<th>test accuracy</th><td>50.0% (epoch 1, validation accuracy)</td>" in new_part
    assert "<th>test split</th><td>val/</td>" in new_part and "chosen on the test set" not in new_part
    assert "<th>best test accuracy over the epochs (chosen on the test set)</th><td>60.0%</td>" in old_part


def test_examples_come_from_val_of_a_train_and_val_folder(tmp_path, capsys, monkeypatch):
    import numpy as np

    from patchcrypt.codec import write_image

    monkeypatch.setenv("PATCHCRYPT_CACHE", "off")
    photos = tmp_path / "photos"
    rng = np.random.default_rng(1)
    for split in ("train", "val"):
        for cls in ("ants", "bees"):
            (photos / split / cls).mkdir(parents=True)
            for i in range(2):
                write_image(photos / split / cls / f"{i}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    run = _run(tmp_path, "run", {"test_acc": 0.5, "selected_epoch": 2, "selected_by": "last epoch"})
    (run / "config.yaml").write_text(f"data: {photos}\nscheme: plain\n")
    capsys.readouterr()
    assert main(["report", str(run), "--data", str(photos), "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "choose a split" not in page and "<h3>Examples (plain run: no encryption)</h3>" in page
