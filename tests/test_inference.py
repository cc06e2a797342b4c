"""The inference helpers shared by train, evaluate and serve."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from patchcrypt.inference import predict, predict_logits, predict_proba, to_tensor
from patchcrypt.models import create_model


def _model_and_images():
    model = create_model("vit_pico_patch4_32", seed=0, num_classes=3, img_size=8)
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    return model, images


def test_predict_agrees_with_predict_logits_and_proba():
    model, images = _model_and_images()
    cpu = torch.device("cpu")
    x = to_tensor(images)
    assert x.shape == (5, 3, 8, 8) and x.dtype == torch.uint8 and x.is_contiguous()
    logits = predict_logits(model, x, cpu, batch_size=2)     # batched: 2 + 2 + 1
    assert logits.shape == (5, 3) and logits.dtype == torch.float32
    np.testing.assert_allclose(predict(model, images, device="cpu"), logits.numpy(), rtol=1e-5, atol=1e-5)
    probs = predict_proba(model.eval(), images, cpu)
    np.testing.assert_allclose(probs, torch.softmax(logits, 1).numpy(), rtol=1e-5, atol=1e-6)
    assert predict_logits(model, x[:0], cpu).numel() == 0


@pytest.mark.slow
def test_evaluate_and_serve_do_not_import_the_trainer():
    code = ("import sys, numpy as np, patchcrypt.evaluate as ev, patchcrypt.serve.app; "
            "from patchcrypt.models import create_model; "
            "ev.predict(create_model('vit_pico_patch4_32', img_size=8), np.zeros((1, 8, 8, 3), np.uint8), "
            "device='cpu'); "
            "assert 'patchcrypt.train' not in sys.modules, 'trainer imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
