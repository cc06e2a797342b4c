"""The hierarchical jigsaw (attacks/hierarchical.py) on the nested schemes, and the attacks around it."""

import numpy as np
import pytest

from patchcrypt import Key
from patchcrypt.attacks import get_attack, run_attack
from patchcrypt.attacks.hierarchical import level_states, why_not_hierarchical
from patchcrypt.attacks.target import make_target

KEY = Key.from_bytes(bytes(range(32)))


def _smooth(size: int = 64) -> np.ndarray:
    """One smooth colour image whose every 4-pixel edge continues into its neighbour (a solvable puzzle)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([128 + 100 * np.sin(3 * xx + 2 * yy), 128 + 100 * np.cos(4 * yy - xx),
                    128 + 90 * np.sin(5 * xx * yy + 1)], -1)
    return np.clip(img, 0, 255).astype(np.uint8)[None]


def _why(attack, scheme, per_image=True, m=16):
    return get_attack(attack).why_not(make_target(scheme, m, key=KEY, per_image=per_image))


def test_which_jigsaw_applies():
    assert _why("hjigsaw", "etc-nested") is None and _why("hjigsaw", "patch-shuffle-mix") is None
    assert "SBS" in _why("jigsaw", "etc-nested")              # patch edges carry no match
    assert _why("jigsaw", "patch-shuffle") is None
    assert "ordinary jigsaw" in _why("hjigsaw", "patch-shuffle") and "ordinary jigsaw" in _why("hjigsaw", "etc")
    assert "declares no steps" in why_not_hierarchical(None)
    assert "XOR" in why_not_hierarchical({"BS", "SBS", "XOR"})
    assert level_states({"BS", "SBS", "SRF", "SNP", "SCS"}) == (frozenset({"RF", "NP", "CS"}),
                                                                frozenset({"BS", "RF", "NP", "CS"}))


@pytest.mark.parametrize("scheme", ["etc-nested", "patch-shuffle-mix"])
def test_solves_a_smooth_image_under_its_own_key(scheme):
    """Where edges continue, both levels are solved: the image comes back up to its global state."""
    x = _smooth()
    res = run_attack("hjigsaw", scheme, 16, x, key=KEY, per_image=True)
    m = res.metrics()
    assert m["ssim_global"] > 0.95, m
    assert res.extra["sub_block"] == 4 and res.extra["states"] == (96 if scheme == "etc-nested" else 1)
    # the ciphertext itself is far from it: the attack did the work
    assert m["baselines"]["ciphertext"] < 0.6



def test_one_sub_block_per_patch_is_the_ordinary_puzzle():
    """m = M: no sub-block level; the patches are solved as EtC pieces."""
    x = _smooth(32)
    m = run_attack("hjigsaw", "etc-nested", 4, x, key=KEY, per_image=True).metrics()
    assert m["n_images"] == 1 and 0.0 <= m["ssim_global"] <= 1.0
