"""Chosen plaintext: crafted images reveal the whole key map; per-image keys are the control."""

import numpy as np
import pytest

from patchcrypt import Key
from patchcrypt.attacks import run_attack
from patchcrypt.attacks.cpa import chosen_plaintext_attack, cpa_plan
from patchcrypt.ciphers import create_cipher, get_scheme, list_ciphers
from patchcrypt.ciphers.nested import NESTED_STEPS
from patchcrypt.data import sample_photos
from patchcrypt.errors import PatchcryptError

KEY = Key.from_bytes(bytes(range(32)))
# ak-ffx substitutes values (outside the step vocabulary): the black-box CPA reads it (tests/bench/test_published.py)
SCHEMES = [s for s in list_ciphers(include_steps=True) if s not in ("plain", "etc-gray", "ak-ffx")]


@pytest.fixture(scope="module")
def photos32():
    return sample_photos(32)[:3]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_cpa_recovers_every_scheme_exactly(photos32, scheme):
    res = run_attack("cpa", scheme, 4, photos32, key=KEY)
    assert res.extra["key_map_fraction"] == 1.0 and res.metrics()["exact_images"] == 1.0
    # one crafted image for everything but the nibble scheme with a key per block, plus one random image that
    # checks the map the declared steps gave
    if get_scheme(scheme).symbols & NESTED_STEPS:   # sub-block steps declare no facts: the black-box CPA
        assert res.extra["queries"] == 260
        return
    assert res.extra["queries"] == (3 if scheme == "ele" else 1) + 1 and res.extra["verified"]


@pytest.mark.parametrize("scheme", ["etc", "block-pixel", "le", "ele", "pe"])
def test_cpa_fails_on_per_image_keys(photos32, scheme):
    m = run_attack("cpa", scheme, 4, photos32, key=KEY, per_image=True).metrics()
    assert m["exact_images_global"] == 0.0 and m["key_map_fraction"] is None and m["verified"] is False


def test_one_image_reveals_etc_at_the_papers_block_size():
    """M = 16: the pixel code names up to 256 blocks from one image (here 16)."""
    cipher = create_cipher("etc", KEY, block_size=16)
    calls = []

    def oracle(x):
        calls.append(len(x))
        return cipher.encrypt(x)

    rec, queries = chosen_plaintext_attack(oracle, "etc", 16, (64, 64, 3))
    assert queries == 1 and calls == [1]
    truth = cipher.key_map((64, 64, 3))
    assert np.array_equal(rec.g, truth.g) and np.array_equal(rec.m, truth.m)
    assert cpa_plan("block-pixel", 16, (224, 224, 3))["queries"] == 2
    assert cpa_plan("le", 16, (224, 224, 3))["queries"] == 1


def test_cpa_refuses_what_it_cannot_attack():
    with pytest.raises(PatchcryptError, match="does not apply"):
        chosen_plaintext_attack(lambda x: x, "etc-gray", 8, (32, 32, 1))
    with pytest.raises(PatchcryptError, match="oracle returned"):
        chosen_plaintext_attack(lambda x: x[:, :8], "block-pixel", 4, (32, 32, 3))
