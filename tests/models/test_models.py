"""Every registered model: forward + backward on uint8 input, timm names, checkpoints, pretrained weights."""

import pytest
import torch

from patchcrypt.record import EncryptionRecord
from patchcrypt.errors import PatchcryptError
from patchcrypt.models import (build_model, check_block_size, create_model, list_models, load_checkpoint,
                               save_checkpoint)

SMALL = {  # keep the big ones small: the test is about wiring, not capacity
    "vit": dict(depth=1, embed_dim=48, num_heads=2),
    "convmixer": dict(depth=1, dim=32),
    "resnet": dict(width=8),
}


def small_kwargs(name):
    kw = next(v for k, v in SMALL.items() if name.startswith(k))
    return dict(kw, img_size=32, num_classes=5)


@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name):
    model = create_model(name, seed=0, **small_kwargs(name))
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    out = model(x)
    assert out.shape == (2, 5) and out.dtype == torch.float32
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert hasattr(model, "input_norm") and model.input_norm.mean.shape == (3,)


def test_timm_names():
    vit = create_model("vit_pico_patch4_32").state_dict()
    for k in ("patch_embed.proj.weight", "cls_token", "pos_embed", "blocks.0.norm1.weight", "blocks.0.attn.qkv.weight",
              "blocks.0.attn.proj.weight", "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.bias", "norm.weight",
              "head.weight"):
        assert k in vit, k
    cm = create_model("convmixer_128_4_patch4_32").state_dict()
    for k in ("stem.0.weight", "stem.2.running_mean", "blocks.0.0.fn.0.weight", "blocks.0.1.weight", "head.weight"):
        assert k in cm, k


def test_seeded_creation_is_deterministic_and_leaves_global_rng():
    state = torch.random.get_rng_state()
    a, b = create_model("vit_pico_patch4_32", seed=7), create_model("vit_pico_patch4_32", seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_geometry_errors():
    with pytest.raises(PatchcryptError, match="valid names"):
        create_model("vit_huge_patch99")
    with pytest.raises(PatchcryptError, match="not a multiple"):
        create_model("vit_pico_patch4_32", img_size=30)
    model = create_model("vit_pico_patch4_32")
    with pytest.raises(PatchcryptError, match="patch size is 4"):
        check_block_size(model, 8)
    with pytest.raises(PatchcryptError, match="32x32"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_checkpoint_round_trip_and_corruption(tmp_path):
    model = create_model("convmixer_128_4_patch4_32", seed=1, depth=1).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, model_name="convmixer_128_4_patch4_32",
                           model_kwargs={"depth": 1}, classes=list("abcdefghij"),
                           record=EncryptionRecord(scheme="step-ps", block_size=4, key_fingerprint="0123456789abcdef"))
    ckpt = load_checkpoint(path)
    again = build_model(ckpt)
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(model(x), again(x))
    assert ckpt["scheme"] == "step-ps" and ckpt["key_fingerprint"] == "0123456789abcdef"
    (tmp_path / "bad.pt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(PatchcryptError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(PatchcryptError, match="not a patchcrypt checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def timm_vit_state_dict(depth=2, dim=192, heads_dim=576, grid=14, patch=16, classes=1000):
    """A state dict with timm's VisionTransformer keys and shapes (vit_tiny_patch16_224 layout)."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g) * 0.02  # noqa: E731
    sd = {"cls_token": r(1, 1, dim), "pos_embed": r(1, 1 + grid * grid, dim),
          "patch_embed.proj.weight": r(dim, 3, patch, patch), "patch_embed.proj.bias": r(dim),
          "norm.weight": 1 + r(dim), "norm.bias": r(dim), "head.weight": r(classes, dim), "head.bias": r(classes)}
    for i in range(depth):
        p = f"blocks.{i}."
        sd.update({p + "norm1.weight": 1 + r(dim), p + "norm1.bias": r(dim), p + "attn.qkv.weight": r(heads_dim, dim),
                   p + "attn.qkv.bias": r(heads_dim), p + "attn.proj.weight": r(dim, dim), p + "attn.proj.bias": r(dim),
                   p + "norm2.weight": 1 + r(dim), p + "norm2.bias": r(dim), p + "mlp.fc1.weight": r(4 * dim, dim),
                   p + "mlp.fc1.bias": r(4 * dim), p + "mlp.fc2.weight": r(dim, 4 * dim), p + "mlp.fc2.bias": r(dim)})
    return sd


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_load_timm_state_dict(tmp_path, suffix):
    sd = timm_vit_state_dict()
    path = tmp_path / f"vit{suffix}"
    if suffix == ".pth":
        torch.save({"model": sd}, path)
    else:
        from safetensors.torch import save_file
        save_file(sd, str(path))
    same = create_model("vit_tiny_patch16_224", depth=2, pretrained=path)
    assert torch.equal(same.blocks[1].attn.qkv.weight, sd["blocks.1.attn.qkv.weight"])
    assert torch.equal(same.head.weight, sd["head.weight"])
    # a new task at another resolution: position embedding resized, head replaced
    small = create_model("vit_tiny_patch16_224", depth=2, img_size=64, num_classes=10, pretrained=path)
    assert small.pos_embed.shape == (1, 1 + 16, 192) and small.head.weight.shape == (10, 192)
    assert torch.equal(small.pos_embed[:, 0], sd["pos_embed"][:, 0])
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "resnet.pth")
    with pytest.raises(PatchcryptError, match="not a timm Vision Transformer"):
        create_model("vit_tiny_patch16_224", pretrained=tmp_path / "resnet.pth")
