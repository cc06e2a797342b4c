"""patch-shuffle, patch-shuffle-mix and etc-nested (ciphers/nested.py): definitions, exact decryption, per-image."""

import hashlib

import numpy as np
import pytest
import torch

from patchcrypt import Key
from patchcrypt.blocks import merge_blocks, split_blocks
from patchcrypt.ciphers import create_cipher, get_scheme, list_ciphers
from patchcrypt.ciphers.nested import NESTED_STEPS, NestedCipher, sub_positions
from patchcrypt.ciphers.steps import COLOUR_ORDERS
from patchcrypt.errors import PatchcryptError

KEY = Key.from_bytes(bytes(range(32)))
NESTED = ["patch-shuffle", "patch-shuffle-mix", "etc-nested"]


def _images(n=3, h=32, w=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_registered_and_listed():
    assert set(NESTED) <= set(list_ciphers())
    assert get_scheme("patch-shuffle").symbols == {"BS"}
    assert get_scheme("etc-nested").symbols == {"BS"} | NESTED_STEPS
    assert get_scheme("etc-nested").channels == (3,)


@pytest.mark.parametrize("name", NESTED)
@pytest.mark.parametrize("m", [4, 8, 16])
def test_per_image_roundtrip_exact_numpy_and_torch(name, m):
    c = create_cipher(name, KEY, block_size=m, per_image=True)
    x = _images(h=32, w=48)
    nonces = c.new_nonces(len(x))
    y = c.encrypt(x, nonces)
    assert not np.array_equal(y, x) and np.array_equal(c.decrypt(y, nonces), x)
    alone = np.concatenate([c.encrypt(x[i:i + 1], [nonces[i]]) for i in range(len(x))])
    assert np.array_equal(y, alone)                                  # the batched gather is each image's own
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    yt = c.encrypt(xt, nonces)
    assert np.array_equal(yt.permute(0, 2, 3, 1).numpy(), y)
    assert torch.equal(c.decrypt(yt, nonces), xt)
    other = c.encrypt(x, c.new_nonces(len(x)))
    assert not np.array_equal(other, y)                              # every image its own key


def _reference(c: NestedCipher, x: np.ndarray, nonce: bytes) -> np.ndarray:
    """etc-nested by its definition, one patch and one sub-block at a time (no compiled map)."""
    h, w, ch = x.shape
    shape, M, m = (h, w, ch), c.block_size, c.sub_block
    n, k = (h // M) * (w // M), M // m
    q = k * k
    src = c._draw("BS", shape, nonce).permutation(n)
    order = c._draw("SBS", shape, nonce).permutations(n, q)
    sym = c.spec.symbols
    rf = c._draw("SRF", shape, nonce).integers(8, n * q).reshape(n, q) if "SRF" in sym else np.zeros((n, q), int)
    neg = c._draw("SNP", shape, nonce).bits(n * q).reshape(n, q) if "SNP" in sym else np.zeros((n, q), bool)
    cs = c._draw("SCS", shape, nonce).integers(6, n * q).reshape(n, q) if "SCS" in sym else np.zeros((n, q), int)
    patches = split_blocks(x[None], M)[0]
    out = np.empty_like(patches)
    for b in range(n):
        moved = patches[src[b]]
        for j in range(q):
            a = order[b, j]
            sub = moved[(a // k) * m:(a // k + 1) * m, (a % k) * m:(a % k + 1) * m]
            s = rf[b, j]
            sub = np.rot90(sub, s % 4)
            if s >= 4:
                sub = sub[:, ::-1]
            if neg[b, j]:
                sub = 255 - sub
            sub = sub[..., list(COLOUR_ORDERS[cs[b, j]])]
            out[b, (j // k) * m:(j // k + 1) * m, (j % k) * m:(j % k + 1) * m] = sub
    return merge_blocks(out[None], h, w)[0]


@pytest.mark.parametrize("name", ["patch-shuffle-mix", "etc-nested"])
@pytest.mark.parametrize("m,sub", [(8, 4), (16, 4), (8, 2), (4, 4)])
def test_compiled_map_equals_the_definition(name, m, sub):
    c = create_cipher(name, KEY, block_size=m, per_image=True, sub_block=sub)
    x = _images(2, 32, 48, seed=m + sub)
    nonces = c.new_nonces(2)
    y = c.encrypt(x, nonces)
    for i in range(2):
        assert np.array_equal(y[i], _reference(c, x[i], nonces[i])), (name, m, sub)


def test_patch_shuffle_moves_whole_patches_only():
    c = create_cipher("patch-shuffle", KEY, block_size=8, per_image=True)
    x = _images(1, 32, 32)
    y = c.encrypt(x, c.new_nonces(1))
    px, py = split_blocks(x, 8)[0], split_blocks(y, 8)[0]
    assert sorted(map(bytes, px)) == sorted(map(bytes, py))
    # its own key label: never the same order as step-bs under the same key
    bs = create_cipher("step-bs", KEY, block_size=8).encrypt(x)
    assert not np.array_equal(create_cipher("patch-shuffle", KEY, block_size=8).encrypt(x), bs)


def test_sub_blocks_stay_inside_their_patch():
    """Every output patch of etc-nested holds the sub-blocks of one input patch (in some state)."""
    c = create_cipher("etc-nested", KEY, block_size=16, per_image=True)
    x = _images(1, 32, 32)
    y = c.encrypt(x, c.new_nonces(1))[0]
    for out_patch in split_blocks(y[None], 16)[0]:
        sums = sorted(int(s.astype(np.int64).sum()) for s in split_blocks(out_patch[None], 4)[0])
        found = False
        for in_patch in split_blocks(x, 16)[0]:
            subs = split_blocks(in_patch[None], 4)[0].astype(np.int64)
            cand = [sorted(int(v) for v in pair) for pair in zip(subs.sum((1, 2, 3)), (255 - subs).sum((1, 2, 3)))]
            found |= all(any(s in pair for pair in cand) for s in sums)
        assert found


def test_sub_block_positions_are_row_major_inside_the_patch():
    assert sub_positions(4, 2, 1).tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]


def test_sub_block_option_and_errors():
    c = create_cipher("etc-nested", KEY, block_size=8, sub_block=2)
    assert c.sub_block == 2 and c.describe()["sub_block"] == 2 and "key" not in c.describe()
    assert create_cipher("etc-nested", KEY, block_size=16).sub_block == 4
    assert create_cipher("etc-nested", KEY, block_size=2).sub_block == 2
    with pytest.raises(PatchcryptError, match="divisor"):
        create_cipher("etc-nested", KEY, block_size=16, sub_block=3)
    with pytest.raises(PatchcryptError, match="3 channel"):
        create_cipher("etc-nested", KEY, block_size=8).encrypt(np.zeros((1, 16, 16, 1), np.uint8))
    # another m is another key: the label names it
    x = _images(1, 16, 16)
    assert not np.array_equal(create_cipher("etc-nested", KEY, block_size=8, sub_block=2).encrypt(x),
                              create_cipher("etc-nested", KEY, block_size=8, sub_block=4).encrypt(x))


def test_key_space_counts_every_level():
    c = create_cipher("etc-nested", KEY, block_size=16)
    # 224 x 224: 196! patch orders, 16! sub-block orders per patch, 96 states per sub-block
    from math import lgamma, log, log10
    want = (lgamma(197) + 196 * lgamma(17)) / log(10) + 196 * 16 * log10(96)
    assert c.transformations_log10(224, 224) == pytest.approx(want)
    assert c.key_space_log10(224, 224) == pytest.approx(256 * log10(2))


def test_golden_bytes():
    """A user's per-image ciphertexts must decrypt forever: the bytes for a fixed key, image and nonce."""
    x = np.arange(32 * 32 * 3, dtype=np.int64).reshape(1, 32, 32, 3).astype(np.uint8)
    got = {}
    for name in NESTED:
        c = create_cipher(name, KEY, block_size=16, per_image=True)
        got[name] = hashlib.sha256(c.encrypt(x, [bytes(16)]).tobytes()).hexdigest()[:16]
    assert got == GOLDEN


GOLDEN = {"patch-shuffle": "12adc9dff8068880", "patch-shuffle-mix": "f1e447b8fd3aad72",
          "etc-nested": "200bc3b2a3edb85e"}
