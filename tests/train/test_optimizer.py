"""Weight-decay groups come from the models' ``no_weight_decay()`` and stay what the name tests gave."""

import pytest

from patchcrypt.models import create_model, list_models
from patchcrypt.models.registry import model_entrypoint
from patchcrypt.train import TrainConfig, freeze_backbone, make_optimizer

SMALL = {"vit": dict(depth=2, embed_dim=32, num_heads=2), "convmixer": dict(depth=2, dim=16),
         "resnet": dict(width=8)}


def _small(name):
    return dict(next(v for k, v in SMALL.items() if name.startswith(k)), img_size=32, num_classes=5)


def _old_groups(model):
    """The trainer's rule before models declared no_weight_decay(): names tested for substrings."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [n for n, p in named if p.ndim > 1 and "pos_embed" not in n and "cls_token" not in n]
    return decay, [n for n, _ in named if n not in decay]


def _new_groups(model):
    names = {id(p): n for n, p in model.named_parameters()}
    groups = make_optimizer(model, TrainConfig(weight_decay=0.05)).param_groups
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    return [[names[id(p)] for p in g["params"]] for g in groups]


def _variants(name):
    yield {}
    if not name.startswith("resnet") and "_inv_" not in name:   # invariant ViTs have no per-position embedding
        yield {"embed": "blockwise"}


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("frozen", [False, True])
def test_parameter_groups_as_before(name, frozen):
    for extra in _variants(name):
        model = create_model(name, seed=0, **_small(name), **extra)
        if frozen:
            freeze_backbone(model)
        decay, no_decay = _old_groups(model)
        assert _new_groups(model) == [decay, no_decay], (name, extra)
        if name.startswith("vit") and not frozen:   # an invariant ViT has no position embedding
            assert ({"cls_token"} if "_inv_" in name else {"pos_embed", "cls_token"}) <= set(no_decay)


def test_block_size_from_data_is_a_model_attribute():
    flagged = [n for n in list_models() if getattr(model_entrypoint(n), "block_size_from_data", False)]
    assert flagged == [n for n in list_models() if n.startswith("resnet18_cifar_adapt")] == ["resnet18_cifar_adapt"]


def test_the_trainer_reads_no_weight_decay():
    model = create_model("convmixer_128_4_patch4_32", seed=0, **_small("convmixer_128_4_patch4_32"))
    model.no_weight_decay = lambda: {"head.weight"}
    decay, no_decay = _new_groups(model)
    assert "head.weight" in no_decay and "head.weight" not in decay
