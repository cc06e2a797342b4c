"""Fixtures shared by the whole suite: repository paths, real images, a CIFAR-10-shaped tree.

``shared_cifar`` is ``../shared/datasets/cifar10-jpeg`` when that exists, else a small tree generated from
scikit-image's photos in the same layout, so every test runs on a fresh clone. Environment:

- ``PATCHCRYPT_SHARED=DIR`` looks for the data set under DIR instead of ``../shared`` (``/nonexistent``
  simulates a fresh clone);
- ``PATCHCRYPT_REQUIRE_SHARED=1`` (set by ``.ci/run``) makes a missing shared data set an error instead of
  a fallback, so a CI machine that should have it cannot pass on the small tree by accident.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PATCHCRYPT_SHARED") or REPO.parent / "shared")
CIFAR = SHARED / "datasets" / "cifar10-jpeg"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# per class and split in the generated tree: enough for every test that reads it (24 train images of a
# class, 10 test images of a class, a 50-image subset over all 10 classes)
GENERATED_COUNTS = {"train": 24, "test": 10}


def _require_shared() -> bool:
    return os.environ.get("PATCHCRYPT_REQUIRE_SHARED", "").strip() not in ("", "0")


def pytest_sessionstart(session) -> None:
    if _require_shared() and not (CIFAR / "test").is_dir():
        raise pytest.UsageError(f"PATCHCRYPT_REQUIRE_SHARED is set but the shared CIFAR-10 tree is missing: "
                                f"{CIFAR}")


def make_cifar_like_tree(root: Path, counts=GENERATED_COUNTS, size: int = 32) -> Path:
    """Write ``root/{train,test}/<class>/<n>.jpg``: 32×32 crops of scikit-image photos, JPEG Q75 4:2:0.

    Class k takes its crops from one photo (flipped for the second round of photos), so classes differ;
    crops are drawn with a fixed seed, so the tree is the same on every run.
    """
    from PIL import Image

    from patchcrypt.data.samples import sample_photos

    photos = sample_photos(192)
    rng = np.random.default_rng(20240611)
    for ci, cls in enumerate(CIFAR_CLASSES):
        photo = photos[ci % len(photos)]
        if ci >= len(photos):
            photo = photo[:, ::-1]
        for split, n in counts.items():
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                s = int(rng.integers(size, 3 * size + 1))  # crop side, resized to 32: varied scales
                r, c = rng.integers(0, photo.shape[0] - s + 1, 2)
                crop = Image.fromarray(np.ascontiguousarray(photo[r:r + s, c:c + s])).resize((size, size),
                                                                                          Image.BICUBIC)
                crop.save(d / f"{i:04d}.jpg", quality=75, subsampling=2)
    return root


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_cifar(tmp_path_factory) -> Path:
    """A CIFAR-10 JPEG tree with train/ and test/: ../shared's when present, else a generated one."""
    if (CIFAR / "test").is_dir():
        return CIFAR
    if _require_shared():  # pragma: no cover - pytest_sessionstart already refused
        pytest.fail(f"shared CIFAR-10 not found at {CIFAR}")
    return make_cifar_like_tree(tmp_path_factory.mktemp("cifar10-generated"))


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


@pytest.fixture(scope="session")
def key_file(tmp_path_factory) -> Path:
    """A fresh owner key file (mode 0600) shared by the tests that train or encrypt with one."""
    from patchcrypt import Key

    path = tmp_path_factory.mktemp("keys") / "owner.key"
    Key.generate().save(path)
    return path


@pytest.fixture
def key(tmp_path) -> Path:
    """A fresh owner key file in this test's own folder (the CLI tests' ``--key``)."""
    from patchcrypt import Key

    path = tmp_path / "owner.key"
    Key.generate().save(path)
    return path
