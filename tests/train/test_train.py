"""Training and evaluation: the three ways in, resume, DDP, evaluation refusals, bad input."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from patchcrypt import Key
from patchcrypt.cli import main
from patchcrypt.codec import write_image
from patchcrypt.models import load_checkpoint
from patchcrypt.train import TrainConfig, augment_crop_flip, train

from train_helpers import copy_cifar, tiny_config as cfg


@pytest.fixture(scope="module")
def cifar_tree(tmp_path_factory, shared_cifar):
    """A small real CIFAR ImageFolder: 3 classes, 24 train and 8 test images each."""
    return copy_cifar(tmp_path_factory.mktemp("cifar"), shared_cifar)


@pytest.mark.slow
def test_plain_data_with_key_writes_a_run(cifar_tree, key_file, tmp_path):
    out = tmp_path / "run"
    summary = train(cfg(cifar_tree, out, scheme="block-pixel", key=str(key_file), block_size=4, epochs=2))
    assert {p.name for p in out.iterdir()} >= {"config.yaml", "metrics.csv", "summary.json", "last.pt", "best.pt"}
    lines = (out / "metrics.csv").read_text().strip().splitlines()
    assert lines[0].startswith("epoch,train_loss") and len(lines) == 3
    ckpt = load_checkpoint(out)
    assert ckpt["scheme"] == "block-pixel" and ckpt["block_size"] == 4
    assert ckpt["key_fingerprint"] == Key.load(key_file).fingerprint
    assert ckpt["classes"] == ["airplane", "frog", "truck"]
    secret = Key.load(key_file)._bytes
    for f in out.iterdir():
        assert secret not in f.read_bytes() and secret.hex().encode() not in f.read_bytes()
    assert 0 <= summary["encrypt_fraction"] < 0.2 and summary["n_train"] == 72


@pytest.mark.slow
def test_adaptation_network_takes_the_data_block_size(cifar_tree, key_file, tmp_path):
    run = cfg(cifar_tree, tmp_path / "adapt", model="resnet18_cifar_adapt", model_kwargs={"width": 4},
              scheme="block-pixel", key=str(key_file), block_size=8, subset=12, test_subset=6)
    train(run)
    assert load_checkpoint(tmp_path / "adapt")["model_kwargs"]["block_size"] == 8


@pytest.mark.slow
def test_resume_is_exact(cifar_tree, key_file, tmp_path):
    straight = tmp_path / "straight"
    train(cfg(cifar_tree, straight, scheme="etc", key=str(key_file), block_size=4, epochs=2))
    split = tmp_path / "split"
    train(cfg(cifar_tree, split, scheme="etc", key=str(key_file), block_size=4, epochs=1))
    # a second run into the same folder without --resume is refused, nothing overwritten
    before = (split / "last.pt").read_bytes()
    with pytest.raises(Exception, match="--resume"):
        train(cfg(cifar_tree, split, scheme="etc", key=str(key_file), block_size=4, epochs=2))
    assert (split / "last.pt").read_bytes() == before
    with pytest.raises(Exception, match="different config"):
        train(cfg(cifar_tree, split, scheme="etc", key=str(key_file), block_size=4, epochs=2, lr=5e-3, resume=True))
    train(cfg(cifar_tree, split, scheme="etc", key=str(key_file), block_size=4, epochs=2, resume=True))
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(split / "last.pt")
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k


@pytest.mark.slow
def test_pre_encrypted_tree_and_jpeg(cifar_tree, key_file, tmp_path, capsys):
    enc = tmp_path / "enc"
    assert main(["encrypt", str(cifar_tree), str(enc), "--key", str(key_file), "--scheme", "block-pixel",
                 "--block-size", "4"]) == 0
    with pytest.warns(UserWarning, match="ignored"):
        summary = train(cfg(enc, tmp_path / "server", key=str(key_file)))
    assert summary["pre_encrypted"] and summary["scheme"] == "block-pixel"
    assert summary["key_fingerprint"] == Key.load(key_file).fingerprint
    # evaluation on the encrypted tree works; on a tree for another key it is refused
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "server"), "--data", str(enc), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_images"] == 24 and set(result["per_class"]) == {"airplane", "frog", "truck"}
    other = tmp_path / "other.key"
    Key.generate().save(other)
    enc2 = tmp_path / "enc2"
    assert main(["encrypt", str(cifar_tree), str(enc2), "--key", str(other), "--scheme", "block-pixel",
                 "--block-size", "4"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "server"), "--data", str(enc2)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "key fingerprint" in err[0]
    # EtC JPEG on the fly
    s = train(cfg(cifar_tree, tmp_path / "jpeg", scheme="etc", key=str(key_file), block_size=4, jpeg_quality=90))
    assert s["jpeg_quality"] == 90 and load_checkpoint(tmp_path / "jpeg")["jpeg_quality"] == 90


def test_augmentation_is_a_crop_and_flip():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.int64).remainder(251).to(torch.uint8).reshape(2, 3, 8, 8)
    y = augment_crop_flip(x, torch.Generator().manual_seed(0), pad=0)
    for i in range(2):  # with no padding the only change is an optional horizontal flip
        assert torch.equal(y[i], x[i]) or torch.equal(y[i], x[i].flip(-1))


def bad(capsys, *args):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


def test_bad_input(cifar_tree, key_file, tmp_path, capsys):
    base = ["train", "--data", cifar_tree, "--epochs", "1", "--out"]
    assert "valid:" in bad(capsys, *base, tmp_path / "a", "--model", "vit_gigantic")
    assert "valid" in bad(capsys, *base, tmp_path / "b", "--model", "vit_pico_patch4_32", "--scheme", "rot13",
                          "--key", key_file, "--block-size", "4")
    assert "patch size is 4" in bad(capsys, *base, tmp_path / "c", "--model", "vit_pico_patch4_32", "--scheme",
                                    "block-pixel", "--key", key_file, "--block-size", "8")
    assert "--key" in bad(capsys, *base, tmp_path / "d", "--model", "vit_pico_patch4_32", "--scheme", "etc",
                          "--block-size", "4")
    (tmp_path / "empty").mkdir()
    assert "no images" in bad(capsys, "train", "--data", tmp_path / "empty", "--out", tmp_path / "e")
    one = tmp_path / "one" / "cat"
    one.mkdir(parents=True)
    shutil.copy(next((cifar_tree / "train" / "frog").iterdir()), one / "x.jpg")
    assert "at least 2" in bad(capsys, "train", "--data", tmp_path / "one", "--out", tmp_path / "f")
    odd = tmp_path / "odd"
    for cls in ("a", "b"):
        (odd / cls).mkdir(parents=True)
        for i in range(3):
            write_image(odd / cls / f"{i}.png", np.full((30, 30, 3), 40 * i, np.uint8))
    # plain images are resized to the model's size (32) by default; an explicit size must fit the patches
    assert "not a multiple of patch_size 4" in bad(capsys, "train", "--data", odd, "--out", tmp_path / "g",
                                                   "--model", "vit_pico_patch4_32", "--img-size", "30")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "best.pt").write_bytes(b"not a checkpoint")
    assert "checkpoint" in bad(capsys, "evaluate", corrupt, "--data", cifar_tree)


@pytest.mark.slow
def test_two_process_ddp_averages_gradients(cifar_tree, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(torchrun), "--nproc-per-node=2", "--standalone",  # a free port: parallel runs never share one
           "-m", "patchcrypt", "train", "--data", str(cifar_tree), "--model", "vit_pico_patch4_32",
           "--out", str(out), "--epochs", "1", "--batch-size", "24", "--lr", "1e-3", "--augment", "none",
           "--seed", "5"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert res.stdout.count("test accuracy") == 1, res.stdout  # rank 0 alone closes the run
    # one process on the union of both ranks' batches takes the same steps: DDP averaged the gradients
    single = tmp_path / "single"
    train(TrainConfig(data=str(cifar_tree), model="vit_pico_patch4_32", out=str(single), epochs=1, batch_size=24,
                      lr=1e-3, augment="none", seed=5))
    a, b = load_checkpoint(out / "last.pt"), load_checkpoint(single / "last.pt")
    # and a process that saw only its own half would have moved elsewhere: rank 0's batches alone
    half = tmp_path / "half"
    train(TrainConfig(data=str(cifar_tree), model="vit_pico_patch4_32", out=str(half), epochs=1, batch_size=12,
                      lr=1e-3, augment="none", seed=5, subset=36))
    c = load_checkpoint(half / "last.pt")
    diff_ddp = max(float((a["state_dict"][k] - b["state_dict"][k]).abs().max()) for k in a["state_dict"])
    diff_half = max(float((c["state_dict"][k] - b["state_dict"][k]).abs().max()) for k in a["state_dict"])
    assert diff_ddp < 2e-4 and diff_half > 10 * diff_ddp, (diff_ddp, diff_half)
