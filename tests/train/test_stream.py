"""Streaming training, --max-steps, --img-size on photos of mixed sizes, and peak memory vs data-set size."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from patchcrypt.cli import main
from patchcrypt.codec import write_image
from patchcrypt.models import load_checkpoint
from patchcrypt.train import train

from train_helpers import copy_cifar, tiny_config as cfg


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory, shared_cifar):
    """3 classes of real CIFAR images: 24 train and 8 test each."""
    return copy_cifar(tmp_path_factory.mktemp("cifar-small"), shared_cifar)


@pytest.fixture(scope="module")
def photo_tree(tmp_path_factory):
    """Two classes of crops of real photos at many sizes and aspect ratios (no train/test split)."""
    from patchcrypt.data.samples import full_photos

    photos = full_photos()
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(7)
    for ci, cls in enumerate(("a", "b")):
        (root / cls).mkdir()
        for i in range(12):
            p = photos[(2 * ci + i % 2) % len(photos)]
            h, w = int(rng.integers(40, 160)), int(rng.integers(40, 160))
            r, c = rng.integers(0, p.shape[0] - h), rng.integers(0, p.shape[1] - w)
            write_image(root / cls / f"{i}.jpg", np.ascontiguousarray(p[r:r + h, c:c + w]), quality=90)
    return root


def _same_weights(a, b):
    sa, sb = load_checkpoint(a)["state_dict"], load_checkpoint(b)["state_dict"]
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_streaming_trains_the_same_weights_as_in_ram(small_tree, key_file, tmp_path):
    run = dict(scheme="block-pixel", key=str(key_file), block_size=4, epochs=2)
    ram = train(cfg(small_tree, tmp_path / "ram", stream=False, **run))
    streamed = train(cfg(small_tree, tmp_path / "stream", stream=True, workers=1, **run))
    assert not ram["streaming"] and streamed["streaming"]
    assert _same_weights(tmp_path / "ram", tmp_path / "stream")
    assert streamed["best_test_acc"] == ram["best_test_acc"]


def test_memory_budget_chooses_streaming(small_tree, tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHCRYPT_MEMORY_BUDGET", "16K")  # 18 decoded 32x32 images are 54 KiB
    assert train(cfg(small_tree, tmp_path / "a", workers=0, subset=12, test_subset=6))["streaming"]
    monkeypatch.setenv("PATCHCRYPT_MEMORY_BUDGET", "1G")
    assert not train(cfg(small_tree, tmp_path / "b", subset=12, test_subset=6))["streaming"]
    monkeypatch.setenv("PATCHCRYPT_MEMORY_BUDGET", "lots")
    with pytest.raises(Exception, match="PATCHCRYPT_MEMORY_BUDGET"):
        train(cfg(small_tree, tmp_path / "c"))


def test_max_steps_stops_after_that_many_optimiser_steps(small_tree, tmp_path):
    out = tmp_path / "steps"
    train(cfg(small_tree, out, epochs=5, max_steps=7))  # 72 images / 16 = 5 steps an epoch
    extra = load_checkpoint(out / "last.pt")["extra"]
    assert extra["scheduler"]["last_epoch"] == 7
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == 1 + 2
    assert extra["scheduler"]["_last_lr"][0] == pytest.approx(0.0, abs=1e-12)  # the schedule ends with the run


@pytest.mark.parametrize("stream", [False, True])
def test_photos_of_mixed_sizes_train_with_img_size(photo_tree, key_file, tmp_path, stream, capsys):
    out = tmp_path / "run"
    code = main(["train", "--data", str(photo_tree), "--out", str(out), "--model", "vit_pico_patch4_32",
                 "--img-size", "64", "--scheme", "etc", "--key", str(key_file), "--block-size", "4",
                 "--epochs", "1", "--batch-size", "8", "--workers", "1", "--stream" if stream else "--in-memory"])
    text = capsys.readouterr().out
    assert code == 0
    assert "vit_pico_patch4_32 built at 64x64 (its name says 32x32)" in text
    ckpt = load_checkpoint(out)
    assert ckpt["model_kwargs"]["img_size"] == 64 and ckpt["config"]["augment"] == "auto"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["img_size"] == 64 and summary["streaming"] == stream and summary["n_train"] == 22


def test_photos_default_to_the_models_size_and_encrypted_data_is_never_resized(photo_tree, key_file, tmp_path,
                                                                                 capsys):
    assert main(["train", "--data", str(photo_tree), "--out", str(tmp_path / "d"), "--model", "vit_pico_patch4_32",
                 "--epochs", "1", "--max-steps", "1"]) == 0
    assert load_checkpoint(tmp_path / "d")["model_kwargs"]["img_size"] == 32
    enc = tmp_path / "enc"
    tree = tmp_path / "sq"
    for cls in ("a", "b"):
        (tree / cls).mkdir(parents=True)
        for i in range(3):
            write_image(tree / cls / f"{i}.png", np.full((48, 48, 3), 30 * i + 60 * (cls == "b"), np.uint8))
    assert main(["encrypt", str(tree), str(enc), "--key", str(key_file), "--scheme", "block-pixel",
                 "--block-size", "4"]) == 0
    capsys.readouterr()
    code = main(["train", "--data", str(enc), "--out", str(tmp_path / "e"), "--img-size", "32", "--epochs", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot be resized" in err[0]


def _peak_rss_mb(args, env):
    """Peak resident memory (MB) of the largest process a training command starts (itself or a worker)."""
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    res = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "patchcrypt", *args],
                         capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    return float(res.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_data_set(tmp_path, key_file):
    """A 20x larger tree (streamed) peaks within 40 MB of the small one (its decoded copy would add ~220 MB)."""
    from patchcrypt.data.samples import sample_photos

    photos = sample_photos(160)
    for n, name in ((200, "small"), (4000, "large")):
        for i in range(n):
            d = tmp_path / name / ("a" if i % 2 else "b")
            d.mkdir(parents=True, exist_ok=True)
            img = np.roll(photos[i % len(photos)], i, axis=1)[i % 64:i % 64 + 96, :96]
            write_image(d / f"{i}.jpg", np.ascontiguousarray(img), quality=85)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"), "OMP_NUM_THREADS": "1",
           "PATCHCRYPT_MEMORY_BUDGET": "64M", "PATCHCRYPT_CACHE": str(tmp_path / "cache")}
    peaks = {}
    for name in ("small", "large"):
        peaks[name] = _peak_rss_mb(["train", "--data", str(tmp_path / name), "--out", str(tmp_path / f"run-{name}"),
                                    "--model", "vit_pico_patch4_32", "--img-size", "96", "--scheme", "etc",
                                    "--key", str(key_file), "--block-size", "4", "--max-steps", "4",
                                    "--batch-size", "16", "--test-subset", "20", "--workers", "1"], env)
    assert peaks["large"] - peaks["small"] < 40, peaks


def test_evaluate_streams_past_the_budget_with_the_same_result(small_tree, photo_tree, key_file, tmp_path,
                                                               monkeypatch):
    from patchcrypt.evaluate import evaluate_checkpoint

    run = tmp_path / "run"
    train(cfg(small_tree, run, scheme="etc", key=str(key_file), block_size=4, max_steps=2))
    in_ram = evaluate_checkpoint(run, small_tree, key=str(key_file))
    monkeypatch.setenv("PATCHCRYPT_MEMORY_BUDGET", "1K")
    streamed = evaluate_checkpoint(run, small_tree, key=str(key_file))
    assert streamed["confusion"] == in_ram["confusion"] and streamed["n_images"] == 24
    # photos of any size are brought to the model's 32x32 (resize + centre crop) for evaluation too
    photos = tmp_path / "photos"
    shutil.copytree(photo_tree, photos)
    for d in photos.iterdir():
        d.rename(photos / {"a": "airplane", "b": "frog"}[d.name])
    (photos / "truck").mkdir()
    shutil.copy(next((photos / "frog").iterdir()), photos / "truck" / "x.jpg")
    monkeypatch.delenv("PATCHCRYPT_MEMORY_BUDGET")
    assert evaluate_checkpoint(run, photos, key=str(key_file))["n_images"] == 25
