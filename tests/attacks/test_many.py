"""Many-image ciphertext-only key recovery on small real images: exact keys under one key, failure per image.

Victims are CIFAR-10 test images when ../shared is present (public: CIFAR-10 training images), otherwise
32×32 crops of scikit-image photos split at random into victims and public images (disjoint crops).
"""

import os
from pathlib import Path

import numpy as np
import pytest

from patchcrypt import Key
from patchcrypt.attacks import run_attack
from patchcrypt.attacks.many import many_image_attack, method_for, score_key_map
from patchcrypt.attacks.scoring import GLOBAL_STATES, SCHEMA, apply_state
from patchcrypt.ciphers import create_cipher, get_scheme

CIFAR = (Path(os.environ.get("PATCHCRYPT_SHARED") or Path(__file__).resolve().parents[2].parent / "shared")
         / "datasets" / "cifar10-jpeg")
KEY = Key.from_bytes(bytes(range(32)))


def _photo_crops() -> np.ndarray:
    """Non-overlapping 32×32 crops of four scikit-image photos at five scales: (795, 32, 32, 3) uint8."""
    from PIL import Image
    from skimage import data

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        img = getattr(data, name)()
        h, w = img.shape[:2]
        for size in (96, 128, 160, 192, 256):
            s = size / min(h, w)
            im = np.asarray(Image.fromarray(img).resize((int(w * s), int(h * s)), Image.LANCZOS))
            for y in range(0, im.shape[0] - 31, 32):
                for x in range(0, im.shape[1] - 31, 32):
                    out.append(im[y:y + 32, x:x + 32])
    return np.stack(out)


