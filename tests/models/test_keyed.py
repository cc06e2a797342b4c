"""Keyed models: logits on encrypted images equal the plain model's on plain images; refusals; re-keying."""

import pytest
import torch

from patchcrypt import Key
from patchcrypt.ciphers import create_cipher
from patchcrypt.cli import main
from patchcrypt.errors import PatchcryptError
from patchcrypt.models import create_model, embed_matrix, load_checkpoint, build_model, save_checkpoint
from patchcrypt.models.keyed import block_maps, key_model, keyed_model_kwargs, model_size, rekey_model

NORMS = [((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)), ((0.5,), (0.5,)), ((0.1, 0.7, 0.3), (0.9, 0.2, 0.4))]
X = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def check_equivalence(name, scheme, key, norm, model_kw=None):
    mean, std = norm
    model = create_model(name, seed=3, mean=mean, std=std, **(model_kw or {})).eval()
    with torch.no_grad():
        ref = model(X)
    info = key_model(model, key, scheme, 4)
    with torch.no_grad():
        got = model(create_cipher(scheme, key, block_size=4).encrypt(X))
    assert float((got - ref).abs().max()) <= 1e-4
    assert torch.equal(got.argmax(1), ref.argmax(1))
    return info, model, ref


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("seed", [1, 2])
def test_vit_block_pixel_with_block_scrambling(norm, seed):
    key = Key.from_bytes(bytes([seed]) * 32)
    info, _, _ = check_equivalence("vit_pico_patch4_32", "block-pixel-cs", key, norm)
    assert info["mode"] == "shared" and info["added_parameters"] == 0


@pytest.mark.parametrize("scheme", ["step-ps", "step-bf", "step-cs-shared", "step-rf-shared"])
@pytest.mark.parametrize("norm", NORMS[:2])
def test_convmixer_in_block_steps(scheme, norm):
    info, _, _ = check_equivalence("convmixer_128_4_patch4_32", scheme, Key.generate(), norm, {"depth": 2})
    assert info["mode"] == "shared"


@pytest.mark.parametrize("norm", NORMS)
def test_vit_position_wise_etc(norm):
    """Per-block keys: the plain embedding stays, behind a gather; the key adds n·L indices, no parameters."""
    info, model, _ = check_equivalence("vit_pico_patch4_32", "etc", Key.generate(), norm)
    assert info["mode"] == "position-wise" and info["added_parameters"] == 0 and info["added_buffers"] == 64 * 48 + 1  # + flip_to
    assert model.embed == "keyed"


@pytest.mark.parametrize("scheme", ["pe", "step-ps-perblock"])
def test_vit_position_wise_other_schemes(scheme):
    info, model, _ = check_equivalence("vit_pico_patch4_32", scheme, Key.generate(), NORMS[2])
    assert info["mode"] == "position-wise" and model.embed == "keyed"


@pytest.mark.parametrize("scheme", ["step-rf", "step-np", "step-cs"])
def test_convmixer_per_block_steps(scheme):
    info, model, _ = check_equivalence("convmixer_128_4_patch4_32", scheme, Key.generate(), NORMS[1], {"depth": 2})
    assert info["mode"] == "position-wise" and model.embed == "keyed"


def test_centred_keyed_gather_is_exact():
    model = create_model("vit_pico_patch4_32", seed=5).eval()
    with torch.no_grad():
        ref = model(X)
    key = Key.generate()
    key_model(model, key, "etc", 4, centred=True)
    assert float(model.patch_embedding.flip_to) == 0.0
    with torch.no_grad():
        got = model(create_cipher("etc", key, block_size=4).encrypt(X))
    assert float((got - ref).abs().max()) <= 1e-4


