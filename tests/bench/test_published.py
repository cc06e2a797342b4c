"""AprilPyone & Kiya's block-wise transformations (ciphers/published.py): registered, exact, block-local and
shared by every block, as the paper defines them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patchcrypt.ciphers import create_cipher, get_scheme, list_ciphers
from patchcrypt.keys import Key

KEY = Key.from_bytes(bytes(range(32)))
NAMES = ["ak-shuffle", "ak-flip", "ak-ffx"]


def images(n=3, h=16, w=24):
    return np.random.default_rng(0).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", NAMES)
def test_registered_with_the_paper_as_origin(name):
    assert name in list_ciphers() and "AprilPyone" in get_scheme(name).origin


@pytest.mark.parametrize("name", NAMES)
def test_exact_on_numpy_and_torch_with_one_key_and_per_image(name):
    x = images()
    c = create_cipher(name, KEY, block_size=4)
    y = c.encrypt(x)
    assert (c.decrypt(y) == x).all() and (y != x).any()
    yt = c.encrypt(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
    assert (yt.permute(0, 2, 3, 1).numpy() == y).all()
    p = create_cipher(name, KEY, block_size=4, per_image=True)
    nonces = p.new_nonces(len(x))
    assert (p.decrypt(p.encrypt(x, nonces), nonces) == x).all()


@pytest.mark.parametrize("name", NAMES)
def test_every_block_is_transformed_alike_and_blocks_stay_in_place(name):
    """No block scrambling; one key for every block: equal plain blocks give equal cipher blocks in place."""
    block = images(1, 4, 4)[0]
    x = np.tile(block, (4, 6, 1))[None]
    y = create_cipher(name, KEY, block_size=4).encrypt(x)[0]
    first = y[:4, :4]
    assert all((y[i:i + 4, j:j + 4] == first).all() for i in range(0, 16, 4) for j in range(0, 24, 4))


def test_ffx_substitutes_values_at_a_subset_of_positions_only():
    c = create_cipher("ak-ffx", KEY, block_size=4)
    x = np.zeros((1, 4, 4, 3), np.uint8)
    changed = np.zeros((4, 4, 3), bool)
    for v in range(256):
        changed |= c.encrypt(x + np.uint8(v))[0] != v
    assert 0 < changed.sum() < changed.size           # some positions pass through unchanged
    col = np.stack([c.encrypt(x + np.uint8(v))[0][changed][0] for v in range(256)])
    assert sorted(col.tolist()) == list(range(256))   # a permutation of the byte values


def test_ffx_key_map_holds_only_the_moves_none():
    """The attacks' scoring asks every registered scheme for its key map; FFX has no moves to show."""
    m = create_cipher("ak-ffx", KEY, block_size=4).key_map((8, 8, 3))
    assert (m.g == np.arange(8 * 8 * 3)).all() and not m.m.any()


def test_chosen_images_read_ffx_from_the_black_box():
    """No declared step models a substitution: the chosen-plaintext attack reads it from ~260 queries."""
    from patchcrypt.attacks import run_attack

    m = run_attack("cpa", "ak-ffx", 4, images(2, 16, 16), key=KEY).metrics()
    assert m["exact_images"] == 1.0 and m["queries"] > 256
