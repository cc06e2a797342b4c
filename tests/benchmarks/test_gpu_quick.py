"""The prepared GPU accuracy run, on CPU: the CIFAR pack format, the device-side pipeline, the epoch sizing,
and ``benchmarks/gpu_accuracy.py --quick`` end to end with only torch, numpy and Pillow importable."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from patchcrypt import Key
from patchcrypt.ciphers import create_cipher
from patchcrypt.data import load_dataset, read_pack, write_pack
from patchcrypt.errors import PatchcryptError

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_accuracy.py"


def _bench():
    spec = importlib.util.spec_from_file_location("gpu_accuracy", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the file runs
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory) -> Path:
    """A CIFAR-shaped tree of real photo tiles: train/ (10 classes × 14) and test/ (10 × 4), 32×32 JPEG Q75."""
    from patchcrypt.data import sample_photos

    photos = sample_photos(size=160)
    root = tmp_path_factory.mktemp("tree")
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 14), ("test", 4)):
        for c in range(10):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                photo = photos[(c + i) % len(photos)]
                y, x = rng.integers(0, 160 - 32, 2)
                Image.fromarray(photo[y:y + 32, x:x + 32]).save(folder / f"{i:04d}.jpg", quality=75)
    return root


@pytest.fixture(scope="module")
def tiny_pack(tiny_tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pack") / "tiny-pack.npz"
    info = write_pack(tiny_tree, out)
    assert info["images"] == 180 and info["train"] == 140 and info["test"] == 40
    return out


def test_pack_decodes_to_the_trees_images(tiny_tree, tiny_pack):
    packed = read_pack(tiny_pack, workers=2)
    for split in ("train", "test"):
        ref = load_dataset(tiny_tree, split, cache=False)
        assert packed[split].classes == ref.classes
        assert np.array_equal(packed[split].labels, ref.labels)
        assert packed[split].images.dtype == np.uint8 and np.array_equal(packed[split].images, ref.images)


def test_pack_errors(tiny_tree, tiny_pack, tmp_path):
    with pytest.raises(PatchcryptError, match="no such pack"):
        read_pack(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(PatchcryptError, match="not a patchcrypt pack"):
        read_pack(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(PatchcryptError, match="not a readable pack"):
        read_pack(tmp_path / "junk.npz")
    with pytest.raises(PatchcryptError, match="no split 'val'"):
        read_pack(tiny_pack, ["val"])
    with pytest.raises(PatchcryptError, match="has no val/ folder"):
        write_pack(tiny_tree, tmp_path / "p.npz", splits=("train", "val"))


def test_crop_flip_is_a_shifted_or_mirrored_crop():
    bench = _bench()
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(0)
    out = bench.crop_flip(x, gen)
    assert out.shape == x.shape and out.dtype == torch.uint8
    for i in range(len(x)):  # every output is a crop of the edge-padded image, maybe mirrored
        padded = torch.nn.functional.pad(x[i:i + 1].float(), (4, 4, 4, 4), mode="replicate")[0]
        hits = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                if torch.equal((padded[:, dy:dy + 32, dx:dx + 32].flip(2) if f else
                                padded[:, dy:dy + 32, dx:dx + 32]).to(torch.uint8), out[i])]
        assert hits, i
    assert torch.equal(bench.crop_flip(x, torch.Generator().manual_seed(0)), out)  # replayable from the seed


def test_cipher_device_path_never_touches_the_host():
    """On a non-CPU device the compiled gather + XOR stays on that device: run it on PyTorch's 'meta'
    device, where any copy to the host (``.cpu()``, ``.numpy()``) would fail."""
    key = Key.from_bytes(bytes(range(32)))
    for scheme in ("block-pixel", "etc"):
        cipher = create_cipher(scheme, key, block_size=4)
        x = torch.empty((8, 3, 32, 32), dtype=torch.uint8, device="meta")
        y = cipher.encrypt(x)
        assert y.device.type == "meta" and y.shape == x.shape and y.dtype == torch.uint8


def test_epochs_fit_the_budget_and_are_equal_within_a_model():
    bench = _bench()
    timings = {("ViT", "shared"): {"epoch_s": 4.0, "eval_s": 0.5}, ("ViT", "blockwise"): {"epoch_s": 5.0, "eval_s": 0.5},
               ("ConvMixer", "shared"): {"epoch_s": 2.0, "eval_s": 0.2},
               ("ConvMixer", "blockwise"): {"epoch_s": 2.5, "eval_s": 0.2}}
    epochs = bench.choose_epochs(timings, bench.CELLS, 400.0, 1, 200, reserve_s=10.0)
    total = sum(epochs[c.model] * timings[(c.model, c.embed)]["epoch_s"] + timings[(c.model, c.embed)]["eval_s"]
                for c in bench.CELLS)
    assert total <= 390.0 and set(epochs) == {"ViT", "ConvMixer"}
    assert epochs["ViT"] >= 8 and epochs["ConvMixer"] >= 8  # not wastefully small either
    weighted = bench.choose_epochs(timings, bench.CELLS, 400.0, 1, 200, reserve_s=10.0,
                                   weights={"ViT": 2.0, "ConvMixer": 1.0})
    vit_s = sum(weighted["ViT"] * timings[("ViT", c.embed)]["epoch_s"] for c in bench.CELLS if c.model == "ViT")
    cm_s = sum(weighted["ConvMixer"] * timings[("ConvMixer", c.embed)]["epoch_s"] for c in bench.CELLS
               if c.model == "ConvMixer")
    assert weighted["ViT"] > epochs["ViT"] and vit_s + cm_s <= 390.0 and vit_s > 1.5 * cm_s
    assert bench.choose_epochs(timings, bench.CELLS, 1.0, 1, 200, 0.0) == {"ViT": 1, "ConvMixer": 1}
    assert bench.choose_epochs(timings, bench.CELLS, 1e6, 1, 30, 0.0) == {"ViT": 30, "ConvMixer": 30}


_ONLY_TORCH_NUMPY_PILLOW = """
import runpy, sys
# packages the project uses elsewhere but the GPU path must not need: importing any of them fails
for name in ("scipy", "skimage", "sklearn", "simplejpeg", "tqdm", "yaml", "matplotlib", "typer", "fastapi",
             "uvicorn", "httpx", "pandas"):
    sys.modules[name] = None
