"""How a scheme reaches its steps and its keyed part (issue 31): an explicit list of the steps that take
``shared``, and one method for the keyed map that etc-gray's colour conversion wraps."""

import inspect

import numpy as np
import pytest

from patchcrypt.ciphers import base, create_cipher, program, steps
from patchcrypt.ciphers.etc_gray import to_composite
from patchcrypt.keys import Key

KEY = Key.from_bytes(bytes(range(32)))


def test_shareable_steps_are_the_functions_with_a_shared_argument():
    takes = {s for s, fn in steps.STEP_FUNCTIONS.items() if "shared" in inspect.signature(fn).parameters}
    assert steps.SHAREABLE_STEPS == takes == {"RF", "CS", "PS", "LE"}


@pytest.mark.parametrize("symbol", ["BS", "NP", "BF", "NPV"])
def test_shared_means_nothing_to_steps_with_one_form(symbol):
    geo = steps.Geometry(12, 4, 3)
    a = steps.step_map(symbol, KEY.stream(["t", symbol]), geo, shared=False)
    b = steps.step_map(symbol, KEY.stream(["t", symbol]), geo, shared=True)
    for x, y in ((a.src, b.src), (a.local, b.local), (a.mask, b.mask)):
        assert (x is None and y is None) or np.array_equal(x, y)


def test_a_local_variable_named_shared_is_not_an_argument(monkeypatch):
    """The dispatch reads the list, not a function's local names (a local ``shared`` once meant a call with
    ``shared=`` and a TypeError)."""
    original = steps.STEP_FUNCTIONS["BS"]

    def block_scramble(stream, geo):
        shared = False  # noqa: F841 - a local, not a parameter
        return original(stream, geo)

    x = np.random.default_rng(0).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    want = create_cipher("etc", KEY, block_size=4).encrypt(x)
    monkeypatch.setitem(steps.STEP_FUNCTIONS, "BS", block_scramble)
    assert np.array_equal(create_cipher("etc", KEY, block_size=4).encrypt(x), want)


def test_etc_gray_per_image_keys_on_large_images(monkeypatch):
    """Per-image keys on images above the band size are applied one image at a time through the keyed part
    alone (it once re-entered etc-gray's colour conversion with the 1-channel composite, and refused)."""
    x = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    nonces = [bytes([i]) * 16 for i in range(2)]
    small = create_cipher("etc-gray", KEY, block_size=8, per_image=True).encrypt(x, nonces)
    monkeypatch.setattr(base, "_BAND", 500)
    monkeypatch.setattr(program, "_BAND", 500)
    cipher = create_cipher("etc-gray", KEY, block_size=8, per_image=True)
    y = cipher.encrypt(x, nonces)
    assert np.array_equal(y, small)
    comp = to_composite(x)
    assert np.array_equal(cipher.decrypt_components(y, nonces), comp)
    assert np.array_equal(cipher.encrypt_components(comp, nonces), y)
    assert cipher.decrypt(y, nonces).shape == x.shape


def test_components_are_the_keyed_part_of_encrypt():
    x = np.random.default_rng(2).integers(0, 256, (2, 32, 48, 3), dtype=np.uint8)
    cipher = create_cipher("etc-gray", KEY, block_size=8)
    y = cipher.encrypt(x)
    assert np.array_equal(cipher.encrypt_components(to_composite(x)), y)
    assert np.array_equal(cipher.decrypt_components(y), to_composite(x))
