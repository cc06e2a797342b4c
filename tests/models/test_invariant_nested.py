"""Nested invariant ViTs: logits on per-image etc-nested ciphertexts equal those on the plain images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patchcrypt import Key
from patchcrypt.ciphers import create_cipher
from patchcrypt.errors import PatchcryptError
from patchcrypt.models import build_model, create_model, list_models, load_checkpoint, save_checkpoint
from patchcrypt.models.vit_inv import per_image_warning

KEY = Key.from_bytes(bytes(range(32)))
NESTED_MODELS = list_models("*_inv_nested_*")


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Random images with uniform, mid-grey (127/128) and mirror-symmetric sub-blocks in them."""
    x = np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    q = max(4, size // 8)
    x[:, :q, :q] = 128
    x[:, :q, q:2 * q] = 127
    sym = np.random.default_rng(seed + 1).integers(0, 256, (q, q // 2, 1), dtype=np.uint8)
    x[:, q:2 * q, :q] = np.concatenate([sym, sym[:, ::-1]], axis=1)
    return x


def _nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).contiguous()


def _logits(model, x):
    with torch.no_grad():
        return model(_nchw(x))


def _gap(model, x, scheme, **cipher_kw) -> float:
    cipher = create_cipher(scheme, KEY, block_size=model.patch_size, per_image=True, **cipher_kw)
    y = cipher.encrypt(x, cipher.new_nonces(len(x)))
    assert not np.array_equal(y, x)
    return float((_logits(model, y) - _logits(model, x)).abs().max())


def test_registered_at_32_128_224():
    assert NESTED_MODELS == ["vit_pico_inv_nested_patch16_128", "vit_pico_inv_nested_patch8_32",
                             "vit_tiny_inv_nested_patch16_224"]


@pytest.mark.parametrize("name", NESTED_MODELS)
@pytest.mark.parametrize("pool", ["mean", "attn", "set"])
def test_logits_equal_on_plain_and_per_image_ciphertexts(name, pool):
    kw = dict(depth=2) if "_224" in name else {}
    model = create_model(name, seed=0, num_classes=5, inv_pool=pool, **kw).eval()
    x = _images(1 if "_224" in name else 2, model.img_size)
    assert set(model.invariant_schemes) >= {"etc-nested", "patch-shuffle-mix", "patch-shuffle", "etc", "step-bs"}
    for scheme in model.invariant_schemes:
        assert _gap(model, x, scheme) < 1e-4, (name, scheme)


def test_the_224_vit_built_with_nested_invariance():
    """The issue's check: an _inv model at 224 built with invariance="etc-nested"."""
    model = create_model("vit_tiny_inv_patch16_224", seed=0, num_classes=5, depth=2, invariance="etc-nested").eval()
    assert _gap(model, _images(1, 224, seed=4), "etc-nested") < 1e-4


def test_two_pixel_sub_blocks_at_32():
    model = create_model("vit_pico_inv_nested_patch8_32", seed=0, sub_block=2).eval()
    x = _images(2, 32, seed=5)
    assert _gap(model, x, "etc-nested", sub_block=2) < 1e-4
    # a model for m = 2 is not invariant to ciphertexts made with m = 4 sub-blocks... and the other way round
    assert _gap(create_model("vit_pico_inv_nested_patch8_32", seed=0).eval(), x, "etc-nested", sub_block=2) > 1e-3


@pytest.mark.parametrize("pool", ["attn", "set"])
def test_two_pixel_sub_blocks_at_32_pooled(pool):
    """m = 2: 16 sub-blocks per 8×8 patch, each of 12 values."""
    model = create_model("vit_pico_inv_nested_patch8_32", seed=0, sub_block=2, inv_pool=pool).eval()
    assert _gap(model, _images(2, 32, seed=6), "etc-nested", sub_block=2) < 1e-4


def test_deeper_set_pool_is_invariant():
    model = create_model("vit_pico_inv_nested_patch8_32", seed=0, inv_pool="set", inv_set_depth=2).eval()
    assert len(model.patch_embed.set_blocks) == 2
    assert _gap(model, _images(2, 32, seed=7), "etc-nested") < 1e-4


def _with_new_sub_block(x: np.ndarray, m: int = 4) -> np.ndarray:
    """``x`` with the top-left m×m sub-block of the top-left patch redrawn (nothing else touched)."""
    y = x.copy()
    y[:, :m, :m] = np.random.default_rng(11).integers(0, 256, (len(x), m, m, 3), dtype=np.uint8)
    return y


def test_set_pool_sub_blocks_see_each_other():
    """Changing one sub-block changes the other sub-blocks' tokens of its patch (and only of its patch): the
    set pool mixes the sub-blocks before pooling; the attention pool does not."""
    x = _images(1, 32, seed=8)
    y = _with_new_sub_block(x)
    moved = {}
    for pool in ("attn", "set"):
        model = create_model("vit_pico_inv_nested_patch8_32", seed=0, inv_pool=pool).eval()
        with torch.no_grad():
            a, b = (model.patch_embed.sub_block_tokens(_nchw(v).float()) for v in (x, y))   # (n, q, hidden)
        assert a.shape == (16, 4, 64)
        assert float((a[0, 0] - b[0, 0]).abs().max()) > 1e-3                 # the changed sub-block itself
        assert float((a[1:] - b[1:]).abs().max()) < 1e-6                     # other patches: untouched
        moved[pool] = float((a[0, 1:] - b[0, 1:]).abs().max())               # its neighbours in the patch
    assert moved["attn"] < 1e-6
    assert moved["set"] > 1e-3


def test_set_pool_size():
    """One set block adds one ViT block of the sub-block width (64 for ViT-pico, 2 heads, MLP 2×) and a norm."""
    sizes = {pool: sum(p.numel() for p in create_model("vit_pico_inv_nested_patch16_128", seed=0,
                                                        inv_pool=pool).parameters()) for pool in ("attn", "set")}
    block = 64 * 192 + 192 + 64 * 64 + 64 + 64 * 128 + 128 + 128 * 64 + 64 + 2 * 2 * 64   # qkv, proj, MLP, norms
    assert sizes["set"] - sizes["attn"] == block + 2 * 64
    assert sizes["set"] == 175_366


@pytest.mark.parametrize("name,kw", [("vit_pico_inv_nested_patch8_32", {"inv_pool": "set", "inv_set_depth": 2}),
                                     ("vit_pico_inv_nested_patch8_32", {"inv_pool": "attn"}),
                                     ("vit_pico_inv_patch4_32", {})])
def test_checkpoint_rebuilds_canonical_models(tmp_path, name, kw):
    """evaluate/serve rebuild a run's model from its checkpoint (first on the meta device, for its shapes)."""
    model = create_model(name, seed=0, num_classes=3, **kw).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, model_name=name, model_kwargs={"num_classes": 3, **kw},
                           classes=["a", "b", "c"])
    x = _nchw(_images(2, 32, seed=9))
    with torch.no_grad():
        assert torch.equal(build_model(load_checkpoint(path))(x), model(x))


def test_smaller_groups_are_not_invariant():
    """The check can fail: models of smaller groups (and the plain ViT) move under per-image etc-nested."""
    x = _images(2, 32, seed=3)
    for invariance in ("etc", "bs", "patch-shuffle-mix"):
        kw = dict(patch_size=8) if invariance == "patch-shuffle-mix" else {}
        name = "vit_pico_inv_nested_patch8_32" if kw else "vit_pico_inv_patch4_32"
        model = create_model(name, seed=0, invariance=invariance, **({} if kw else dict(patch_size=8))).eval()
        assert "etc-nested" not in model.invariant_schemes
        assert _gap(model, x, "etc-nested") > 1e-3, invariance
    plain = create_model("vit_pico_patch4_32", seed=0, patch_size=8).eval()
    assert _gap(plain, x, "patch-shuffle") > 1e-4   # random weights: small logits, still 9x the tolerance


def test_errors_and_warnings():
    with pytest.raises(PatchcryptError, match="canonical"):
        create_model("vit_pico_inv_nested_patch8_32", inv_embed="pool")
    with pytest.raises(PatchcryptError, match="divide"):
        create_model("vit_pico_inv_nested_patch8_32", sub_block=3)
    with pytest.raises(PatchcryptError, match="inv_pool"):
        create_model("vit_pico_inv_nested_patch8_32", inv_pool="max")
    with pytest.raises(PatchcryptError, match="inv_set_depth"):
        create_model("vit_pico_inv_nested_patch8_32", inv_pool="set", inv_set_depth=0)
    with pytest.raises(PatchcryptError, match="inv_set_depth"):
        create_model("vit_pico_inv_nested_patch8_32", inv_pool="attn", inv_set_depth=2)
    with pytest.raises(PatchcryptError, match="heads"):
        create_model("vit_pico_inv_nested_patch8_32", inv_pool="set", pool_hidden=33)
    assert per_image_warning("vit_pico_inv_nested_patch8_32", "etc-nested") is None
    assert "not invariant" in per_image_warning("vit_pico_inv_patch4_32", "etc-nested")
    assert "cannot be invariant" in per_image_warning("vit_pico_patch4_32", "patch-shuffle")
