"""Invariant ViTs (DESIGN §8): predictions on per-image ciphertexts equal those on the plain images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patchcrypt import Key
from patchcrypt.ciphers import INVARIANT_VARIANTS, create_cipher
from patchcrypt.models import create_model, list_models
from patchcrypt.models.invariant import GROUPS, BlockGroup, CanonicalBlocks
from patchcrypt.models.vit_inv import invariant_schemes, per_image_warning

KEY = Key.from_bytes(bytes(range(32)))
INV_MODELS = list_models("*_inv_*")


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Random images with the blocks that make canonicalisation hard: uniform, symmetric, mid-grey."""
    x = np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    q = size // 4
    x[:, :q, :q] = 128                                   # uniform blocks: every state is the same block
    x[:, :q, q:2 * q] = 127                              # (127 and 128 are each other's negatives)
    sym = np.random.default_rng(seed + 1).integers(0, 256, (q, q // 2, 1), dtype=np.uint8)
    x[:, q:2 * q, :q] = np.concatenate([sym, sym[:, ::-1]], axis=1)   # mirror-symmetric grey blocks
    return x


def _nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).contiguous()


def _cases():
    """Every registered model at its registered invariance (all of EtC's states, so every variant) with both
    embeddings (the larger models' orbit pooling marked slow), and every invariance on the CPU model."""
    for name in INV_MODELS:
        for embed in ("canonical", "pool"):
            slow = embed == "pool" and name != "vit_pico_inv_patch4_32"
            yield pytest.param(name, "etc", embed, marks=pytest.mark.slow if slow else ())
    for invariance in [g for g in GROUPS if g != "etc"]:
        for embed in ("canonical", "pool"):
            yield pytest.param("vit_pico_inv_patch4_32", invariance, embed)


@pytest.mark.parametrize("name,invariance,embed", list(_cases()))
def test_predictions_on_per_image_ciphertexts_equal_plain(name, invariance, embed):
    small = "_224" not in name
    kw = {} if small else dict(depth=2)   # the 224 model's geometry and embedding; fewer blocks keep it quick
    model = create_model(name, seed=0, num_classes=5, invariance=invariance, inv_embed=embed, **kw).eval()
    m, size = model.patch_size, model.img_size
    x = _images(2 if small else 1, size)
    with torch.no_grad():
        plain = model(_nchw(x))
    assert model.invariant_schemes == invariant_schemes(invariance)
    for scheme in model.invariant_schemes:
        cipher = create_cipher(scheme, KEY, block_size=m, per_image=True)
        y = cipher.encrypt(x, cipher.new_nonces(len(x)))
        assert not np.array_equal(y, x)
        with torch.no_grad():
            enc = model(_nchw(y))
        torch.testing.assert_close(enc, plain, atol=1e-4, rtol=1e-4, msg=f"{name} {invariance} {embed} {scheme}")


def test_a_smaller_group_is_not_invariant_to_larger_variants():
    x = _images(4, 32, seed=3)
    order = list(GROUPS)
    for i, invariance in enumerate(order):
        model = create_model("vit_pico_inv_patch4_32", seed=0, invariance=invariance).eval()
        with torch.no_grad():
            plain = model(_nchw(x))
        for scheme in list(INVARIANT_VARIANTS)[i + 1:]:
            assert scheme not in model.invariant_schemes
            cipher = create_cipher(scheme, KEY, block_size=4, per_image=True)
            with torch.no_grad():
                enc = model(_nchw(cipher.encrypt(x, cipher.new_nonces(len(x)))))
            assert (enc - plain).abs().max() > 1e-3, (invariance, scheme)


def test_a_plain_vit_is_not_invariant():
    """The check above can fail: the ordinary ViT's predictions move under per-image keys."""
    model = create_model("vit_pico_patch4_32", seed=0).eval()
    x = _images(2, 32)
    cipher = create_cipher("step-bs", KEY, block_size=4, per_image=True)
    with torch.no_grad():
        assert (model(_nchw(cipher.encrypt(x, cipher.new_nonces(2)))) - model(_nchw(x))).abs().max() > 1e-3


@pytest.mark.parametrize("steps", [s for s in GROUPS.values() if s])
def test_every_orbit_member_canonicalises_to_the_same_block(steps):
    group = BlockGroup(steps, 4, 3)
    canon = CanonicalBlocks(group)
    rng = np.random.default_rng(7)
    blocks = [rng.integers(0, 256, (4, 4, 3)), np.full((4, 4, 3), 128), np.full((4, 4, 3), 127),
              np.tile(rng.integers(0, 256, (1, 1, 3)), (4, 4, 1)),               # one colour: CS ties
              np.broadcast_to(np.array([[0, 255, 255, 0]] * 4)[..., None], (4, 4, 3)),   # symmetric
              rng.integers(0, 2, (4, 4, 3)) * 255]
    for b in blocks:
        u = torch.tensor(np.asarray(b, np.float32).reshape(-1))
        orbit = u[group.gathers]                                                # (G, L)
        orbit = torch.where(group.signs[:, None] < 0, 255.0 - orbit, orbit)
        imgs = orbit.reshape(-1, 4, 4, 3).permute(0, 3, 1, 2)                   # G one-block images
        out = canon(imgs)[:, 0]                                                 # (G, L)
        assert torch.equal(out, out[:1].expand_as(out))
        assert any(torch.equal(out[0], o) for o in orbit)                      # a member of the orbit


def test_group_orders():
    assert [BlockGroup(s, 4, 3).order for s in GROUPS.values()] == [1, 8, 16, 96]
    assert invariant_schemes("etc") == ("step-bs", "etc-bs-rf", "etc-bs-rf-np", "etc", "patch-shuffle")
    assert invariant_schemes("bs-rf") == ("step-bs", "etc-bs-rf", "patch-shuffle")


def test_per_image_warning_names_the_invariant_models():
    note = per_image_warning("vit_pico_patch4_32", "etc")
    assert "cannot be invariant to per-image keys" in note and "\n" not in note
    assert all(n in note for n in INV_MODELS)
    assert per_image_warning("vit_pico_inv_patch4_32", "etc") is None
    assert per_image_warning("vit_pico_inv_patch4_32", "etc", invariance="bs-rf-np") is not None
    assert per_image_warning("vit_pico_inv_patch4_32", "etc-bs-rf-np", invariance="bs-rf-np") is None


def test_train_per_image_warns_for_a_non_invariant_model(tmp_path, capsys):
    from patchcrypt.cli import main

    rng = np.random.default_rng(0)
    from PIL import Image

    for split in ("train", "test"):
        for cls in ("a", "b"):
            d = tmp_path / "data" / split / cls
            d.mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / f"{i}.png")
    key = tmp_path / "k.key"
    KEY.save(key)
    args = ["train", "--data", str(tmp_path / "data"), "--scheme", "etc", "--key", str(key), "--block-size", "4",
            "--per-image", "--epochs", "1", "--batch-size", "8"]
    assert main(args + ["--model", "vit_pico_patch4_32", "--out", str(tmp_path / "r1")]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "invariant" in line]
    assert len(err) == 1 and "vit_pico_inv_patch4_32" in err[0] and err[0].startswith("warning:")


def test_unknown_invariance_is_one_clear_error():
    from patchcrypt.errors import PatchcryptError

    with pytest.raises(PatchcryptError, match="invariance must be one of"):
        create_model("vit_pico_inv_patch4_32", invariance="rf")
    with pytest.raises(PatchcryptError, match="inv_embed"):
        create_model("vit_pico_inv_patch4_32", inv_embed="avg")