sys.argv = [sys.argv[1]] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
def test_quick_run_end_to_end_with_only_torch_numpy_pillow(tiny_pack, tmp_path):
    out = tmp_path / "out"
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", _ONLY_TORCH_NUMPY_PILLOW, str(SCRIPT), "--quick", "--pack", str(tiny_pack),
           "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "results.json").read_text())
    rows = data["rows"]
    trained = [r for r in rows if r["kind"] == "trained"]
    keyed = [r for r in rows if r["kind"] == "keyed"]
    assert len(trained) == 8 and all(r["status"] == "done" and r["epochs"] == 1 for r in trained)
    assert {r["cell"] for r in trained} >= {"plain", "block-pixel", "etc, shared embedding",
                                              "etc, position-wise embeddings"}
    vit_keyed = [r for r in keyed if r["model"].startswith("ViT")]
    assert [r["status"] for r in vit_keyed] == ["done", "done"]
    for r in vit_keyed:  # a keyed model on encrypted images answers as the plain model on plain images
        assert r["same_prediction_as_plain"] == 1.0 and r["accuracy"] == r["plain_model_fp32_accuracy"]
    assert [r["status"] for r in keyed if r["model"].startswith("ConvMixer")] == ["refused", "refused"]
    assert data["config"]["n_train"] == 140 and data["config"]["key_fingerprint"]
    assert "| plain |" in (out / "table.md").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "table.md"]  # few files: all come back
    again = subprocess.run([sys.executable, str(SCRIPT), "--table", "--out", str(out)], capture_output=True,
                           text=True, env=env, timeout=120)
    assert again.returncode == 0 and "etc, position-wise embeddings" in again.stdout