def _cifar_train(count: int) -> np.ndarray:
    from PIL import Image

    files = []
    for d in sorted(p for p in (CIFAR / "train").iterdir() if p.is_dir()):
        files += sorted(d.glob("*.jpg"))[:count // 10]
    out = []
    for f in files:
        with Image.open(f) as im:
            out.append(np.asarray(im.convert("RGB")))
    return np.stack(out)


@pytest.fixture(scope="module")
def victims_and_public(request):
    """(victims (40–60, 32, 32, 3), public (≥ 500, 32, 32, 3)), disjoint."""
    if (CIFAR / "test").is_dir():
        victims = request.getfixturevalue("cifar_small")[0]
        return victims, _cifar_train(600)
    crops = _photo_crops()
    order = np.random.default_rng(0).permutation(len(crops))
    return crops[order[:60]], crops[order[60:]]


@pytest.mark.parametrize("scheme", ["block-pixel", "etc"])
def test_many_images_recover_the_key(victims_and_public, scheme):
    victims, public = victims_and_public
    result = run_attack("many", scheme, 4, victims, public, key=KEY)
    m = result.metrics()
    # every image exactly, up to at most the one global state; the true state among the first candidates
    assert m["exact_images_global"] == 1.0 and m["global_state_rank"] is not None and m["global_state_rank"] <= 4
    if m["global_state_rank"] == 1:
        assert m["exact_images"] == 1.0 and m["key_map_fraction"] == 1.0


def test_recovered_map_is_the_compiled_map(victims_and_public):
    victims, public = victims_and_public
    cipher = create_cipher("block-pixel", KEY, block_size=4)
    enc = cipher.encrypt(victims)
    res = many_image_attack(enc, public, "block-pixel", 4, victims.shape[1:])
    score = score_key_map(res, cipher, victims.shape[1:])
    true = cipher.key_map(victims.shape[1:])
    assert res.g.shape == true.g.shape and res.xor.dtype == true.m.dtype
    assert score["exact_key"] == (score["key_map_fraction"] == 1.0)
    if score["exact_key"]:
        assert np.array_equal(res.g, true.g) and np.array_equal(res.xor, true.m)


@pytest.mark.parametrize("scheme", ["block-pixel", "etc"])
def test_per_image_keys_defeat_it(victims_and_public, scheme):
    victims, public = victims_and_public
    m = run_attack("many", scheme, 4, victims, public, key=KEY, per_image=True).metrics()
    assert m["exact_images_global"] == 0.0 and m["ssim_global"] < 0.2
    assert m["key_map_fraction"] is None          # no one key map to score against


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "my_scheme.py"


@pytest.mark.slow
@pytest.mark.parametrize("cls", ["MyScheme", "MySchemeUndeclared"])
def test_a_user_scheme_falls_with_or_without_declared_steps(victims_and_public, cls):
    """BS + per-block RF + one shared pixel shuffle + one shared flip mask: one permutation and one mask for
    every image. Declared steps only make it faster; per-image keys (the control) defeat it."""
    victims, public = victims_and_public
    victims, public = np.concatenate([victims, public[:100]]), public[100:]    # 140-160 victims
    m = run_attack("many", f"{EXAMPLE}:{cls}", None, victims, public, key=KEY).metrics()
    assert m["exact_images_global"] == 1.0 and m["key_map_fraction"] is None
    assert m["facts"] == ("declared" if cls == "MyScheme" else "none (generic)")
    control = run_attack("many", f"{EXAMPLE}:{cls}", None, victims, public, per_image=True).metrics()
    assert control["exact_images_global"] == 0.0 and control["ssim_global"] < 0.3


def test_bad_input_is_one_line_error(victims_and_public):
    from patchcrypt.errors import PatchcryptError

    victims, public = victims_and_public
    with pytest.raises(PatchcryptError):
        many_image_attack(victims[:1], public, "block-pixel", 4, victims.shape[1:])
    with pytest.raises(PatchcryptError):
        many_image_attack(victims, public, "plain", 4, victims.shape[1:])


def test_methods_follow_scheme_facts():
    """The schemes the many-image attack handles come from their facts, and are the ones it always handled."""
    from dataclasses import replace

    from patchcrypt.attacks.many import method_for, supported
    from patchcrypt.ciphers import get_scheme

    assert set(supported()) == {"block-pixel", "block-pixel-cs", "etc", "etc-gray", "le", "pe", "step-bs", "step-rf",
                                "step-rf-shared", "step-np", "step-bf", "step-cs", "step-cs-shared", "step-ps",
                                "step-ps-perblock", "etc-bs-rf", "etc-bs-rf-np", "ele",
                                # the published designs made of the same steps (PS, BF; BS alone)
                                "ak-shuffle", "ak-flip", "patch-shuffle"}
    assert method_for(get_scheme("plain")) is None
    assert method_for(replace(get_scheme("etc-gray"), name="renamed")) == "composite"
    assert method_for(replace(get_scheme("pe"), name="renamed")) == "pixel"


# ele: block scrambling + a 4-bit map per block position. Per block position, the N images' halves give that
# position's upper-half map; a jigsaw puts the blocks in order.

@pytest.fixture(scope="module")
def crops():
    """(victims (200, 32, 32, 3), public (595, 32, 32, 3)) uint8, disjoint crops of scikit-image photos."""
    c = _photo_crops()
    order = np.random.default_rng(0).permutation(len(c))
    return c[order[:200]], c[order[200:]]


def upper_halves_right(plain: np.ndarray, candidates: np.ndarray) -> float:
    """Share of values whose upper 4-bit half is right, under the best of the 96 whole-image states."""
    return max(float(((apply_state(candidates, s) >> 4) == (plain >> 4)).mean()) for s in GLOBAL_STATES)


def test_ele_has_a_method_read_off_its_facts():
    assert method_for(get_scheme("ele")) == "nibble-blocks"
    assert method_for(get_scheme("le")) == "nibble"


def test_ele_upper_halves_fall_with_one_key_not_with_per_image_keys(crops):
    victims, public = crops
    one = run_attack("many", "ele", 4, victims, public, key=KEY)
    control = run_attack("many", "ele", 4, victims, public, key=KEY, per_image=True)
    m, c = one.metrics(), control.metrics()
    assert set(SCHEMA) <= set(m) and set(SCHEMA) <= set(c)          # the standard score schema
    assert m["method"] == "nibble-blocks" and c["key_map_fraction"] is None
    got, chance = upper_halves_right(victims, one.candidates), upper_halves_right(victims, control.candidates)
    assert got > 0.8 and chance < 0.2, (got, chance)     # measured: 0.94 and 0.09
    assert m["ssim_global"] > 0.5 and c["ssim_global"] < 0.1
    true = create_cipher("ele", KEY, block_size=4).key_map(victims.shape[1:])   # the compiled form, 4-bit halves
    assert one.key_map.g.shape == true.g.shape and one.key_map.m.dtype == true.m.dtype
    assert np.array_equal(np.sort(one.key_map.g), np.arange(true.g.size)) and int(one.key_map.m.max()) <= 15


def test_with_state_on_a_4bit_map_is_the_state_applied_to_its_decryptions(crops):
    """A recovered map over 4-bit halves turned by one global state decrypts to the turned decryptions."""
    from patchcrypt.attacks.many import ManyImageResult

    victims = crops[0][:8]
    cipher = create_cipher("ele", KEY, block_size=4)
    true = cipher.key_map(victims.shape[1:])
    res = ManyImageResult("ele", 4, victims.shape[1:], victims.shape[1:], "nibble", true.g, true.m)
    enc = cipher.encrypt(victims)
    assert np.array_equal(res.decrypt(enc), victims)
    for state in (GLOBAL_STATES[1], GLOBAL_STATES[-1]):
        assert np.array_equal(res.with_state(state).decrypt(enc), apply_state(victims, state))


# etc-gray: the luma is a jigsaw of its own; each 4:2:0 chroma block covers a 2x2 group of luma blocks, so
# the placed luma tells where each chroma block goes.

def test_etc_gray_chroma_placed_by_the_luma_beats_its_own_jigsaw_and_per_image_keys(crops):
    from patchcrypt.attacks.many.chroma import chroma_blocks_right
    from patchcrypt.attacks.many.composite import attack_gray

    victims, public = crops
    one = run_attack("many", "etc-gray", 8, victims, public, key=KEY)
    control = run_attack("many", "etc-gray", 8, victims, public, key=KEY, per_image=True)
    assert one.metrics()["chroma_method"] == "luma"
    cipher = create_cipher("etc-gray", KEY, block_size=8)
    enc = cipher.encrypt(victims)
    old = attack_gray(enc, public, "etc-gray", 8, victims.shape[1:], None, chroma="jigsaw")
    old.composite = True
    got = chroma_blocks_right(victims, one.candidates, 8)
    before = chroma_blocks_right(victims, old.decrypt(enc), 8)
    chance = chroma_blocks_right(victims, control.candidates, 8)
    assert got > 0.9 and before < 0.5 and chance < 0.2, (got, before, chance)
    assert one.metrics()["ssim_global"] > 0.95 > control.metrics()["ssim_global"] + 0.5


def test_chroma_blocks_right_is_blind_to_the_whole_image_state_only(crops):
    from patchcrypt.attacks.many.chroma import chroma_blocks_right

    victims = crops[0][:20]
    dec = create_cipher("etc-gray", KEY, block_size=8).decrypt(create_cipher("etc-gray", KEY, block_size=8)
                                                                  .encrypt(victims))
    assert chroma_blocks_right(victims, dec, 8) > 0.97                        # the RGB round trip: near 1
    turned = next(s for s in GLOBAL_STATES if s.dihedral == 5 and s.colour == 0 and s.invert)
    assert chroma_blocks_right(victims, apply_state(dec, turned), 8) > 0.97     # turned, mirrored and inverted
    swapped = dec.copy()
    swapped[:, :16], swapped[:, 16:] = dec[:, 16:], dec[:, :16]              # halves of every image swapped
    assert chroma_blocks_right(victims, swapped, 8) < 0.35                   # measured: 0.20


def test_attack_gray_refuses_an_unknown_chroma_method(crops):
    from patchcrypt.attacks.many.composite import attack_gray
    from patchcrypt.errors import PatchcryptError

    victims, public = crops[0][:4], crops[1][:4]
    with pytest.raises(PatchcryptError, match="chroma method"):
        attack_gray(create_cipher("etc-gray", KEY, block_size=8).encrypt(victims), public, "etc-gray", 8,
                    victims.shape[1:], None, chroma="nearest")
