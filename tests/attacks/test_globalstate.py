"""The global state of a many-image decryption: the 96 states, scoring up to them, choosing one."""

from __future__ import annotations

import numpy as np
import pytest

from patchcrypt.attacks import globalstate as gs
from patchcrypt.attacks.globalstate import choice, classifier
from patchcrypt.attacks.globalstate import (GLOBAL_STATES, GlobalState, apply_state, compose, distinct_states,
                                            invert_state, inverse, rank_of_true, rank_states, ssim_batch,
                                            up_to_global)
from patchcrypt.ciphers.steps import COLOUR_ORDERS, colour_tables, dihedral_tables
from patchcrypt.errors import PatchcryptError
from patchcrypt.metrics import ssim


def _rand(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_states_are_96_distinct_hashable_identity_first():
    assert len(GLOBAL_STATES) == 96 and len(set(GLOBAL_STATES)) == 96
    assert GLOBAL_STATES[0] == GlobalState() and str(GLOBAL_STATES[0]) == "identity"
    assert len({str(s) for s in GLOBAL_STATES}) == 96
    assert all(s.index == i for i, s in enumerate(GLOBAL_STATES))
    assert str(GlobalState(6, 5, True)) == "rot180+mirror BGR inverted"


@pytest.mark.parametrize("shape", [(3, 6, 6, 3), (2, 5, 7, 3), (2, 4, 9, 1)])
def test_apply_and_invert_are_exact_inverses_for_all_96(shape):
    x = _rand(shape)
    keep = x.copy()
    for s in GLOBAL_STATES:
        y = apply_state(x, s)
        assert y.dtype == np.uint8
        assert y.shape[1:3] == ((shape[2], shape[1]) if s.dihedral % 2 else shape[1:3])
        np.testing.assert_array_equal(invert_state(y, s), x)
        np.testing.assert_array_equal(apply_state(y, inverse(s)), x)
    np.testing.assert_array_equal(x, keep)  # the input is never changed


def test_states_follow_the_rf_and_cs_conventions_of_the_ciphers():
    """DESIGN.md §3: k = s mod 4 quarter turns, then a horizontal flip if s >= 4; channel j <- order[j]."""
    m = 5
    x = _rand((1, m, m, 3), 1)
    for d in range(8):
        np.testing.assert_array_equal(apply_state(x, GlobalState(d)).reshape(-1),
                                      x.reshape(-1)[dihedral_tables(m, 3)[d]])
    for c in range(6):
        assert tuple(COLOUR_ORDERS[c]) == GlobalState(0, c).order
        np.testing.assert_array_equal(apply_state(x, GlobalState(0, c)).reshape(-1), x.reshape(-1)[colour_tables(m)[c]])
    np.testing.assert_array_equal(apply_state(x, GlobalState(0, 0, True)), 255 - x)


def test_one_channel_colour_order_is_a_no_op_and_16_states_differ():
    x = _rand((2, 6, 6, 1), 2)
    for s in GLOBAL_STATES:
        np.testing.assert_array_equal(apply_state(x, s), apply_state(x, GlobalState(s.dihedral, 0, s.invert)))
    assert len(distinct_states(1)) == 16 and len(distinct_states(3)) == 96
    assert len(distinct_states(3, (4, 6))) == 48


def test_compose_matches_applying_twice():
    x = _rand((2, 4, 6, 3), 3)
    for a in GLOBAL_STATES[::5]:
        for b in GLOBAL_STATES[::7]:
            np.testing.assert_array_equal(apply_state(apply_state(x, b), a), apply_state(x, compose(a, b)))


def test_bad_input_is_one_clear_error():
    with pytest.raises(PatchcryptError):
        apply_state(np.zeros((4, 4, 3), np.uint8), 0)
    with pytest.raises(PatchcryptError):
        apply_state(np.zeros((1, 4, 4, 3), np.float32), 0)
    with pytest.raises(PatchcryptError):
        apply_state(np.zeros((1, 4, 4, 3), np.uint8), 96)


def test_ssim_batch_equals_the_scikit_image_ssim_image_by_image():
    a, b = _rand((4, 12, 10, 3), 4), _rand((4, 12, 10, 3), 5)
    b[:2] = np.clip(a[:2].astype(int) + _rand((2, 12, 10, 3), 6) // 16, 0, 255)
    small_a, small_b = _rand((2, 5, 5, 1), 7), _rand((2, 5, 5, 1), 8)
    for x, y in ((a, b), (small_a, small_b)):
        np.testing.assert_allclose(ssim_batch(x, y), [ssim(p, q) for p, q in zip(x, y)], atol=1e-9)


def _smooth_images(n, h, w, seed):
    """Smooth random images (so that SSIM tells states apart the way it does on photos)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = []
    for _ in range(n):
        f = rng.normal(size=(3, 4))
        img = np.stack([128 + 60 * np.sin(f[c, 0] * 6 * yy + f[c, 1] * 5 * xx + f[c, 2]) + 30 * f[c, 3] * yy
                        for c in range(3)], -1)
        out.append(np.clip(img + rng.normal(0, 8, img.shape), 0, 255))
    return np.stack(out).astype(np.uint8)


def test_up_to_global_equals_the_brute_force_best_over_all_states():
    plain = _smooth_images(30, 16, 16, 9)
    true = GlobalState(6, 3, True)
    pred = invert_state(plain, true)
    pred[::3] = np.clip(pred[::3].astype(int) + _rand(pred[::3].shape, 10) // 8 - 16, 0, 255)  # a third wrong
    got = up_to_global(pred, plain, sample=8)  # the state chosen on a subsample, scored on all 30
    brute = []
    for s in GLOBAL_STATES:
        out = apply_state(pred, s)
        brute.append((np.mean([ssim(o, p) for o, p in zip(out, plain)]),
                      float((out == plain).reshape(len(out), -1).all(1).mean()), s.index))
    best = max(brute)
    assert got["best_state_index"] == best[2] == true.index and got["best_state"] == str(true)
    assert got["ssim_global"] == pytest.approx(best[0], abs=1e-9)
    assert got["exact_images_global"] == pytest.approx(best[1]) == pytest.approx(2 / 3)
    assert 20 < got["psnr_global"] < 100


def test_up_to_global_perfect_non_square_and_rotated_shapes():
    plain = _smooth_images(6, 8, 12, 11)
    res = up_to_global(invert_state(plain, GlobalState(4, 1, False)), plain)
    assert res["exact_images_global"] == 1.0 and res["ssim_global"] == pytest.approx(1.0)
    assert res["psnr_global"] == 100.0 and res["best_state"] == str(GlobalState(4, 1))
    turned = invert_state(plain, GlobalState(1, 0, True))  # (N, 12, 8, C): a quarter turn back fits
    assert turned.shape[1:3] == (12, 8)
    assert up_to_global(turned, plain)["best_state_index"] == GlobalState(1, 0, True).index
    with pytest.raises(PatchcryptError):
        up_to_global(plain[:3], plain)


def test_rank_of_true():
    order = [5, 0, 17, 3]
    assert rank_of_true(order, 5) == 1 and rank_of_true(order, 17) == 3
    # one channel: states differing only by colour order are one
    one = [GlobalState(2, 3).index, GlobalState(2, 0).index, GlobalState(0, 0, True).index]
    assert rank_of_true(one, GlobalState(0, 0, True).index, channels=1) == 2
    with pytest.raises(PatchcryptError):
        rank_of_true([1, 2], 3)


def _scenes(n, size, seed, sky=(0.45, 0.65, 0.95), ground=(0.35, 0.45, 0.15)):
    """Outdoor-like scenes: a lighter bluish sky above a darker ground at a random horizon, texture whose
    amplitude grows with brightness (as in gamma-encoded photos), a few blobs; uint8 (n, size, size, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        horizon = rng.uniform(0.3, 0.7) + 0.1 * np.sin(xx[0] * rng.uniform(2, 8))
        lin = np.where(yy < horizon, 1.0, 0.0)[..., None]
        base = lin * np.array(sky) * (1.05 - 0.3 * yy[..., None]) + (1 - lin) * np.array(ground) * rng.uniform(.5, 1)
        for _ in range(3):
            cy, cx, r = rng.uniform(0.4, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.2)
            blob = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r)[..., None]
            base = np.where(blob, rng.uniform(0.1, 0.9, 3), base)
        tex = rng.normal(0, 0.2, (size, size, 1)) * base
        out.append(np.clip((base + tex) ** (1 / 2.2), 0, 1))
    return (np.stack(out) * 255).astype(np.uint8)


def _mirror_equal(a: int, b: int) -> bool:
    return a == b or GLOBAL_STATES[a] == compose(GlobalState(4), b)


def test_rank_states_finds_the_state_up_to_a_mirror_across_a_change_of_domain(monkeypatch):
    monkeypatch.setattr(classifier, "_CNN_BATCH", 16)  # the optional classifier runs, the test stays fast
    monkeypatch.setattr(choice, "_CACHE", {})
    public = _scenes(120, 48, 0)
    victims = _scenes(40, 32, 1, sky=(0.6, 0.7, 0.9), ground=(0.3, 0.35, 0.2))  # other size, other palette
    rng = np.random.default_rng(2)
    for true in [0, *rng.choice(96, 5, replace=False).tolist()]:
        order = rank_states(invert_state(victims, true), public, seed=0)
        assert sorted(order) == list(range(96))
        assert _mirror_equal(order[0], true), (str(GLOBAL_STATES[order[0]]), str(GLOBAL_STATES[true]))
        assert rank_of_true(order, true) <= 2
    first = rank_states(victims, public, seed=3, classifier_steps=8)
    choice._CACHE.clear()
    assert rank_states(victims, public, seed=3, classifier_steps=8) == first  # deterministic, refitted
    scores = gs.score_states(victims, public, seed=3, classifier_steps=8)
    assert np.abs(scores["cnn"]).sum() > 0 and np.allclose(scores["total"], scores["cnn"] + scores["stats"])


def test_rank_states_one_channel_and_non_square(monkeypatch):
    monkeypatch.setattr(classifier, "_CNN_BATCH", 16)
    monkeypatch.setattr(choice, "_CACHE", {})
    gray = _scenes(40, 24, 4).mean(-1, keepdims=True).astype(np.uint8)
    order = rank_states(gray[:20, :, :16], gray[20:], seed=0, classifier_steps=5)
    groups = [order[i:i + 6] for i in range(0, 96, 6)]  # the 6 colour orders of a state stay together
    assert all(len({(GLOBAL_STATES[i].dihedral, GLOBAL_STATES[i].invert) for i in g}) == 1 for g in groups)
    assert all(GLOBAL_STATES[i].dihedral % 2 == 0 for i in order[:48])  # non-square: shape-keeping first
    with pytest.raises(PatchcryptError):
        rank_states(gray, _scenes(10, 24, 5))  # 1 vs 3 channels


@pytest.mark.needs_shared
@pytest.mark.slow
def test_rank_states_on_real_photos_from_another_domain():
    from conftest import CIFAR, SHARED

    flowers = SHARED / "datasets" / "flowers5-128"
    if not (CIFAR / "test").is_dir() or not (flowers / "train").is_dir():
        pytest.skip("needs ../shared/datasets (CIFAR-10 and flowers5-128)")
    from patchcrypt.data.readers import load_dataset

    victims = load_dataset(CIFAR, "test", subset=300).images
    public = load_dataset(flowers, "train", subset=600).images
    rng = np.random.default_rng(0)
    for true in rng.choice(96, 3, replace=False).tolist():
        ids = rng.choice(len(victims), 100, replace=False)
        order = rank_states(invert_state(victims[ids], true), public, seed=0)
        assert _mirror_equal(order[0], true)
