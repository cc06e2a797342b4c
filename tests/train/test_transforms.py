"""patchcrypt.transforms: Encrypt equals `patchcrypt encrypt` bit for bit, batched == unbatched, pickles, CUDA;
EncryptedImageFolder; the fine-tuning example runs."""

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from patchcrypt import Key
from patchcrypt.cli import main
from patchcrypt.codec import read_image, write_image
from patchcrypt.errors import PatchcryptError
from patchcrypt.models import create_model
from patchcrypt.transforms import Encrypt, EncryptedImageFolder

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A train/test ImageFolder of real photo crops (scikit-image), 2 classes, 32×32."""
    from skimage import data

    root = tmp_path_factory.mktemp("tf")
    photos = [data.astronaut(), data.chelsea()]
    for split, n in (("train", 6), ("test", 2)):
        for c, photo in enumerate(photos):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(n):
                y, x = 32 * i + (0 if split == "train" else 200), 40 * i
                write_image(root / split / f"c{c}" / f"{i}.png", np.ascontiguousarray(photo[y:y + 32, x:x + 32]))
    return root


@pytest.mark.parametrize("scheme", ["block-pixel", "etc", "le"])
def test_equals_patchcrypt_encrypt_bit_for_bit(tree, key_file, tmp_path, scheme):
    out = tmp_path / "enc"
    assert main(["encrypt", str(tree / "train"), str(out), "--key", str(key_file), "--scheme", scheme,
                 "--block-size", "4"]) == 0
    enc = Encrypt(key_file, scheme, 4)
    for f in sorted((tree / "train").rglob("*.png")):
        x = torch.from_numpy(read_image(f)).permute(2, 0, 1).contiguous()
        want = torch.from_numpy(read_image(out / f.relative_to(tree / "train"))).permute(2, 0, 1)
        assert torch.equal(enc(x), want), f


def test_batched_equals_unbatched_pickles_and_keeps_input(key_file):
    x = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    before = x.clone()
    enc = Encrypt(Key.load(key_file), "etc", 4)
    batched = enc(x)
    assert batched.dtype == torch.uint8 and batched.shape == x.shape and torch.equal(x, before)
    assert torch.equal(batched, torch.stack([enc(xi) for xi in x]))
    again = pickle.loads(pickle.dumps(enc))                # what a DataLoader worker receives
    assert torch.equal(again(x), batched)
    assert Key.load(key_file).fingerprint in repr(enc) and Key.load(key_file)._bytes.hex() not in repr(enc)
    # per-image keys: every call new nonces, reproducible when the nonces are given
    pi = Encrypt(Key.load(key_file), "block-pixel", 4, per_image=True)
    nonces = pi.cipher.new_nonces(5)
    assert torch.equal(pi(x, nonces), torch.stack([pi(xi, [n]) for xi, n in zip(x, nonces)]))
    assert not torch.equal(pi(x), pi(x))
    with pytest.raises(PatchcryptError, match="uint8"):
        enc(x.float())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_stays_on_device(key_file):
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    enc = Encrypt(Key.load(key_file), "etc", 4)
    y = enc(x.cuda())
    assert y.is_cuda and torch.equal(y.cpu(), enc(x))


def test_encrypted_image_folder_in_a_dataloader(tree, key_file):
    enc = Encrypt(key_file, "block-pixel", 4)
    ds = EncryptedImageFolder(tree, enc, augment=lambda x: x.flip(-1), split="train")
    assert len(ds) == 12 and ds.classes == ["c0", "c1"]
    x, y = ds[0]
    assert x.dtype == torch.uint8 and x.shape == (3, 32, 32) and y == 0
    assert torch.equal(x, enc(ds.images[0].flip(-1).contiguous()))   # augment first, then encrypt
    batch, labels = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch.shape == (4, 3, 32, 32) and labels.tolist() == [0, 0, 0, 0]


@pytest.mark.slow
def test_finetune_example_runs(tree, key_file, tmp_path):
    model = create_model("vit_pico_patch4_32", seed=0, num_classes=10)   # a tiny "pretrained" model
    torch.save(model.state_dict(), tmp_path / "vit.pth")
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(REPO / "examples" / "finetune.py"), "--data", str(tree), "--pretrained",
                        str(tmp_path / "vit.pth"), "--key", str(key_file), "--epochs", "1", "--batch-size", "8"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "head replaced: 10 → 2 classes" in r.stdout and "epoch 1:" in r.stdout
