"""The methods every model of the zoo has, as timm's: ``forward_features``, ``forward_head``,
``get_classifier``, ``reset_classifier``, with ``forward = forward_head ∘ forward_features``; and the one
block-wise network behind the adaptation network and the learned attacks' generator."""

import pytest
import torch
import torch.nn as nn

from patchcrypt.attacks.learned import BlockGenerator
from patchcrypt.errors import PatchcryptError
from patchcrypt.models import create_model, list_models
from patchcrypt.models.layers import BlockAdaptation, check_block_size
from patchcrypt.train.finetune import freeze_backbone

from test_models import small_kwargs


@pytest.mark.parametrize("name", list_models())
def test_every_model_keeps_the_classifier_contract(name):
    model = create_model(name, seed=0, **small_kwargs(name)).eval()
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert torch.equal(model(x), model.forward_head(feats))
        assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features)
    head = model.get_classifier()
    assert isinstance(head, nn.Linear) and head.out_features == model.num_classes == 5
    model.reset_classifier(3)
    assert model.get_classifier() is not head and model(x).shape == (2, 3) and model.num_classes == 3
    model.reset_classifier(0)
    assert isinstance(model.get_classifier(), nn.Identity) and model(x).shape == (2, model.num_features)


def test_the_resnet_head_keeps_its_name_and_trains_alone_under_freeze():
    model = create_model("resnet18_cifar_adapt", seed=0, width=8, num_classes=5)
    assert model.get_classifier() is model.fc and "fc.weight" in model.state_dict()
    head = freeze_backbone(model)
    assert head is model.fc
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]


def test_a_model_without_a_head_is_refused_under_freeze():
    with pytest.raises(PatchcryptError, match="no head"):
        freeze_backbone(nn.Sequential(nn.Linear(2, 2)))


def test_the_generator_is_the_adaptation_network_wider():
    torch.manual_seed(0)
    adapt = BlockAdaptation(4, 3)
    torch.manual_seed(0)
    gen = BlockGenerator(4, 3, 3, width_factor=1)
    assert isinstance(gen, BlockAdaptation)
    assert {k: v.shape for k, v in adapt.state_dict().items()} == {k: v.shape for k, v in gen.state_dict().items()}
    assert all(torch.equal(v, gen.state_dict()[k]) for k, v in adapt.state_dict().items())
    x = torch.randint(0, 256, (2, 3, 16, 16)).float()
    assert adapt(x).shape == (2, 3, 16, 16)
    assert BlockGenerator(4, 3, 1, out_block=8)(x).shape == (2, 1, 32, 32)


def test_check_block_size_lives_with_the_other_geometry_checks():
    model = create_model("vit_pico_patch4_32")
    check_block_size(model, 4)
    check_block_size(model, None)
    with pytest.raises(PatchcryptError, match="patch size is 4 but the data's block size is 8"):
        check_block_size(model, 8)
