"""etc-gray: numpy and torch give identical ciphertexts; the colour conversion is exact JFIF arithmetic."""

from fractions import Fraction

import numpy as np
import pytest
import torch

from patchcrypt.ciphers import create_cipher
from patchcrypt.codec import RGB2YCC, YCC2RGB
from patchcrypt.data import sample_photos
from patchcrypt.keys import Key

KEY = Key.from_bytes(bytes(range(32)))


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("subsampling", ["420", "444"])
def test_numpy_and_torch_ciphertexts_identical(subsampling):
    c = create_cipher("etc-gray", KEY, block_size=8, subsampling=subsampling)
    rng = np.random.default_rng(0)
    for x in (rng.integers(0, 256, (2, 256, 256, 3), dtype=np.uint8), sample_photos(128)):
        yn = c.encrypt(x)
        yt = c.encrypt(_nchw(x))
        assert np.array_equal(yt.permute(0, 2, 3, 1).numpy(), yn)
        dn = c.decrypt(yn)
        assert np.array_equal(c.decrypt(_nchw(yn)).permute(0, 2, 3, 1).numpy(), dn)


def _round_half_even(q: Fraction) -> int:
    return min(255, max(0, round(q)))  # Python rounds a Fraction half to even


def test_colour_conversion_is_exact_jfif():
    """Every composite value is the JFIF formula evaluated exactly, then rounded half to even."""
    c = create_cipher("etc-gray", KEY, block_size=8, subsampling="444")
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    # include colours whose luma falls exactly on a .5 tie (299 R + 587 G + 114 B ≡ 500 mod 1000)
    ties = [(r, g, b) for r in range(0, 256, 7) for g in range(0, 256, 11) for b in range(256)
            if (299 * r + 587 * g + 114 * b) % 1000 == 500][:64]
    x[0, :4].reshape(-1, 3)[:len(ties)] = ties
    comp = c.to_composite(x, False)[0, :, :, 0]
    coef = [[Fraction(str(v)) for v in row] for row in RGB2YCC]
    for i in range(16):
        for j in range(16):
            rgb = [int(v) for v in x[0, i, j]]
            want = [_round_half_even(sum(coef[k][t] * rgb[t] for t in range(3)) + (128 if k else 0))
                    for k in range(3)]
            assert [int(comp[i, j]), int(comp[i, 16 + j]), int(comp[i, 32 + j])] == want, (rgb, want)
    # 4:2:0 chroma: the mean of the four 4:4:4 samples, rounded half to even
    c420 = create_cipher("etc-gray", KEY, block_size=8)
    comp420 = c420.to_composite(x, False)[0, :, :, 0]
    cb444 = comp[:, 16:32].astype(int)
    cb_want = [[round(Fraction(int(cb444[2 * i:2 * i + 2, 2 * j:2 * j + 2].sum()), 4)) for j in range(8)]
               for i in range(8)]
    assert comp420[:8, 16:].tolist() == cb_want
    # back: RGB from the composite is the inverse formula evaluated exactly
    back = c.from_composite(c.to_composite(x, False), False)[0]
    inv = [[Fraction(str(v)) for v in row] for row in YCC2RGB]
    i, j = 3, 5
    ycc = [int(comp[i, j]), int(comp[i, 16 + j]) - 128, int(comp[i, 32 + j]) - 128]
    assert back[i, j].tolist() == [_round_half_even(sum(inv[k][t] * ycc[t] for t in range(3))) for k in range(3)]


def test_rgb_round_trip_is_close_not_exact():
    """What the README says: etc-gray decrypts RGB up to the colour conversion, not bit for bit."""
    x = sample_photos(128)
    for subsampling, worst in (("444", 3), ("420", 255)):
        c = create_cipher("etc-gray", KEY, block_size=8, subsampling=subsampling)
        err = np.abs(c.decrypt(c.encrypt(x)).astype(int) - x)
        assert 0 < err.max() <= worst