def test_keyed_size_at_224_is_the_plain_size():
    """ViT-Ti at 224, M = 16, etc: one embedding per position made it 6.2× the plain model; now ≤ 1.1×."""
    model = create_model("vit_tiny_patch16_224", seed=0, num_classes=10).eval()
    plain_size = sum(model_size(model))
    x = torch.randint(0, 256, (1, 3, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x)
    key = Key.from_bytes(bytes(range(32)))
    key_model(model, key, "etc", 16)
    assert sum(model_size(model)) <= 1.1 * plain_size
    with torch.no_grad():
        got = model(create_cipher("etc", key, block_size=16).encrypt(x))
    assert float((got - ref).abs().max()) <= 1e-4


def test_rekey_position_wise_swaps_the_state_not_the_weights():
    key, other = Key.generate(), Key.generate()
    _, model, ref = check_equivalence("vit_pico_patch4_32", "etc", key, NORMS[0])
    weight = model.patch_embedding.weight.detach().clone()
    rekey_model(model, key, other, "etc", 4)
    assert model.embed == "keyed" and torch.equal(model.patch_embedding.weight, weight)
    with torch.no_grad():
        got = model(create_cipher("etc", other, block_size=4).encrypt(X))
    assert float((got - ref).abs().max()) <= 1e-4


def test_old_position_wise_checkpoint_loads_and_rekeys_compact(tmp_path):
    """A keyed model saved with one embedding per position (the earlier format) loads and classifies as
    saved; re-keying it gives the compact form."""
    key, other = Key.generate(), Key.generate()
    model = create_model("vit_pico_patch4_32", seed=2).eval()
    with torch.no_grad():
        ref = model(X)
    model.to_blockwise()  # the earlier keying: per-position copies, each transformed
    key_model(model, key, "etc", 4)
    assert model.embed == "blockwise"
    path = save_checkpoint(tmp_path / "old.pt", model, model_name="vit_pico_patch4_32",
                           model_kwargs=keyed_model_kwargs({}, model), classes=[str(i) for i in range(10)])
    loaded = build_model(load_checkpoint(path))
    with torch.no_grad():
        assert float((loaded(create_cipher("etc", key, block_size=4).encrypt(X)) - ref).abs().max()) <= 1e-4
    rekey_model(loaded, key, other, "etc", 4)
    assert loaded.embed == "keyed"
    with torch.no_grad():
        assert float((loaded(create_cipher("etc", other, block_size=4).encrypt(X)) - ref).abs().max()) <= 1e-4


def test_keyed_embedding_reads_as_position_wise_maps():
    """What a position-wise embedding would store (the weights attack reads this) equals the gather's maps."""
    key = Key.generate()
    a = create_model("vit_pico_patch4_32", seed=4).eval()
    b = create_model("vit_pico_patch4_32", seed=4).eval().to_blockwise()
    key_model(a, key, "etc", 4)
    key_model(b, key, "etc", 4)
    wa, ba = embed_matrix(a.patch_embedding)
    wb, bb = embed_matrix(b.patch_embedding)
    assert float((wa - wb).abs().max()) <= 1e-6 and float((ba - bb).abs().max()) <= 1e-4
    c = create_model("vit_pico_patch4_32", seed=4).eval()
    key_model(c, key, "etc", 4)
    c.to_blockwise()
    with torch.no_grad():
        enc = create_cipher("etc", key, block_size=4).encrypt(X)
        assert float((c(enc) - a(enc)).abs().max()) <= 1e-4


def test_wrong_key_gives_other_logits_and_rekey_restores():
    key, other = Key.generate(), Key.generate()
    _, model, ref = check_equivalence("vit_pico_patch4_32", "block-pixel", key, NORMS[0])
    with torch.no_grad():
        wrong = model(create_cipher("block-pixel", other, block_size=4).encrypt(X))
    assert float((wrong - ref).abs().max()) > 0.05
    rekey_model(model, key, other, "block-pixel", 4)
    with torch.no_grad():
        assert float((model(create_cipher("block-pixel", other, block_size=4).encrypt(X)) - ref).abs().max()) <= 1e-4


def test_refusals():
    key = Key.generate()
    with pytest.raises(PatchcryptError, match="ConvMixer"):
        key_model(create_model("convmixer_128_4_patch4_32", depth=1), key, "block-pixel", 4)
    with pytest.raises(PatchcryptError, match="per-image"):
        block_maps("block-pixel", key, 4, 32, per_image=True)
    with pytest.raises(PatchcryptError, match="patch size"):
        key_model(create_model("vit_pico_patch4_32"), key, "block-pixel", 8)
    with pytest.raises(PatchcryptError, match="not an isotropic"):
        key_model(create_model("resnet18_cifar", width=8), key, "block-pixel", 4)
    for scheme in ("le", "ele"):
        with pytest.raises(PatchcryptError, match="4-bit"):
            key_model(create_model("vit_pico_patch4_32"), key, scheme, 4)


def test_keyed_model_cli(tmp_path, capsys):
    model = create_model("vit_pico_patch4_32", seed=0).eval()
    plain = save_checkpoint(tmp_path / "plain.pt", model, model_name="vit_pico_patch4_32", model_kwargs={},
                            classes=[str(i) for i in range(10)])
    k1, k2 = tmp_path / "k1.key", tmp_path / "k2.key"
    Key.generate().save(k1)
    Key.generate().save(k2)
    out = tmp_path / "keyed.pt"
    assert main(["keyed-model", str(plain), "--key", str(k1), "--scheme", "etc", "--block-size", "4",
                 "-o", str(out)]) == 0
    keyed = load_checkpoint(out)
    assert keyed["scheme"] == "etc" and keyed["key_fingerprint"] == Key.load(k1).fingerprint
    assert keyed["keyed"]["mode"] == "position-wise"
    secret = Key.load(k1)._bytes
    assert secret not in out.read_bytes()
    x = X.permute(0, 2, 3, 1).numpy()
    with torch.no_grad():
        ref = model(X)
        got = build_model(keyed)(torch.from_numpy(create_cipher("etc", Key.load(k1), block_size=4).encrypt(x))
                                 .permute(0, 3, 1, 2))
    assert float((got - ref).abs().max()) <= 1e-4
    # re-key without the plain model
    out2 = tmp_path / "rekeyed.pt"
    assert main(["keyed-model", str(out), "--key", str(k1), "--rekey", str(k2), "-o", str(out2)]) == 0
    with torch.no_grad():
        got2 = build_model(load_checkpoint(out2))(
            torch.from_numpy(create_cipher("etc", Key.load(k2), block_size=4).encrypt(x)).permute(0, 3, 1, 2))
    assert float((got2 - ref).abs().max()) <= 1e-4
    capsys.readouterr()
    # bad input: already keyed, wrong old key for --rekey, unsupported scheme, corrupt checkpoint
    for args, match in (([str(out), "--key", str(k1), "--scheme", "etc", "--block-size", "4"], "already keyed"),
                        ([str(out), "--key", str(k2), "--rekey", str(k1)], "old key"),
                        ([str(plain), "--key", str(k1), "--scheme", "le", "--block-size", "4"], "4-bit"),
                        ([str(tmp_path / "k1.key"), "--key", str(k1), "--scheme", "etc", "--block-size", "4"],
                         "checkpoint")):
        target = tmp_path / "never.pt"
        assert main(["keyed-model", *args, "-o", str(target)]) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and match in err[0], err
        assert not target.exists()
