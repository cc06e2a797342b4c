"""The value-map stage of the many-image attack on user schemes outside the step vocabulary
(examples/value_schemes.py): XOR masks, additive masks, one substitution table, stripped before the moves.

Images: 32×32 crops of scikit-image photos at several scales, split at random into victims and public images
(disjoint crops), so nothing here needs the shared data sets.
"""

from pathlib import Path

import numpy as np
import pytest

from patchcrypt import Key
from patchcrypt.attacks import run_attack
from patchcrypt.attacks.many import valuemaps

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "value_schemes.py"
KEY = Key.from_bytes(bytes(range(32)))


@pytest.fixture(scope="module")
def crops():
    """(victims (200, 32, 32, 3), public (≥ 500, 32, 32, 3)) uint8, disjoint crops of four photos."""
    from PIL import Image
    from skimage import data

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        img = getattr(data, name)()
        h, w = img.shape[:2]
        for size in (96, 128, 160, 192, 256):
            s = size / min(h, w)
            im = np.asarray(Image.fromarray(img).resize((int(w * s), int(h * s)), Image.LANCZOS))
            out += [im[y:y + 32, x:x + 32] for y in range(0, im.shape[0] - 31, 32)
                    for x in range(0, im.shape[1] - 31, 32)]
    c = np.stack(out)
    order = np.random.default_rng(1).permutation(len(c))
    return c[order[:200]], c[order[200:]]


def _scheme(cls: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location("value_schemes", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(mod, cls)(bytes(range(32)), 4)


def test_xor_blocks_fall_up_to_the_global_state(crops):
    """Block scrambling + one arbitrary XOR mask for every block: the mask pooled over the blocks, then the
    jigsaw; every image exact up to the global state, and the map is the compiled one."""
    victims, public = crops
    res = run_attack("many", f"{EXAMPLE}:XorBlocks", 4, victims, public, key=KEY)
    m = res.metrics()
    assert m["value_map_kind"] == "xor" and m["value_map_shared"] is True and m["facts"] == "none (generic)"
    assert m["exact_images_global"] == 1.0, m
    assert res.key_map is not None and res.key_map.m.dtype == np.uint8


def test_per_image_keys_are_not_claimed(crops):
    """The control: a fresh key per image leaves nothing shared; the output reads nothing."""
    victims, public = crops
    m = run_attack("many", f"{EXAMPLE}:XorBlocks", 4, victims[:100], public, per_image=True).metrics()
    assert m["exact_images_global"] == 0.0 and m["ssim_global"] < 0.3, m


def test_the_xor_mask_is_recovered_and_flips_are_no_value_map(crops):
    """The stage alone: the exact mask up to one inversion; a 0/255 flip mask (block-pixel) is left to the
    block method (kind "none")."""
    from patchcrypt.ciphers import create_cipher

    victims, public = crops
    scheme = _scheme("XorBlocksRot")
    found = valuemaps.recover_value_maps(scheme.encrypt(victims), public, 4)
    true = scheme._values(32, 32, 3)[0][:, 0]
    assert found.kind == "xor"
    assert np.array_equal(found.mask, true) or np.array_equal(found.mask, true ^ 255)
    flips = create_cipher("block-pixel", KEY, block_size=4).encrypt(victims[:100])
    assert valuemaps.recover_value_maps(flips, public, 4).kind == "none"


def test_one_substitution_is_ordered_by_its_cooccurrences(crops):
    """A shared substitution table: partners by equal values, plain order by spectral seriation; the
    decryptions close to the plain images up to the inversion."""
    victims, public = crops
    scheme = _scheme("SubstImage")
    found = valuemaps.recover_value_maps(scheme.encrypt(victims), public, 4)
    assert found.kind == "subst"
    dec = found.apply(scheme.encrypt(victims)).astype(np.int64)
    err = min(np.abs(dec - victims).mean(), np.abs(255 - dec - victims).mean())
    assert err < 2.0, err


def test_steps_outside_the_vocabulary_take_the_value_stage(crops):
    """Declared steps with one of the scheme's own ("XOR") run the generic facts after the value stage;
    registered schemes and vocabulary steps never do."""
    from patchcrypt.attacks.many.facts import outside_vocabulary, spec_for
    from patchcrypt.attacks.target import make_target

    base = type(_scheme("XorBlocks"))
    declared = type("XorDeclared", (base,), {"steps": ("BS", "XOR")})
    vocabulary = type("BsDeclared", (base,), {"steps": ("BS",)})
    probe = crops[0][:4]
    own = make_target(declared, 4, probe)
    assert outside_vocabulary(own) and spec_for(own)[1] is None
    assert not outside_vocabulary(make_target(vocabulary, 4, probe))
    assert not outside_vocabulary(make_target("block-pixel", 4))
