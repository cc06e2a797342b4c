"""The many-image attack on a substitution table shared by a key subset of the in-block coordinates, the others
unchanged (AprilPyone & Kiya's FFX per block, ``ak-ffx``): the value-map kind "groups".

Images: generated smooth colour fields at 32 px (no shared data sets): victims and public images from two
seeds of one generator.
"""

import numpy as np
import pytest

from patchcrypt import Key
from patchcrypt.attacks import run_attack
from patchcrypt.attacks.many import tables, valuemaps

KEY = Key.from_bytes(bytes(range(32)))


def smooth_images(n: int, seed: int, size: int = 32) -> np.ndarray:
    """(n, size, size, 3) uint8: low-frequency random fields, channels correlated, the full value range used."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = rng.normal(0, 1, (4, 4, 1)) + 0.4 * rng.normal(0, 1, (4, 4, 3)) + rng.normal(0, 0.6, (1, 1, 3))
        coarse = np.clip(128 + 60 * coarse, 0, 255).astype(np.uint8)
        out.append(np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC)))
    return np.stack(out)


class FfxLike:
    """Undeclared, ak-ffx's form: one substitution table at a key subset of the 4x4x3 in-block coordinates,
    the other coordinates unchanged, no moves."""

    name = "ffx-like"
    block_size = 4

    def __init__(self, key: bytes, block_size: int = 4):
        rng = np.random.default_rng(np.frombuffer(bytes(key)[:16], dtype=np.uint32))
        self.block_size = int(block_size)
        m = self.block_size
        self.mask = rng.random((m, m, 3)) < 0.5
        self.table = rng.permutation(256).astype(np.uint8)

    def _apply(self, images: np.ndarray, table: np.ndarray) -> np.ndarray:
        n, h, w, c = images.shape
        m = self.block_size
        mask = np.tile(self.mask, (h // m, w // m, 1))
        return np.where(mask[None], table[images], images)

    def encrypt(self, images: np.ndarray) -> np.ndarray:
        return self._apply(images, self.table)

    def decrypt(self, images: np.ndarray) -> np.ndarray:
        return self._apply(images, np.argsort(self.table).astype(np.uint8))


@pytest.fixture(scope="module")
def images():
    return smooth_images(300, 1), smooth_images(500, 2)


def test_coordinates_under_one_table_are_grouped(images):
    """Equal values keep their plain rate under one bijection and fall to chance across two maps: the
    clustering returns the key's subset exactly."""
    victims, _ = images
    scheme = FfxLike(bytes(range(32)))
    yb, _ = valuemaps.block_values(scheme.encrypt(victims), 4)
    groups = tables.map_groups(yb.transpose(1, 0, 2).reshape(-1, yb.shape[2]))
    truth = scheme.mask.reshape(-1)
    assert int(groups.max()) == 1
    assert np.array_equal(groups == groups[0], truth == truth[0])


def test_the_stage_reads_identity_and_the_shared_table(images):
    """The plain coordinates stay plain, the substituted ones are read against them: decryptions within a
    fraction of a level of the plain images (the kind "groups", not one table for every value)."""
    victims, public = images
    scheme = FfxLike(bytes(range(32)))
    y = scheme.encrypt(victims)
    found = valuemaps.recover_value_maps(y, public, 4)
    assert found.kind == "groups" and found.info["value_map_groups"] == 2
    err = np.abs(found.apply(y).astype(np.int64) - victims).mean()
    assert err < 0.5, err


@pytest.mark.parametrize("scheme", ["ak-ffx", FfxLike])
def test_ffx_designs_are_read_from_ciphertexts_alone(images, scheme):
    """The registered design (declared step "FFX", outside the vocabulary) and the same form undeclared:
    the many-image attack reads every image up to the global state (it read none before the kind
    "groups": one table for every value mixed the plain half into the seriation)."""
    victims, public = images
    m = run_attack("many", scheme, 4, victims, public, key=KEY).metrics()
    assert m["value_map_kind"] == "groups", m
    assert m["readable"] >= 0.9 and m["ssim_global"] > 0.95, m


def test_per_image_ffx_keys_are_not_claimed(images):
    """The control: a fresh ak-ffx key per image leaves nothing shared to pool; nothing is read."""
    victims, public = images
    m = run_attack("many", "ak-ffx", 4, victims[:100], public, per_image=True).metrics()
    assert m["readable"] == 0.0, m
