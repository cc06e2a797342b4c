"""Attacks on small real inputs, and their scores against hand-computed values."""

import json

import numpy as np
import pytest

from patchcrypt import Key
from patchcrypt.attacks import run_attack
from patchcrypt.attacks.metrics import jigsaw_scores
from patchcrypt.cli import main
from patchcrypt.ciphers import create_cipher
from patchcrypt.data import sample_photos
from patchcrypt.metrics import batch_quality


def test_jigsaw_scores_by_hand():
    assert jigsaw_scores(np.arange(4), 2, 2) == {"dc": 1.0, "nc": 1.0, "lc": 1.0}
    # 2x2 grid, top row swapped: [1, 0; 2, 3] -> only block 2 and 3 in place; the pair (2,3) and
    # nothing else: right pairs (1,0) wrong, (2,3) right; down pairs (1,2) wrong, (0,3) wrong
    s = jigsaw_scores(np.array([1, 0, 2, 3]), 2, 2)
    assert s["dc"] == 0.5 and s["nc"] == 0.25 and s["lc"] == 0.5
    # a whole image shifted by one column keeps every internal neighbour pair: 3x3, columns rotated
    shifted = np.array([[1, 2, 0], [4, 5, 3], [7, 8, 6]]).reshape(-1)
    s = jigsaw_scores(shifted, 3, 3)
    assert s["dc"] == 0.0 and abs(s["nc"] - 9 / 12) < 1e-9 and abs(s["lc"] - 6 / 9) < 1e-9


def test_fr_recovers_edges_of_pe(cifar_small):
    images = cifar_small[0][:20]
    result = run_attack("fr", "pe", 4, images)
    enc_ssim = batch_quality(images, result.encrypted)["ssim_mean"]
    assert result.metrics()["ssim"] > enc_ssim + 0.03


def test_jigsaw_reassembles_block_scrambled_photo():
    photo = sample_photos(128)[1:2]   # coffee: a textured real photo
    result = run_attack("jigsaw", "step-bs", 16, photo, key=Key.from_bytes(bytes(32)))
    m = result.metrics()
    assert m["nc"] > 0.9 and m["ssim"] > 0.9


def test_kpa_recovers_block_pixel_key_exactly(cifar_small):
    images = cifar_small[0]
    key = Key.from_bytes(bytes(range(32)))
    result = run_attack("kpa", "block-pixel", 4, images[:10], train_images=images[10:], key=key, pairs=2)
    m = result.metrics()
    assert m["key_map_fraction"] == 1.0 and m["exact_images"] == 1.0
    cipher = create_cipher("block-pixel", key, block_size=4)
    assert np.array_equal(result.reconstructed, cipher.decrypt(cipher.encrypt(images[:10])))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gan", "itn"])
def test_learned_attacks_loss_falls(cifar_small, name):
    images = np.concatenate([cifar_small[0]] * 3)
    result = run_attack(name, "block-pixel", 4, images[:8], train_images=images, epochs=4, seed=1,
                        progress=False)
    losses = result.extra["discriminator_losses" if name == "gan" else "losses"]
    assert losses[-1] < losses[0]
    assert result.reconstructed.shape == images[:8].shape


@pytest.mark.slow
def test_attack_cli_and_bad_input(tmp_path, capsys, shared_cifar):
    out = tmp_path / "att"
    assert main(["attack", "kpa", "--scheme", "block-pixel", "--block-size", "4", "--data", str(shared_cifar),
                 "--pairs", "2", "--n-images", "10", "--subset", "20", "--out", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n_images"] == 10 and metrics["key_map_fraction"] > 0.9
    assert (out / "candidates.png").is_file() and json.loads((out / "metrics.json").read_text())
    for args, match in ((["nope", "--scheme", "etc"], "unknown attack"),
                        (["fr", "--scheme", "rot13"], "unknown scheme"),
                        (["jigsaw", "--scheme", "pe"], "does not apply"),
                        (["kpa", "--scheme", "etc", "--pairs", "0"], "--pairs"),
                        (["kpa", "--scheme", "block-pixel", "--per-image"], "per-image"),
                        (["fr", "--scheme", "etc", "--block-size", "5"], "not a multiple")):
        if "--block-size" not in args:
            args = args + ["--block-size", "4"]
        code = main(["attack", *args, "--data", str(shared_cifar), "--n-images", "4", "--subset", "8"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code != 0 and len(err) == 1 and err[0].startswith("error:") and match in err[0], err


@pytest.mark.parametrize("scheme,m", [("etc", 16), ("etc-gray", 8)])
def test_block_source_names_the_plain_block_of_every_encrypted_block(scheme, m):
    """The jigsaw score's ground truth: encrypted block k is plain block source[k] under one of the states."""
    from patchcrypt.attacks import block_source
    from patchcrypt.attacks.jigsaw import states_for
    from patchcrypt.attacks.placement import transform
    from patchcrypt.blocks import split_blocks

    cipher = create_cipher(scheme, Key.from_bytes(bytes(range(32))), block_size=m)
    photo = sample_photos(64)[:1]
    enc = cipher.encrypt(photo)
    plain = cipher.to_composite(photo, False) if scheme == "etc-gray" else photo
    source = block_source(cipher, enc.shape[1:], m)
    assert sorted(source) == list(range(len(source)))
    pb, eb = split_blocks(plain, m)[0].astype(np.float32), split_blocks(enc, m)[0].astype(np.float32)
    states = states_for(scheme)
    for k in range(len(source)):
        assert any(np.array_equal(transform(pb[source[k]][None], st)[0], eb[k]) for st in states)


def test_jigsaw_runs_on_etc_gray_composites():
    res = run_attack("jigsaw", "etc-gray", 8, sample_photos(64)[:1], key=Key.from_bytes(bytes(32)))
    met = res.metrics()
    assert res.reconstructed.shape == (1, 64, 64, 3)
    assert met["states"] == 16 and 0 <= met["nc"] <= 1 and "composite_ssim" in met


def test_piece_states_are_the_rotations_flips_inversions_and_colour_orders():
    """The jigsaws' piece states, applied by the cipher's step tables, are the literal block operations."""
    from patchcrypt.attacks.placement import state_list, transform

    blocks = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    states = state_list(True, True, True)
    assert len(states) == 96
    for st in states:
        want = np.rot90(blocks, st.rot % 4, axes=(1, 2))
        want = want[:, :, ::-1] if st.rot >= 4 else want
        want = (255 - want if st.neg else want)[..., list(st.order)]
        assert np.array_equal(transform(blocks, st), want)
