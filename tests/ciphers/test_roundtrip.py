"""decrypt(encrypt(x)) == x for every scheme, shape, block size and key; numpy and torch agree."""

import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from patchcrypt.ciphers import create_cipher, list_ciphers
from patchcrypt.errors import PatchcryptError
from patchcrypt.keys import Key

EXACT = [n for n in list_ciphers(include_steps=True) if n != "etc-gray"]
THREE_CHANNEL = {"etc", "pe", "block-pixel-cs", "step-cs", "step-cs-shared", "etc-nested"}


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(EXACT),
    m=st.sampled_from([1, 2, 3, 4, 8]),
    bh=st.integers(1, 4),
    bw=st.integers(1, 4),
    n=st.integers(1, 3),
    gray=st.booleans(),
    key=st.binary(min_size=32, max_size=32),
    seed=st.integers(0, 2**32 - 1),
)
def test_roundtrip_numpy_and_torch(name, m, bh, bw, n, gray, key, seed):
    c_count = 1 if gray and name not in THREE_CHANNEL else 3
    x = np.random.default_rng(seed).integers(0, 256, (n, bh * m, bw * m, c_count), dtype=np.uint8)
    cipher = create_cipher(name, Key.from_bytes(key), block_size=m)
    y = cipher.encrypt(x)
    assert y.dtype == np.uint8 and y.shape == x.shape
    assert np.array_equal(cipher.decrypt(y), x)
    t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    yt = cipher.encrypt(t)
    assert isinstance(yt, torch.Tensor) and yt.dtype == torch.uint8
    assert np.array_equal(yt.permute(0, 2, 3, 1).numpy(), y)
    assert torch.equal(cipher.decrypt(yt), t)
    # single image == batch element
    assert np.array_equal(cipher.encrypt(x[0]), y[0])


@settings(max_examples=20, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), seed=st.integers(0, 2**32 - 1),
       bh=st.integers(1, 3), bw=st.integers(1, 3))
def test_etc_gray_components_exact_and_rgb_close(key, seed, bh, bw):
    c = create_cipher("etc-gray", Key.from_bytes(key), block_size=8)
    rng = np.random.default_rng(seed)
    comp = rng.integers(0, 256, (2, 16 * bh, 24 * bw, 1), dtype=np.uint8)
    assert np.array_equal(c.decrypt_components(c.encrypt_components(comp)), comp)
    c444 = create_cipher("etc-gray", Key.from_bytes(key), block_size=8, subsampling="444")
    x = rng.integers(0, 256, (2, 16 * bh, 16 * bw, 3), dtype=np.uint8)
    y = c444.encrypt(x)
    assert y.shape == (2, 16 * bh, 48 * bw, 1)
    # 8-bit YCbCr conversion loses at most a few levels
    assert np.abs(c444.decrypt(y).astype(int) - x).max() <= 3


def test_etc_gray_grayscale_input_is_exact():
    c = create_cipher("etc-gray", Key.from_bytes(bytes(32)), block_size=8, color=False)
    x = np.random.default_rng(1).integers(0, 256, (3, 32, 40, 1), dtype=np.uint8)
    assert np.array_equal(c.decrypt(c.encrypt(x)), x)


def test_etc_gray_on_real_photo_close(real_photo):
    c = create_cipher("etc-gray", Key.from_bytes(bytes(32)), block_size=8)
    y = c.encrypt(real_photo)
    assert y.shape == (224, 336, 1)
    err = np.abs(c.decrypt(y).astype(int) - real_photo)
    assert err.mean() < 2.0  # 4:2:0 chroma on a smooth photo


@pytest.mark.parametrize("name", ["etc", "block-pixel", "le", "ele", "pe"])
def test_per_image_nonces(name):
    key = Key.from_bytes(bytes(range(32)))
    c = create_cipher(name, key, block_size=4, per_image=True)
    x = np.repeat(np.random.default_rng(2).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8), 3, axis=0)
    nonces = c.new_nonces(3)
    y = c.encrypt(x, nonces=nonces)
    assert not np.array_equal(y[0], y[1])  # same image, different per-image keys
    assert np.array_equal(c.decrypt(y, nonces=nonces), x)
    yt = c.encrypt(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), nonces=nonces)
    assert np.array_equal(yt.permute(0, 2, 3, 1).numpy(), y)
    with pytest.raises(PatchcryptError):
        c.encrypt(x)


def test_pad_and_crop():
    c = create_cipher("block-pixel", Key.from_bytes(bytes(32)), block_size=8, pad=True)
    x = np.random.default_rng(3).integers(0, 256, (2, 30, 21, 3), dtype=np.uint8)
    y = c.encrypt(x)
    assert y.shape == (2, 32, 24, 3)
    assert np.array_equal(c.decrypt(y, crop=(30, 21)), x)
    t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    assert np.array_equal(c.encrypt(t).permute(0, 2, 3, 1).numpy(), y)


def test_torch_keeps_device_and_does_not_modify_input():
    c = create_cipher("etc", Key.from_bytes(bytes(32)), block_size=4)
    t = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    before = t.clone()
    y = c.encrypt(t)
    assert y.device == t.device and torch.equal(t, before)


@pytest.mark.parametrize("name", list_ciphers(include_steps=True))
def test_every_cipher_pickles(name):
    m = 8
    c = create_cipher(name, Key.from_bytes(bytes(range(32))), block_size=m)
    x = np.random.default_rng(4).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    y = c.encrypt(x)
    c2 = pickle.loads(pickle.dumps(c))
    assert np.array_equal(c2.encrypt(x), y)


def test_bad_inputs_are_clear_errors():
    key = Key.from_bytes(bytes(32))
    with pytest.raises(PatchcryptError, match="multiple of the block size"):
        create_cipher("etc", key, block_size=16).encrypt(np.zeros((30, 32, 3), np.uint8))
    with pytest.raises(PatchcryptError, match="3 channel"):
        create_cipher("etc", key, block_size=4).encrypt(np.zeros((8, 8, 1), np.uint8))
    with pytest.raises(PatchcryptError, match="block size 8"):
        create_cipher("etc-gray", key, block_size=16)
    with pytest.raises(PatchcryptError, match="uint8"):
        create_cipher("etc", key, block_size=4).encrypt(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(PatchcryptError, match="unknown scheme"):
        create_cipher("rot13", key, block_size=4)
    with pytest.raises(PatchcryptError, match="needs a key"):
        create_cipher("etc", None, block_size=4)
