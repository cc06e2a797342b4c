"""Attacks from the black box: block-local schemes that declare nothing fall to chosen images and known pairs;
schemes of another kind are refused with what probing found."""

from pathlib import Path

import numpy as np
import pytest

from patchcrypt import Key
from patchcrypt.attacks import load_user_scheme, run_all, run_attack
from patchcrypt.attacks.blackbox import (complete_tables, known_plaintext_model, partition_labels, probe_value_model,
                                         seen_tables)
from patchcrypt.errors import PatchcryptError

EXAMPLES = str(Path(__file__).resolve().parents[2] / "examples" / "value_schemes.py")
CLASSES = ["XorBlocks", "XorBlocksRot", "XorImage", "AddShuffle", "AddBlocksRot", "SubstBlocksRot", "SubstImage"]
KEY = Key.from_bytes(bytes(range(32)))


def smooth_images(n: int, seed: int = 0, size: int = 32) -> np.ndarray:
    """Natural-ish images, uint8 (n, size, size, 3): random 6x6 colour fields, bicubic-upsampled, plus mild noise."""
    from scipy.ndimage import zoom

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, 6, 6, 3)).astype(np.float64)
    fine = zoom(coarse, (1, size / 6, size / 6, 1), order=3)[:, :size, :size]
    return np.clip(fine + rng.normal(0, 3, fine.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def images():
    return smooth_images(100)


class MixNeighbours:
    """Not block-local: every output value is its value plus the next one, mod 256."""

    block_size = 4

    def __init__(self, key, block_size):
        pass

    def encrypt(self, x):
        f = x.reshape(len(x), -1).astype(np.int64)
        return ((f + np.roll(f, -1, axis=1)) % 256).astype(np.uint8).reshape(x.shape)


class MaskPerCall(MixNeighbours):
    """A fresh random mask at every call (declared, so the harness accepts it)."""

    per_image = True

    def encrypt(self, x):
        return x ^ np.random.default_rng().integers(0, 256, x.shape[1:], dtype=np.uint8)


@pytest.mark.parametrize("name", CLASSES)
def test_cpa_decrypts_every_example_exactly_from_the_black_box(images, name):
    res = run_attack("cpa", f"{EXAMPLES}:{name}", 4, images[:3], key=KEY)
    m = res.metrics()
    assert m["exact_images"] == 1.0 and m["plan"] == "black-box" and m["verified"]
    assert m["queries"] <= 260           # 256 constant + 2 position-coded + 2 random probe images


@pytest.mark.parametrize("name", CLASSES)
def test_kpa_learns_every_example_from_pairs(images, name):
    res = run_attack("kpa", f"{EXAMPLES}:{name}", 4, images[96:], train_images=images[:96], key=KEY, pairs=96)
    m = res.metrics()
    assert m["solver"] == "black-box" and m["pairs_needed"] is not None and m["pairs_needed"] <= 96
    assert m["determined_fraction"] >= 0.99 and m["exact_images"] >= 0.99


def test_too_few_pairs_still_decrypt_and_say_so(images):
    res = run_attack("kpa", f"{EXAMPLES}:XorBlocks", 4, images[96:], train_images=images[:4], key=KEY, pairs=4)
    m = res.metrics()
    assert m["pairs_needed"] is None and m["determined_fraction"] < 0.99
    assert set(m["unique_by_pairs"]) == {"1", "2", "4"} and m["ssim"] > 0.0


def test_declared_facts_only_make_it_faster(images):
    """A class declaring steps it does not have: the declared plan's map fails its check, the black box wins."""
    wrong = type("Misdeclared", (load_user_scheme(f"{EXAMPLES}:XorBlocks"),), {"steps": ("BS", "BF")})
    m = run_attack("cpa", wrong, 4, images[:3], key=KEY).metrics()
    assert m["exact_images"] == 1.0 and m["plan"] == "black-box" and m["queries"] <= 262
    k = run_attack("kpa", wrong, 4, images[96:], train_images=images[:96], key=KEY, pairs=96).metrics()
    assert k["solver"] == "black-box" and k["exact_images"] == 1.0


def test_values_mixed_across_positions_are_refused_with_the_reason(images):
    with pytest.raises(PatchcryptError, match="probing: changing one input value changed 2 output values"):
        run_attack("cpa", MixNeighbours, 4, images[:3])
    with pytest.raises(PatchcryptError, match=r"pairs: .*\(values mix across positions"):
        run_attack("kpa", MixNeighbours, 4, images[96:], train_images=images[:64], pairs=64)
    rows = {r["attack"]: r for r in run_all(MixNeighbours, 4, images[:3], images[3:40], names=["cpa", "kpa"],
                                           pairs=32)["attacks"]}
    assert not rows["cpa"]["applies"] and "values mix across positions" in rows["cpa"]["reason"]
    assert not rows["kpa"]["applies"] and rows["kpa"]["reason"].startswith("pairs:")


def test_a_key_per_call_is_refused_with_the_reason(images):
    rows = {r["attack"]: r for r in run_all(MaskPerCall, 4, images[:3], images[3:8], names=["cpa", "kpa"])["attacks"]}
    assert not rows["cpa"]["applies"] and "randomised per call" in rows["cpa"]["reason"]
    assert not rows["kpa"]["applies"] and "per-image" in rows["kpa"]["reason"]


@pytest.mark.parametrize("scheme", ["block-pixel", "etc"])
def test_registered_schemes_keep_their_fast_plans(images, scheme):
    m = run_attack("cpa", scheme, 4, images[:3], key=KEY).metrics()
    assert m["queries"] <= 2 and m["plan"] != "black-box" and m["verified"] and m["exact_images"] == 1.0


def test_the_model_reproduces_the_oracle_and_names_its_value_maps():
    cls = load_user_scheme(f"{EXAMPLES}:AddBlocksRot")
    scheme = cls(bytes(range(32)), 4)
    model, queries = probe_value_model(scheme.encrypt, (16, 16, 3), probes=2)
    x = smooth_images(3, seed=1, size=16)
    assert queries == 256 + 2 + 2          # D = 768: two base-256 digits
    assert np.array_equal(model.encrypt(x.reshape(3, -1)), scheme.encrypt(x).reshape(3, -1))
    kinds = model.value_maps()
    assert kinds["add"] + kinds["identity"] == 1.0 and model.to_map() is None


def test_partitions_ignore_value_bijections_and_tables_follow_the_majority_family():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 8, (40, 50), dtype=np.uint8)
    sub = rng.permutation(256).astype(np.uint8)
    assert np.array_equal(partition_labels(x), partition_labels(sub[x]))
    mask = rng.integers(0, 256, 50, dtype=np.uint8)
    g = rng.permutation(50)
    y = x[:, g] ^ mask
    fit = known_plaintext_model(x, y)
    table, seen = seen_tables(x, y, fit.model.g)
    full, inverse, filled = complete_tables(table, seen)
    assert filled["xor"] == 1.0 and np.array_equal(full, np.arange(256, dtype=np.uint8) ^ mask[:, None])
