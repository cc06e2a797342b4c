"""The training step (patchcrypt.train.loop.train_step): augment, encrypt, forward, loss, backward, clip,
step, metrics in one function; gradient clipping is a line of it, not a hook hidden in the optimiser."""

from contextlib import nullcontext
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from patchcrypt.errors import PatchcryptError
from patchcrypt.models import create_model
from patchcrypt.train import TrainConfig, make_optimizer, make_scheduler
from patchcrypt.train.loop import train_step

X = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8))
Y = torch.tensor([0, 1, 2, 0])


def _tiny():
    return create_model("vit_pico_patch4_32", depth=1, embed_dim=32, num_heads=2, num_classes=3, seed=0)


def _setup(cfg, model, pipe=lambda t: t):
    """The parts of a run's Setup the step reads, on the CPU."""
    return SimpleNamespace(cfg=cfg, ddp_model=model, augment="none", pipe=pipe, device=torch.device("cpu"),
                           autocast=nullcontext)


def _grad_norm(model) -> float:
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad)
                                                      for p in model.parameters() if p.grad is not None])))


def test_clip_grad_clips_in_the_training_step_not_in_the_optimiser():
    """--clip-grad is a line of the training step (between backward and step); the optimiser steps as given."""
    cfg = TrainConfig(clip_grad=1e-3, lr=1e-3, epochs=1)
    model = _tiny()
    opt = make_optimizer(model, cfg)
    for p in model.parameters():
        p.grad = torch.full_like(p, 10.0)
    opt.step()
    assert all(float(p.grad.max()) == 10.0 for p in model.parameters())  # no hidden clipping
    norms = []
    for clip in (1e-3, None):
        cfg.clip_grad = clip
        model = _tiny()
        opt = make_optimizer(model, cfg)
        loss, correct = train_step(_setup(cfg, model), opt, make_scheduler(opt, cfg, 1), X, Y, torch.Generator(),
                                   "step")
        assert isinstance(loss, float) and 0 <= int(correct) <= 4
        norms.append(_grad_norm(model))
    assert abs(norms[0] - 1e-3) < 1e-6 and norms[1] > 1e-2


def test_a_diverged_loss_is_refused_before_its_step_is_taken():
    cfg = TrainConfig(lr=1e-3, epochs=1)
    model = _tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = make_optimizer(model, cfg)
    poisoned = _setup(cfg, model, pipe=lambda t: t.float() * float("nan"))
    with pytest.raises(PatchcryptError, match="epoch 1/1: loss became nan"):
        train_step(poisoned, opt, make_scheduler(opt, cfg, 1), X, Y, torch.Generator(), "epoch 1/1")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    loss, _ = train_step(poisoned, opt, make_scheduler(opt, cfg, 1), X, Y, torch.Generator())  # on the device:
    assert isinstance(loss, torch.Tensor)  # read later, by the epoch (every 32 steps on an accelerator)
