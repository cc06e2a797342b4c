"""The chosen-plaintext and model-weight attacks run through the registry, and per-image keys stop them."""

from __future__ import annotations

import numpy as np

from patchcrypt.attacks import run_all


def _images(n: int = 4) -> np.ndarray:
    from skimage import data
    photo = data.astronaut()[:256, :256]
    return np.stack([photo[i * 40:i * 40 + 32, i * 50:i * 50 + 32] for i in range(n)]).astype(np.uint8)


def _rows(scheme: str, per_image: bool = False) -> dict:
    out = run_all(scheme, 4, _images(), names=["cpa", "weights"], per_image=per_image)
    return {r["attack"]: r for r in out["attacks"]}


def test_cpa_and_weights_recover_block_pixel_key():
    rows = _rows("block-pixel")
    assert rows["cpa"]["applies"] and rows["cpa"]["metrics"]["key_map_fraction"] == 1.0
    assert rows["cpa"]["metrics"]["queries"] == 2          # one crafted image, one random image to check the map
    assert rows["weights"]["applies"] and rows["weights"]["metrics"]["key_map_fraction"] == 1.0
    assert rows["weights"]["metrics"]["exact_images"] == 1.0


def test_per_image_keys_stop_cpa_and_have_no_keyed_model():
    rows = _rows("etc", per_image=True)
    assert rows["cpa"]["applies"] and rows["cpa"]["metrics"]["exact_images_global"] == 0.0
    assert rows["cpa"]["metrics"]["key_map_fraction"] is None
    assert not rows["weights"]["applies"] and "per-image" in rows["weights"]["reason"]


def test_weights_attack_not_applicable_to_nibble_schemes():
    rows = _rows("le")
    assert not rows["weights"]["applies"]
    assert rows["cpa"]["applies"] and rows["cpa"]["metrics"]["key_map_fraction"] == 1.0


def test_many_image_attack_registered_with_its_threat_model():
    from patchcrypt.attacks import get_attack, run_all

    assert get_attack("many").threat.value == "ciphertext-only, many images"
    out = run_all("plain", 4, _images(), names=["many"], train_images=_images(3))
    assert not out["attacks"][0]["applies"] and "no key" in out["attacks"][0]["reason"]
    out = run_all("ele", 4, _images(), names=["many"], train_images=_images(3))
    assert out["attacks"][0]["applies"] and out["attacks"][0]["metrics"]["method"] == "nibble-blocks"
