"""Helpers the training tests share: a small copy of real CIFAR-10 and a tiny ViT configuration."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence, Tuple

from patchcrypt.train import TrainConfig

TINY = {"depth": 1, "embed_dim": 32, "num_heads": 2}  # a one-block ViT: seconds per epoch on a CPU


def copy_cifar(root: Path, shared_cifar: Path, classes: Sequence[str] = ("airplane", "frog", "truck"),
               counts: Sequence[Tuple[str, int]] = (("train", 24), ("test", 8))) -> Path:
    """``root/{train,test}/<class>/``: the first ``n`` images of each class of the CIFAR-10 tree."""
    for split, n in counts:
        for cls in classes:
            (root / split / cls).mkdir(parents=True)
            for f in sorted((shared_cifar / split / cls).glob("*.jpg"))[:n]:
                shutil.copy(f, root / split / cls / f.name)
    return root


def tiny_config(data, out, **kw) -> TrainConfig:
    """A TrainConfig for ``vit_pico_patch4_32`` at :data:`TINY` size (one epoch, batch 16); ``kw`` overrides."""
    base = dict(data=str(data), model="vit_pico_patch4_32", out=str(out), epochs=1, batch_size=16, lr=1e-3,
                model_kwargs=dict(TINY), seed=3)
    base.update(kw)
    return TrainConfig(**base)
