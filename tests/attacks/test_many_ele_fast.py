"""ele's per-position stage with the one-product FAQ gives the maps SciPy's FAQ gives."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from patchcrypt import Key
from patchcrypt.attacks.many import ele, inblock
from patchcrypt.attacks.many.inblock import correlation, faq_symmetric
from patchcrypt.ciphers import create_cipher


def scipy_faq(a, b, rng=None):
    from scipy.optimize import quadratic_assignment

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = quadratic_assignment(a, b, method="faq", options=dict(
            maximize=True, rng=rng, P0="barycenter" if rng is None else "randomized"))
    return np.asarray(res.col_ind, dtype=np.int64)


def smooth_images(n: int, size: int, seed: int) -> np.ndarray:
    """(n, size, size, 3) uint8: coarse random fields upsampled and blurred, plus a little noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(n, size // 4 + 1, size // 4 + 1, 3))
    x = np.linspace(0, size // 4, size)
    i = np.floor(x).astype(int).clip(0, size // 4 - 1)
    f = (x - i)[None, :, None, None]
    rows = coarse[:, i] * (1 - f) + coarse[:, i + 1] * f
    f = f.transpose(0, 2, 1, 3)
    img = rows[:, :, i] * (1 - f) + rows[:, :, i + 1] * f
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("n", [12, 48])
def test_faq_is_scipys_faq_from_every_start(n):
    rng = np.random.default_rng(n)
    for _ in range(3):
        a = correlation(rng.normal(size=(300, n)) @ rng.normal(size=(n, n)))
        perm = rng.permutation(n)
        b = a[np.ix_(perm, perm)] + 0.05 * correlation(rng.normal(size=(300, n)))
        a, b = a - a.mean(), (b + b.T) / 2 - b.mean()
        assert np.array_equal(faq_symmetric(a, b), scipy_faq(a, b))
        for seed in rng.integers(2**31, size=3):
            seed = int(seed)
            assert np.array_equal(faq_symmetric(a, b, np.random.default_rng(seed)),
                                  scipy_faq(a, b, np.random.default_rng(seed)))


def test_per_position_maps_are_the_reference_maps(monkeypatch):
    victims, public = smooth_images(40, 16, 1), smooth_images(60, 16, 2)
    y = create_cipher("ele", Key.from_bytes(bytes(range(32))), block_size=4).encrypt(victims)
    cp_u, cp_l = ele.half_correlations(public, 4)
    fast = ele.per_position_map(y, cp_u, cp_l, 4, upper_starts=4, lower_starts=2)
    monkeypatch.setattr(inblock, "faq_symmetric", scipy_faq)
    reference = ele.per_position_map(y, cp_u, cp_l, 4, upper_starts=4, lower_starts=2)
    assert np.array_equal(fast.g, reference.g) and np.array_equal(fast.m, reference.m)
