"""Fine-tuning pretrained weights on encrypted images: keyed init follows plain fine-tuning exactly,
the refusals, head replacement, linear probe, resume."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from patchcrypt import Key
from patchcrypt.ciphers import create_cipher
from patchcrypt.cli import main
from patchcrypt.codec import write_image
from patchcrypt.errors import PatchcryptError
from patchcrypt.models import build_model, create_model, load_checkpoint, save_checkpoint
from patchcrypt.models.keyed import block_maps, apply_key, centre_input
from patchcrypt.inference import predict_logits
from patchcrypt.train import TrainConfig, make_optimizer, train

from train_helpers import TINY, tiny_config


def synthetic_images(n: int, classes: int, seed: int = 0):
    """Class-dependent smooth colour images, uint8 (n, 32, 32, 3), labels (n,)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    images = []
    for c in labels:
        base = np.stack([np.sin(3 * xx * (c + 1) + rng.uniform(0, 6)), np.cos(2 * yy * (c + 1)), xx * yy], -1)
        images.append(np.clip(127 + 90 * base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8))
    return np.stack(images), labels


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """An ImageFolder (train/ + test/) of 3 synthetic classes, 16 train and 6 test images each."""
    root = tmp_path_factory.mktemp("ft")
    for split, n, seed in (("train", 48, 0), ("test", 18, 1)):
        images, labels = synthetic_images(n, 3, seed)
        for i, (im, c) in enumerate(zip(images, labels)):
            (root / split / f"c{c}").mkdir(parents=True, exist_ok=True)
            write_image(root / split / f"c{c}" / f"{i}.png", im)
    return root


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny 'pretrained' ViT, 5 classes, CIFAR normalisation, as a timm-layout .pth state dict."""
    model = create_model("vit_pico_patch4_32", seed=11, num_classes=5, **TINY)
    with torch.no_grad():  # not an initialisation: weights with some structure, like trained ones
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    path = tmp_path_factory.mktemp("weights") / "vit.pth"
    torch.save({"model": model.state_dict()}, path)
    return path


def assert_same_weights(a, b, atol=1e-5):
    for name, p in a.items():
        q = b[name]
        if name.endswith("attn.qkv.bias"):  # the key bias has a zero gradient (softmax ignores it): Adam
            d = p.shape[0] // 3             # turns its rounding noise into lr-sized steps, in either run
            p, q = torch.cat([p[:d], p[2 * d:]]), torch.cat([q[:d], q[2 * d:]])
        assert torch.allclose(p, q, atol=atol), name


def cfg(data, out, **kw):
    return tiny_config(data, out, **{"epochs": 2, "lr": 2e-3, "seed": 5, **kw})


@pytest.mark.slow
def test_keyed_finetuning_is_the_keyed_image_of_plain_finetuning(tree, key_file, pretrained, tmp_path, capsys):
    """k steps of keyed fine-tuning on encrypted batches == keyed transform of k steps of plain fine-tuning on
    the same plain batches (block-pixel: BS + PS + BF, shared embedding), through the real ``train``."""
    train(cfg(tree, tmp_path / "plain", pretrained=str(pretrained), lr=5e-3))
    assert "head replaced: 5 → 3 classes" in capsys.readouterr().out
    train(cfg(tree, tmp_path / "keyed", pretrained=str(pretrained), init="keyed", scheme="block-pixel",
              key=str(key_file), block_size=4, lr=5e-3))
    plain, keyed = load_checkpoint(tmp_path / "plain"), load_checkpoint(tmp_path / "keyed")
    assert keyed["keyed"]["mode"] == "shared" and keyed["keyed"]["centred"]
    key = Key.load(key_file)
    x = torch.from_numpy(synthetic_images(18, 3, 1)[0]).permute(0, 3, 1, 2).contiguous()
    x_enc = create_cipher("block-pixel", key, block_size=4).encrypt(x)
    m_plain, m_keyed = build_model(plain), build_model(keyed)
    ref = predict_logits(m_plain, x, torch.device("cpu"))
    got = predict_logits(m_keyed, x_enc, torch.device("cpu"))
    assert (got - ref).abs().max() <= 1e-3
    # the plain run's weights keyed afterwards are the keyed run's weights (not only the same logits)
    apply_key(m_plain, block_maps("block-pixel", key, 4, 32), centred=True)
    assert_same_weights(m_keyed.state_dict(), m_plain.state_dict())
    # not vacuous: fine-tuning moved the weights far beyond the tolerance
    start = torch.load(pretrained, weights_only=True)["model"]["blocks.0.attn.qkv.weight"]
    assert (m_keyed.blocks[0].attn.qkv.weight - start).abs().max() > 5e-3


def _steps(model, batches, cfg_):
    opt = make_optimizer(model, cfg_)
    model.train()
    for x, y in batches:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _pair():
    """A 'pretrained' ViT and an identical copy (to be keyed)."""
    plain = create_model("vit_pico_patch4_32", seed=1, num_classes=3, **TINY)
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return plain, copy.deepcopy(plain)


@pytest.mark.slow
def test_uncentred_keying_does_not_follow_and_position_wise_differs(key_file):
    """Why the centred re-expression: keying on raw 0..255 inputs is exact for inference but its fine-tuning
    leaves the plain trajectory. Per-block keys (etc) are a gather in front of the one plain embedding, so
    keyed etc fine-tuning follows shared plain fine-tuning too; a model keyed position by position (one
    embedding per position: each sees only its own gradient) follows position-wise plain fine-tuning instead."""
    key = Key.load(key_file)
    images, labels = synthetic_images(64, 3, 2)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(labels)
    c = TrainConfig(lr=2e-3)
    results = {}
    for scheme, centred, per_position in (("block-pixel", True, False), ("block-pixel", False, False),
                                          ("etc", True, False), ("etc", True, True)):
        cipher = create_cipher(scheme, key, block_size=4)
        plain, keyed = _pair()
        centre_input(plain)
        if per_position:
            keyed.to_blockwise()
            plain.to_blockwise()   # the exact counterpart: position-wise plain fine-tuning on plain images
        apply_key(keyed, block_maps(scheme, key, 4, 32), centred=centred)
        batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
        enc = [(cipher.encrypt(b), t) for b, t in batches]
        with torch.no_grad():
            assert (keyed.eval()(enc[0][0]) - plain.eval()(batches[0][0])).abs().max() < 1e-3  # exact at step 0
        ref = _steps(plain, batches, c)
        _steps(keyed, enc, c)
        with torch.no_grad():
            results[scheme, centred, per_position] = float((keyed(cipher.encrypt(x)) - ref(x)).abs().max())
    assert results["block-pixel", True, False] <= 1e-3
    assert results["block-pixel", False, False] > 1e-2          # uncentred: the keyed model leaves the plain path
    assert results["etc", True, False] <= 1e-3
    assert results["etc", True, True] <= 1e-3


def test_refusals_name_the_reason_and_the_alternative(tree, key_file, pretrained, tmp_path):
    def refused(match, **kw):
        with pytest.raises(PatchcryptError, match=match) as info:
            train(cfg(tree, tmp_path / "r", pretrained=str(pretrained), **kw))
        assert "--init plain" in str(info.value) or match.startswith("--init")
        assert "\n" not in str(info.value)

    k = dict(key=str(key_file), block_size=4)
    refused("per-image", init="keyed", scheme="block-pixel", per_image=True, **k)
    refused("4-bit halves", init="keyed", scheme="le", **k)
    cm = create_model("convmixer_128_4_patch4_32", num_classes=3, dim=16, depth=1)
    torch.save(cm.state_dict(), tmp_path / "cm.pth")
    with pytest.raises(PatchcryptError, match="ConvMixer.*--init plain"):
        train(cfg(tree, tmp_path / "cm", model="convmixer_128_4_patch4_32", model_kwargs={"dim": 16, "depth": 1},
                  pretrained=str(tmp_path / "cm.pth"), init="keyed", scheme="block-pixel", **k))
    enc = tmp_path / "enc"
    assert main(["encrypt", str(tree), str(enc), "--key", str(key_file), "--scheme", "block-pixel",
                 "--block-size", "4"]) == 0
    with pytest.raises(PatchcryptError, match="owner's key.*--init plain"):
        train(cfg(enc, tmp_path / "s", pretrained=str(pretrained), init="keyed"))
    with pytest.raises(PatchcryptError, match="need --pretrained"):
        train(cfg(tree, tmp_path / "t", init="keyed"))
    # mismatching weights: one line naming the first tensor that does not fit
    with pytest.raises(PatchcryptError, match="'cls_token' has shape \\(1, 1, 32\\), the model needs \\(1, 1, 64\\)"):
        train(cfg(tree, tmp_path / "w", pretrained=str(pretrained), model_kwargs={"depth": 1}))
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "resnet.pth")
    with pytest.raises(PatchcryptError, match="'conv1.weight' is not in VisionTransformer"):
        train(cfg(tree, tmp_path / "x", pretrained=str(tmp_path / "resnet.pth")))


@pytest.mark.slow
def test_convmixer_keyed_without_block_scrambling_and_a_linear_probe(tree, key_file, tmp_path):
    """ConvMixer takes keyed init for in-block steps (here bit flipping, shared); --freeze backbone trains
    the head alone, BatchNorm statistics included."""
    cm = create_model("convmixer_128_4_patch4_32", seed=2, num_classes=3, dim=16, depth=1)
    save_checkpoint(tmp_path / "cm.pt", cm, model_name="convmixer_128_4_patch4_32",
                    model_kwargs={"num_classes": 3, "dim": 16, "depth": 1}, classes=["a", "b", "c"])
    train(cfg(tree, tmp_path / "bf", model="convmixer_128_4_patch4_32", model_kwargs={"dim": 16, "depth": 1},
              pretrained=str(tmp_path / "cm.pt"), init="keyed", scheme="step-bf", key=str(key_file), block_size=4,
              epochs=1))
    assert load_checkpoint(tmp_path / "bf")["keyed"]["mode"] == "shared"
    out = tmp_path / "probe"
    train(cfg(tree, out, model="convmixer_128_4_patch4_32", model_kwargs={"dim": 16, "depth": 1},
              pretrained=str(tmp_path / "cm.pt"), freeze="backbone", epochs=1))
    after = load_checkpoint(out)["state_dict"]
    centre_input(cm)
    for name, p in cm.state_dict().items():   # only the head changed (BatchNorm statistics included)
        if not name.startswith("head."):
            assert torch.allclose(p.float(), after[name].float(), atol=1e-5), name
    assert not torch.equal(cm.state_dict()["head.weight"], after["head.weight"])


@pytest.mark.slow
def test_resume_continues_a_finetuning_run_exactly(tree, key_file, pretrained, tmp_path):
    k = dict(pretrained=str(pretrained), init="keyed", scheme="etc", key=str(key_file), block_size=4)
    train(cfg(tree, tmp_path / "straight", **k))
    train(cfg(tree, tmp_path / "split", **dict(k, epochs=1)))
    train(cfg(tree, tmp_path / "split", **dict(k, resume=True)))
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    assert a["model_kwargs"]["embed"] == "keyed" and a["keyed"]["mode"] == "position-wise"
    for name in a["state_dict"]:
        assert torch.equal(a["state_dict"][name], b["state_dict"][name]), name


@pytest.mark.slow
def test_cli_finetune_under_torchrun_equals_one_process(tree, key_file, pretrained, tmp_path, capsys):
    """The CLI under torchrun (2 processes, gloo): keyed init on etc, a keyed gather; the same steps
    as one process on the union of both ranks' batches."""
    (tmp_path / "tiny.yaml").write_text("model_kwargs: {depth: 1, embed_dim: 32, num_heads: 2}\n")
    args = ["train", "--data", str(tree), "--model", "vit_pico_patch4_32", "--config", str(tmp_path / "tiny.yaml"),
            "--pretrained", str(pretrained), "--init", "keyed", "--scheme", "etc", "--key", str(key_file),
            "--block-size", "4", "--epochs", "1", "--batch-size", "16", "--augment", "none", "--seed", "5"]
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # --standalone: torchrun finds a free port (a port derived from the pid could collide with a parallel run)
    res = subprocess.run([str(torchrun), "--nproc-per-node=2", "--standalone",
                          "-m", "patchcrypt", *args, "--out", str(tmp_path / "ddp")],
                         capture_output=True, text=True, timeout=240, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("head replaced: 5 → 3 classes") == 1          # rank 0 speaks, once
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    a, b = load_checkpoint(tmp_path / "ddp"), load_checkpoint(tmp_path / "one")
    assert a["keyed"]["mode"] == "position-wise" and a["model_kwargs"]["embed"] == "keyed"
    assert_same_weights(a["state_dict"], b["state_dict"])
    # mismatching weights through the CLI: one line naming the tensor
    capsys.readouterr()
    assert main([*args[:5], *args[7:], "--out", str(tmp_path / "bad")]) != 0  # no --config: full width
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tensor 'cls_token' has shape" in err[0]
