"""Fixtures shared by the whole suite: repository paths, real images, the shared CIFAR-10 tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CIFAR = SHARED / "datasets" / "cifar10-jpeg"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_cifar() -> Path:
    """Path of ../shared/datasets/cifar10-jpeg (with train/ and test/); skips when absent."""
    if not (CIFAR / "test").is_dir():
        pytest.skip(f"shared CIFAR-10 not found at {CIFAR}")
    return CIFAR


@pytest.fixture(scope="session")
def real_photo() -> np.ndarray:
    """A real 224×224 RGB photo (scikit-image's astronaut, cropped), uint8 (H, W, 3)."""
    from skimage import data
    return np.ascontiguousarray(data.astronaut()[:224, 100:324])


@pytest.fixture(scope="session")
def cifar_small(shared_cifar: Path):
    """40 real CIFAR-10 test images (4 per class): (images uint8 (40, 32, 32, 3), labels int64 (40,), classes)."""
    from PIL import Image
    classes = sorted(p.name for p in (shared_cifar / "test").iterdir() if p.is_dir())
    images, labels = [], []
    for ci, name in enumerate(classes):
        for f in sorted((shared_cifar / "test" / name).glob("*.jpg"))[:4]:
            with Image.open(f) as im:
                images.append(np.asarray(im.convert("RGB")))
            labels.append(ci)
    return np.stack(images), np.array(labels, dtype=np.int64), classes
