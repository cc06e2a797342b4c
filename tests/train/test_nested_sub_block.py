"""A run of a nested scheme encrypts at its model's sub-block size m (``train.inputs.scheme_options``)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from patchcrypt import Key
from patchcrypt.models import create_model
from patchcrypt.train import TrainConfig
from patchcrypt.train.inputs import resolve_encryption, scheme_options


def _run(tmp_path, scheme: str, m: int):
    key = tmp_path / "owner.key"
    Key.generate().save(key)
    cfg = TrainConfig(data=str(tmp_path), scheme=scheme, key=str(key), block_size=8, per_image=True,
                      model="vit_pico_inv_nested_patch8_32", model_kwargs={"sub_block": m})
    pipeline, record, _ = resolve_encryption(cfg, SimpleNamespace(manifest=None))
    return pipeline, record, Key.load(key)


@pytest.mark.parametrize("m", [2, 8])
def test_the_cipher_and_the_record_take_the_model_sub_block(tmp_path, m):
    pipeline, record, key = _run(tmp_path, "etc-nested", m)
    assert pipeline.encrypt.cipher.sub_block == m
    assert record.options == {"sub_block": m}
    assert record.cipher(key).sub_block == m          # the record rebuilds the same cipher


def test_only_schemes_with_sub_blocks_take_it():
    assert scheme_options("etc-nested", {"sub_block": 2}) == {"sub_block": 2}
    assert scheme_options("patch-shuffle-mix", {"sub_block": 2}) == {"sub_block": 2}
    assert scheme_options("patch-shuffle", {"sub_block": 2}) == {}    # patches only: no sub-block level
    assert scheme_options("etc", {"sub_block": 2}) == {}
    assert scheme_options("etc-nested", {}) == {}                     # the cipher's own default


def test_one_sub_block_per_patch_is_learned_exactly(tmp_path):
    """m = M = 8: the run's ciphertexts give the nested model exactly the plain image's logits (with the cipher's
    default m = 4 they would not: the model does not see inside a patch's order)."""
    pipeline, _, _ = _run(tmp_path, "etc-nested", 8)
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8))
    model = create_model("vit_pico_inv_nested_patch8_32", seed=0, sub_block=8).eval()
    with torch.no_grad():
        assert (model(pipeline(x).float()) - model(x.float())).abs().max() < 1e-4
