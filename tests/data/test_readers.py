import gzip
import pickle
import shutil
import struct

import numpy as np
import pytest

from patchcrypt.codec import read_image
from patchcrypt.data import ImageSet, digits_dataset, load_dataset, sample_photos
from patchcrypt.errors import PatchcryptError


@pytest.fixture
def small_tree(tmp_path, shared_cifar):
    """An ImageFolder of 3 real CIFAR classes x 4 images."""
    root = tmp_path / "tree"
    for cls in ("cat", "dog", "ship"):
        (root / cls).mkdir(parents=True)
        for f in sorted((shared_cifar / "test" / cls).glob("*.jpg"))[:4]:
            shutil.copy(f, root / cls / f.name)
    return root


def test_image_folder_tree(small_tree, tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHCRYPT_CACHE", str(tmp_path / "cache"))
    ds = load_dataset(small_tree)
    assert ds.classes == ["cat", "dog", "ship"] and ds.images.shape == (12, 32, 32, 3)
    assert list(np.bincount(ds.labels)) == [4, 4, 4]
    assert np.array_equal(ds.images[0], read_image(small_tree / ds.files[0]))
    again = load_dataset(small_tree)  # from the cache: same arrays
    assert np.array_equal(again.images, ds.images) and again.files == ds.files


def test_split_required_and_picked(shared_cifar):
    with pytest.raises(PatchcryptError, match="choose a split"):
        load_dataset(shared_cifar)
    ds = load_dataset(shared_cifar, split="test", subset=50)
    assert len(ds) == 50 and len(ds.classes) == 10


def test_cifar_second_load_is_fast(shared_cifar, monkeypatch):
    """The second load is a file read: it decodes no image (checked by a decoder that fails, not a clock)."""
    from patchcrypt.data import readers

    first = load_dataset(shared_cifar, split="test")  # builds the cache if needed

    def no_decoding(*args, **kwargs):
        raise AssertionError("the second load decoded the tree again instead of reading the cache")

    monkeypatch.setattr(readers, "_decode_all", no_decoding)
    ds = load_dataset(shared_cifar, split="test")
    n_files = sum(1 for _ in (shared_cifar / "test").glob("*/*.jpg"))  # 10,000 in ../shared
    assert len(ds) == n_files and np.array_equal(ds.images, first.images)


def test_cifar_python_batches(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    imgs = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    data = imgs.transpose(0, 3, 1, 2).reshape(5, -1)
    with open(d / "test_batch", "wb") as f:
        pickle.dump({b"data": data, b"labels": [0, 1, 2, 1, 0]}, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"a", b"b", b"c"]}, f)
    ds = load_dataset(tmp_path, split="test")
    assert np.array_equal(ds.images, imgs) and list(ds.labels) == [0, 1, 2, 1, 0] and ds.classes == ["a", "b", "c"]


def _idx(path, arr, gz):
    raw = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    (gzip.open if gz else open)(path, "wb").write(raw)


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_idx(tmp_path, gz):
    imgs = np.arange(3 * 28 * 28, dtype=np.uint64).astype(np.uint8).reshape(3, 28, 28)
    sfx = ".gz" if gz else ""
    _idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", imgs, gz)
    _idx(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", np.array([9, 0, 3], np.uint8), gz)
    ds = load_dataset(tmp_path, split="test")
    assert ds.images.shape == (3, 28, 28, 1) and np.array_equal(ds.images[..., 0], imgs)
    assert list(ds.labels) == [9, 0, 3] and ds.classes[9] == "Ankle boot"


def test_single_image_and_errors(small_tree, tmp_path):
    one = next((small_tree / "cat").iterdir())
    ds = load_dataset(one)
    assert len(ds) == 1 and ds.labels[0] == -1
    with pytest.raises(PatchcryptError, match="no such"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PatchcryptError, match="no images"):
        load_dataset(tmp_path / "empty")
    one_class = tmp_path / "one" / "cat"
    one_class.mkdir(parents=True)
    shutil.copy(one, one_class / "a.jpg")
    with pytest.raises(PatchcryptError, match="at least 2"):
        load_dataset(tmp_path / "one", min_classes=2)
    (one_class / "b.jpg").write_bytes(b"not an image")
    with pytest.raises(PatchcryptError, match="b.jpg"):
        load_dataset(tmp_path / "one", cache=False)


def test_subset_is_balanced_and_deterministic():
    labels = np.repeat(np.arange(4), 25)
    ds = ImageSet(np.zeros((100, 4, 4, 3), np.uint8), labels, list("abcd"))
    a, b = ds.subset(20, seed=1), ds.subset(20, seed=1)
    assert np.array_equal(a.labels, b.labels) and list(np.bincount(a.labels)) == [5, 5, 5, 5]


def test_bundled_samples():
    photos = sample_photos(64)
    assert photos.ndim == 4 and photos.shape[1:] == (64, 64, 3) and len(photos) >= 3
    train, test = digits_dataset()
    assert train.shape == (32, 32, 3) and len(train) + len(test) == 1797
    assert set(np.unique(test.labels)) == set(range(10))


def test_decode_cache_is_private(tmp_path, monkeypatch):
    """The cache holds plain images: files 0600, folders 0700, whatever the umask; older copies are dropped."""
    import os
    import stat

    from patchcrypt.codec import write_image

    rng = np.random.default_rng(1)
    root = tmp_path / "photos"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            write_image(root / cls / f"{i}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    cache = tmp_path / "cache"
    monkeypatch.setenv("PATCHCRYPT_CACHE", str(cache))
    old = os.umask(0o002)  # a permissive umask must not widen the cache
    try:
        ds = load_dataset(root)
    finally:
        os.umask(old)
    files = [p for p in cache.rglob("*") if p.is_file()]
    assert files, "nothing was cached"
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, (p, oct(p.stat().st_mode))
    for d in [cache, *(p for p in cache.rglob("*") if p.is_dir())]:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, (d, oct(d.stat().st_mode))
    assert np.array_equal(load_dataset(root).images, ds.images)  # read back from the cache
