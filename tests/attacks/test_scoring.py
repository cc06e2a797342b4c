"""One vocabulary for every attack: the schema each registered attack emits, and the up-to-global figures."""

import numpy as np
import pytest

from patchcrypt import Key
from patchcrypt.attacks import ATTACKS, list_attacks, make_target, run_attack
from patchcrypt.attacks.scoring import (GLOBAL_STATES, SCHEMA, apply_state, batch_psnr, batch_ssim, score,
                                        state_as_map, up_to_global)
from patchcrypt.data import sample_photos
from patchcrypt.metrics import psnr, ssim

KEY = Key.from_bytes(bytes(range(32)))
# the schemes tried, in order, for an attack to apply to (every registered attack applies to one of them)
CANDIDATES = ("block-pixel", "etc", "step-bs", "etc-nested")
# names that once meant the same as a schema key, and must not come back
SYNONYMS = ("key_recovered_fraction", "key_fraction", "exact_decryptions", "ssim_mean", "psnr_mean")


@pytest.fixture(scope="module")
def photos():
    return sample_photos(32)   # (6, 32, 32, 3) uint8 real photos


def test_fast_metrics_equal_the_reference_ones(photos):
    noisy = np.clip(photos.astype(int) + np.random.default_rng(0).integers(-40, 40, photos.shape), 0, 255)
    noisy = noisy.astype(np.uint8)
    assert np.allclose(batch_ssim(noisy, photos), [ssim(a, b) for a, b in zip(noisy, photos)], atol=1e-9)
    assert np.allclose(batch_psnr(noisy, photos), [psnr(a, b) for a, b in zip(noisy, photos)], atol=1e-9)


def test_up_to_global_is_the_best_over_the_96_states(photos):
    assert len(GLOBAL_STATES) == 96 and len(set(GLOBAL_STATES)) == 96
    rng = np.random.default_rng(1)
    out = apply_state(photos, GLOBAL_STATES[57])
    out[0, :8] = rng.integers(0, 256, out[0, :8].shape)          # one image damaged: not exact in any state
    m = score(photos, out)
    ssims = [batch_ssim(apply_state(out, s), photos).mean() for s in GLOBAL_STATES
             if apply_state(out[:1], s).shape == photos[:1].shape]
    exacts = [np.mean([np.array_equal(a, b) for a, b in zip(apply_state(out, s), photos)]) for s in GLOBAL_STATES]
    assert m["ssim_global"] == pytest.approx(max(ssims)) and m["exact_images_global"] == max(exacts) == 5 / 6
    assert m["exact_images"] == 0.0 and m["ssim"] < m["ssim_global"]
    assert m["global_state_rank"] is None            # the attacker offered one candidate, not the true one
    best = up_to_global(out, photos)["best_state_index"]
    order = [i for i in range(96) if i != best][:10] + [best]
    ranked = score(photos, out, candidates=out, state_order=order)
    assert ranked["global_state_rank"] == 11


def test_a_state_is_a_gather_and_a_flip_mask(photos):
    for s in GLOBAL_STATES[::7]:
        perm, mask = state_as_map(s, photos.shape[1:])
        flat = photos.reshape(len(photos), -1)
        assert np.array_equal((flat[:, perm] ^ mask).reshape(photos.shape), apply_state(photos, s))


def test_every_registered_attack_emits_the_schema(photos):
    """Each registered attack, on a scheme it applies to, reports every key of the schema and no synonym."""
    for name in list_attacks():
        scheme = next((s for s in CANDIDATES if ATTACKS[name].why_not(make_target(s, 4, key=KEY)) is None), None)
        assert scheme is not None, f"{name} applies to none of {CANDIDATES}"
        res = run_attack(name, scheme, 4, photos[:2], train_images=photos[2:], key=KEY, epochs=1, progress=False)
        m = res.metrics()
        missing = [k for k in SCHEMA if k not in m]
        assert not missing, f"{name} lacks {missing}"
        assert not [k for k in SYNONYMS if k in m], f"{name} uses an old name"
        assert 0.0 <= m["exact_images"] <= m["exact_images_global"] <= 1.0
        assert m["ssim"] <= m["ssim_global"] + 1e-9 and m["attack"] == name
        assert m["key_map_fraction"] is None or 0.0 <= m["key_map_fraction"] <= 1.0


def test_outputs_that_need_no_attack_read_nothing(photos):
    """A flat image, the ciphertext's block-mean thumbnail or the ciphertext itself handed back as a
    "reconstruction" reads 0 images; the plain images and a lightly damaged copy read all of them."""
    from patchcrypt.attacks.scoring import trivial_outputs

    plain = photos
    kept_means = plain.reshape(6, 8, 4, 8, 4, 3)[:, :, :, :, ::-1].reshape(plain.shape)  # block means stay in place
    for enc in (kept_means, np.random.default_rng(2).integers(0, 256, plain.shape, dtype=np.uint8)):
        for name, out in trivial_outputs(plain, enc, 4).items():
            m = score(plain, np.ascontiguousarray(out), encrypted=enc, block_size=4)
            assert m["readable"] == 0.0, name
            assert m["ssim_gain"] <= 1e-9
        assert set(m["baselines"]) == {"flat", "ciphertext", "block_means"}
    flat = np.full_like(plain, 128)
    assert score(plain, flat)["readable"] == 0.0
    assert score(plain, plain, encrypted=kept_means, block_size=4)["readable"] == 1.0
    noisy = np.clip(plain.astype(int) + np.random.default_rng(3).integers(-6, 7, plain.shape), 0, 255).astype(np.uint8)
    m = score(plain, noisy, encrypted=kept_means, block_size=4)
    assert m["exact_images_global"] == 0.0 and m["readable"] == 1.0


def test_per_image_keys_give_every_image_its_own_global_state(photos):
    out = np.stack([apply_state(p[None], GLOBAL_STATES[s])[0] for p, s in zip(photos, (0, 5, 17, 40, 63, 90))])
    assert score(photos, out, per_image=True)["exact_images_global"] == 1.0
    assert score(photos, out)["exact_images_global"] < 1.0


def test_recognisability_counts_only_what_beats_the_outputs_that_need_no_attack(photos):
    """A reference classifier's agreement on the output minus its best agreement on a trivial output."""
    def classify(images):        # a stand-in reference classifier: the brightest channel of the centre
        return images[:, 12:20, 12:20].reshape(len(images), -1, 3).mean(1).argmax(1)

    plain = photos
    m = score(plain, plain, classify=classify)
    assert m["recognised"] == 1.0 and m["recognisability"] == 1.0 - m["recognised_baseline"]
    flat = np.ascontiguousarray(np.broadcast_to(plain.reshape(-1, 3).mean(0).round().astype(np.uint8), plain.shape))
    f = score(plain, flat, classify=classify)
    assert f["recognisability"] <= 0.0 and f["readable"] == 0.0
    assert score(plain, plain)["recognisability"] is None           # no reference classifier given
