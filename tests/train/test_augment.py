"""patchcrypt.augment (crop + flip kernels against a numpy reference) and the GPU recipe's TrainConfig options
(device-resident data, bf16 autocast, fused AdamW, gradient clipping) on the CPU."""

import numpy as np
import pytest
import torch

from patchcrypt.augment import crop_flip, crop_flip_params, random_crop_flip
from patchcrypt.errors import PatchcryptError
from patchcrypt.models import create_model, load_checkpoint
from patchcrypt.record import EncryptionRecord
from patchcrypt.train import TrainConfig, train
from patchcrypt.train.config import config_changes
from patchcrypt.transforms import JpegRoundTrip


def _reference(x: np.ndarray, dy, dx, flip, pad: int) -> np.ndarray:
    """Edge-pad, crop at (dy, dx), flip: the textbook definition, one image at a time."""
    n, _, h, w = x.shape
    out = np.empty_like(x)
    for i in range(n):
        padded = np.pad(x[i], ((0, 0), (pad, pad), (pad, pad)), mode="edge")
        crop = padded[:, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop[:, :, ::-1] if flip[i] else crop
    return out


@pytest.mark.parametrize("shape,pad", [((16, 3, 8, 8), 4), ((9, 1, 6, 10), 2), ((5, 3, 32, 32), 4)])
def test_crop_flip_equals_numpy_reference(shape, pad):
    x = torch.from_numpy(np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8))
    dy, dx, flip = crop_flip_params(shape[0], pad, torch.Generator().manual_seed(11))
    assert dy.shape == dx.shape == flip.shape == (shape[0],) and flip.dtype == torch.bool
    assert int(dy.min()) >= 0 and int(dy.max()) <= 2 * pad and int(dx.max()) <= 2 * pad
    y = random_crop_flip(x, torch.Generator().manual_seed(11), pad)  # the same draws
    assert y.shape == x.shape and y.dtype == torch.uint8
    assert np.array_equal(y.numpy(), _reference(x.numpy(), dy.numpy(), dx.numpy(), flip.numpy(), pad))
    assert torch.equal(crop_flip(x, dy, dx, flip, pad), y)


def test_crop_flip_draws_vary_and_cover_flips():
    dy, dx, flip = crop_flip_params(400, 4, torch.Generator().manual_seed(0))
    assert set(dy.tolist()) == set(range(9)) == set(dx.tolist())
    assert 120 < int(flip.sum()) < 280


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_crop_flip_on_the_device_matches_the_host():
    x = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    params = crop_flip_params(8, 4, torch.Generator("cuda").manual_seed(3))
    assert all(p.device.type == "cuda" for p in params)
    assert torch.equal(crop_flip(x.cuda(), *params, 4).cpu(), crop_flip(x, *(p.cpu() for p in params), 4))


def test_jpeg_round_trip_transform():
    rt = JpegRoundTrip.for_record(EncryptionRecord(scheme="etc", block_size=16, jpeg_quality=80))
    assert (rt.quality, rt.subsampling, rt.upsampling) == (80, "420", "block")
    assert JpegRoundTrip.for_record(EncryptionRecord(scheme="etc", block_size=8, jpeg_quality=80)).upsampling == "fancy"
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32), dtype=np.uint8))
    y = rt(x)
    assert y.shape == x.shape and y.dtype == torch.uint8 and not torch.equal(y, x)
    assert torch.equal(rt(x[1]), y[1])  # unbatched == batched
    with pytest.raises(PatchcryptError):
        JpegRoundTrip.for_record(EncryptionRecord(scheme="etc", block_size=16))
    with pytest.raises(PatchcryptError):
        rt(x.float())


def test_gpu_recipe_runs_on_the_cpu(tmp_path):
    """data_on_device + amp + fused + clip_grad: a tiny run trains, records the options, and is deterministic."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 4)):
        for ci, cls in enumerate(("a", "b")):
            (tmp_path / "d" / split / cls).mkdir(parents=True)
            for i in range(n):
                img = np.clip(rng.integers(0, 60, (32, 32, 3)) + 150 * ci, 0, 255).astype(np.uint8)
                Image.fromarray(img).save(tmp_path / "d" / split / cls / f"{i}.png")
    kw = dict(data=str(tmp_path / "d"), model="vit_pico_patch4_32", epochs=2, batch_size=8, device="cpu",
              model_kwargs={"depth": 1, "embed_dim": 32, "num_heads": 2}, data_on_device=True, amp=True,
              fused=True, clip_grad=1.0, eval_batch=3)
    s = train(TrainConfig(out=str(tmp_path / "r1"), **kw), show_progress=False)
    assert np.isfinite(s["final_test_acc"]) and s["n_train"] == 24
    ckpt = load_checkpoint(tmp_path / "r1" / "last.pt")
    assert {k: ckpt["config"][k] for k in ("data_on_device", "amp", "fused", "clip_grad")} == \
        {"data_on_device": True, "amp": True, "fused": True, "clip_grad": 1.0}
    train(TrainConfig(out=str(tmp_path / "r2"), **kw), show_progress=False)
    again = load_checkpoint(tmp_path / "r2" / "last.pt")["state_dict"]
    assert all(torch.equal(again[k], v) for k, v in ckpt["state_dict"].items())
    # the same run from the command line: every option has a flag, and gives the same weights
    from patchcrypt.cli import main

    assert main(["train", "--data", kw["data"], "--out", str(tmp_path / "r3"), "--model", kw["model"], "--epochs", "2",
                 "--batch-size", "8", "--device", "cpu", "--data-on-device", "--amp", "--fused", "--clip-grad", "1.0",
                 "--eval-batch", "3", "--config", str(_yaml(tmp_path, model_kwargs=kw["model_kwargs"]))]) == 0
    flags = load_checkpoint(tmp_path / "r3" / "last.pt")
    assert {k: flags["config"][k] for k in ("data_on_device", "amp", "fused", "clip_grad", "eval_batch")} == \
        {"data_on_device": True, "amp": True, "fused": True, "clip_grad": 1.0, "eval_batch": 3}
    assert all(torch.equal(flags["state_dict"][k], v) for k, v in ckpt["state_dict"].items())


def _yaml(tmp_path, **values):
    import json

    path = tmp_path / "cfg.yaml"
    path.write_text(json.dumps(values))  # JSON is YAML
    return path


def test_gpu_recipe_refusals_and_old_runs_resume(tmp_path):
    with pytest.raises(PatchcryptError, match="clip-grad"):
        train(TrainConfig(data=str(tmp_path), clip_grad=0.0))
    old = {k: v for k, v in TrainConfig().to_dict().items()
           if k not in ("data_on_device", "amp", "fused", "clip_grad", "eval_batch")}
    assert config_changes(old, TrainConfig()) == []  # a run saved before these options resumes
    assert config_changes(old, TrainConfig(amp=True)) == ["amp"]
