"""Key recovery from keyed-model weights: exact with the plain weights, structure-only without them."""

import copy

import numpy as np
import pytest

from patchcrypt import Key
from patchcrypt.attacks.keymaps import dihedral_colour_states, grid_symmetries
from patchcrypt.attacks.weights import (grid_from_pos_embed, inblock_from_embedding, relative_states,
                                        run_weights_attack)
from patchcrypt.data import sample_photos
from patchcrypt.errors import PatchcryptError
from patchcrypt.models import create_model
from patchcrypt.models.keyed import block_maps, key_model

KEY = Key.from_bytes(bytes(range(32)))


@pytest.fixture(scope="module")
def photos():
    return sample_photos(32)[:3]


@pytest.fixture(scope="module")
def plain():
    return create_model("vit_pico_patch4_32", seed=0)


@pytest.mark.parametrize("scheme", ["block-pixel", "etc", "block-pixel-cs", "pe"])
def test_plain_weights_give_the_exact_key(photos, plain, scheme):
    """Attack (a) on random-init weights (no training needed): every tensor match is exact."""
    res = run_weights_attack(scheme, 4, photos, key=KEY, plain_model=plain)
    m = res.metrics()
    assert m["key_map_fraction"] == 1.0 and m["exact_images"] == 1.0 and m["ssim"] == pytest.approx(1.0)


def test_position_wise_model_gives_every_block_relative_to_one(photos, plain):
    """Attack (b) on etc: per-position embeddings are one matrix under 96 states; exact up to one state."""
    keyed = copy.deepcopy(plain)
    key_model(keyed, KEY, "etc", 4)
    g_rel, s_rel, worst = relative_states(keyed)
    assert worst == pytest.approx(1.0)
    true = block_maps("etc", KEY, 4, 32)
    gathers, signs = dihedral_colour_states(4, 3)
    ref = next(i for i, (q, s) in enumerate(zip(gathers, signs))
               if np.array_equal(q, true.g[0]) and np.array_equal(s, true.s[0]))
    assert np.array_equal(gathers[ref][g_rel], true.g)
    assert np.array_equal(s_rel * signs[ref][g_rel], true.s)
    res = run_weights_attack("etc", 4, photos, key=KEY, keyed_model=keyed, with_plain=False)
    assert res.extra["inblock_fraction_up_to_global"] == 1.0


def _smooth(shape, dim, freq, rng):
    """(cells, dim) random low-frequency cosines over a grid: a stand-in for trained smoothness."""
    cells = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, len(shape))
    k = rng.normal(size=(dim, len(shape))) * freq
    return np.cos(cells @ k.T + rng.uniform(0, 2 * np.pi, dim))


def test_smooth_position_embedding_gives_the_block_order_up_to_grid_symmetry():
    rng = np.random.default_rng(0)
    pos = _smooth((8, 8), 64, 0.5, rng) + 0.05 * rng.normal(size=(64, 64))
    sigma = rng.permutation(64)
    cell_of = grid_from_pos_embed(pos[sigma], 8, 8, restarts=2)   # keyed row k = plain row σ(k)
    assert max((h[cell_of] == sigma).mean() for h in grid_symmetries(8, 8)) == 1.0


def test_smooth_embedding_gives_the_pixel_shuffle_up_to_block_symmetry():
    rng = np.random.default_rng(1)
    spatial = _smooth((4, 4), 64, 0.8, rng)                        # (16 pixels, D)
    colour = np.abs(rng.normal(size=(64, 3))) + 0.5
    w0 = (spatial.T[:, :, None] * colour[:, None, :]).reshape(64, 48) + 0.02 * rng.normal(size=(64, 48))
    g, s = rng.permutation(48), rng.choice([-1.0, 1.0], 48)
    g_hat, s_hat = inblock_from_embedding(w0[:, g] * s, 4, 3, restarts=2)
    gathers, signs = dihedral_colour_states(4, 3)
    assert max(np.mean((q[g_hat] == g) & (s_hat * qs[g_hat] == s)) for q, qs in zip(gathers, signs)) == 1.0


def test_weights_attack_refusals(photos):
    with pytest.raises(PatchcryptError, match="per-image"):
        run_weights_attack("etc", 4, photos, key=KEY, per_image=True)
    with pytest.raises(PatchcryptError, match="does not apply"):
        run_weights_attack("le", 4, photos, key=KEY)
