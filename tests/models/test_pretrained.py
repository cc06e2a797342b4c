"""Centred re-expression and keyed init (exact for inference), and loading pretrained weights for fine-tuning."""

import numpy as np
import pytest
import torch

from patchcrypt import Key
from patchcrypt.ciphers import create_cipher
from patchcrypt.errors import PatchcryptError
from patchcrypt.models import create_model, embed_matrix, save_checkpoint
from patchcrypt.models.keyed import apply_key, block_maps, centre_input, is_centred, key_model
from patchcrypt.models.pretrained import load_weights

VIT = dict(depth=1, embed_dim=32, num_heads=2)
CM = dict(dim=16, depth=1)


@pytest.fixture(scope="module")
def images(real_photo):
    x = torch.from_numpy(real_photo[:128, :128]).permute(2, 0, 1).reshape(3, 4, 32, 4, 32)
    return x.permute(1, 3, 0, 2, 4).reshape(16, 3, 32, 32).contiguous()


@pytest.mark.parametrize("name,kw", [("vit_pico_patch4_32", VIT), ("convmixer_128_4_patch4_32", CM)])
def test_centring_keeps_the_function(images, name, kw):
    model = create_model(name, seed=0, **kw).eval()
    ref = model(images)
    centre_input(model)
    assert is_centred(model)
    assert (model(images) - ref).abs().max() < 1e-4


@pytest.mark.parametrize("scheme,name,kw,mode", [("block-pixel", "vit_pico_patch4_32", VIT, "shared"),
                                                 ("etc", "vit_pico_patch4_32", VIT, "position-wise"),
                                                 ("step-bf", "convmixer_128_4_patch4_32", CM, "shared")])
def test_centred_keyed_model_is_exact_and_keeps_the_bias(images, scheme, name, kw, mode):
    key = Key.generate()
    plain = create_model(name, seed=0, **kw).eval()
    ref = plain(images)
    keyed = create_model(name, seed=0, **kw).eval()
    info = key_model(keyed, key, scheme, 4, centred=True)
    assert info["mode"] == mode and info["centred"]
    enc = create_cipher(scheme, key, block_size=4).encrypt(images)
    assert (keyed(enc) - ref).abs().max() < 1e-3
    # flips are sign changes on centred inputs: no offset lands in the bias (it reveals nothing of the key)
    centre_input(plain)
    b_plain, b_keyed = embed_matrix(plain.patch_embedding)[1], embed_matrix(keyed.patch_embedding)[1]
    assert torch.allclose(b_keyed, b_plain.expand_as(b_keyed), atol=1e-6)


def test_convmixer_refuses_block_scrambling():
    model = create_model("convmixer_128_4_patch4_32", **CM)
    with pytest.raises(PatchcryptError, match="ConvMixer"):
        apply_key(model, block_maps("block-pixel", Key.generate(), 4, 32), centred=True)


def test_load_weights_adapts_and_names_the_first_misfit(tmp_path):
    src = create_model("vit_pico_patch4_32", seed=1, num_classes=5, **VIT)
    save_checkpoint(tmp_path / "up.pt", src, model_name="vit_pico_patch4_32", model_kwargs={"num_classes": 5, **VIT},
                    classes=["a", "b", "c", "d", "e"])
    # another image size: position embedding resized; same class count, other classes: head replaced
    big = create_model("vit_pico_patch4_32", num_classes=5, img_size=64, **VIT)
    info = load_weights(big, tmp_path / "up.pt", classes=["v", "w", "x", "y", "z"])
    assert big.pos_embed.shape == (1, 1 + 256, 32) and torch.equal(big.pos_embed[:, 0], src.pos_embed[:, 0])
    assert any("position embedding resized from 64 to 256" in n for n in info.notes)
    assert any(n.startswith("head replaced: pretrained on a, b, c, ...") for n in info.notes)
    assert not torch.equal(big.head.weight, src.head.weight)
    same = create_model("vit_pico_patch4_32", num_classes=5, **VIT)
    assert load_weights(same, tmp_path / "up.pt", classes=list("abcde")).notes == []
    assert torch.equal(same.head.weight, src.head.weight)
    with pytest.raises(PatchcryptError, match="tensor 'blocks.0.mlp.fc1.weight' has shape"):
        load_weights(create_model("vit_pico_patch4_32", num_classes=5, mlp_ratio=4.0, **VIT), tmp_path / "up.pt")
    with pytest.raises(PatchcryptError, match="no tensor 'blocks.1.norm1.weight'"):
        load_weights(create_model("vit_pico_patch4_32", num_classes=5, **dict(VIT, depth=2)), tmp_path / "up.pt")
    with pytest.raises(PatchcryptError, match="tensor 'cls_token' is not in ConvMixer"):
        load_weights(create_model("convmixer_128_4_patch4_32", **CM), tmp_path / "up.pt")
    with pytest.raises(PatchcryptError, match="no such weights file"):
        load_weights(same, tmp_path / "missing.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(PatchcryptError, match=r"garbage.pth: not a readable state dict \(\S"):
        load_weights(same, tmp_path / "garbage.pth")
    # a pickle holding more than tensors is refused without running it
    torch.save({"x": PatchcryptError("a custom object")}, tmp_path / "objects.pth")
    with pytest.raises(PatchcryptError, match="holds objects other than tensors"):
        load_weights(same, tmp_path / "objects.pth")


def test_create_model_pretrained_goes_through_the_one_loader(tmp_path):
    """``create_model(..., pretrained=)`` reads what ``load_weights`` reads: a patchcrypt checkpoint too, and a
    file of another architecture is one line naming the tensor and why."""
    src = create_model("vit_pico_patch4_32", seed=1, num_classes=5, **VIT)
    save_checkpoint(tmp_path / "up.pt", src, model_name="vit_pico_patch4_32", model_kwargs={"num_classes": 5, **VIT},
                    classes=list("abcde"))
    got = create_model("vit_pico_patch4_32", num_classes=5, img_size=64, pretrained=tmp_path / "up.pt", **VIT)
    ref = create_model("vit_pico_patch4_32", num_classes=5, img_size=64, **VIT)
    load_weights(ref, tmp_path / "up.pt")
    assert all(torch.equal(a, b) for a, b in zip(got.state_dict().values(), ref.state_dict().values()))
    assert torch.equal(got.head.weight, src.head.weight)   # same classes: the head is kept
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "resnet.pth")
    with pytest.raises(PatchcryptError, match=r"'conv1.weight' is not in VisionTransformer \(not a timm Vision "
                                              r"Transformer state dict: no pos_embed / patch_embed\)"):
        create_model("vit_pico_patch4_32", pretrained=tmp_path / "resnet.pth", **VIT)
    with pytest.raises(PatchcryptError, match=r"'conv1.weight' is not in ConvMixer \(another architecture\?\)"):
        create_model("convmixer_128_4_patch4_32", pretrained=tmp_path / "resnet.pth", **CM)
