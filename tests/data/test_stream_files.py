"""FileSet / StreamDataset / make_loader, and the resize transforms they use."""

import pickle

import numpy as np
import pytest

from patchcrypt.codec import write_image
from patchcrypt.data.resize import centre_crop_resize, random_resized_crop, sample_rng
from patchcrypt.data.stream import FileSet, StreamDataset, make_loader, open_files, parse_bytes
from patchcrypt.errors import PatchcryptError
from patchcrypt.data import load_dataset


@pytest.fixture()
def tree(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(5):
            write_image(tmp_path / c / f"{i}.png", rng.integers(0, 256, (24 + 8 * i, 40, 3), dtype=np.uint8))
    return tmp_path


def test_open_files_lists_what_load_dataset_reads(shared_cifar):
    fs = open_files(shared_cifar, "test")
    ds = load_dataset(shared_cifar, "test")
    assert fs.files == ds.files and np.array_equal(fs.labels, ds.labels) and fs.classes == ds.classes
    sub = fs.subset(30, seed=2)
    assert sub.files == ds.subset(30, seed=2).files
    assert np.array_equal(fs.decode(7), ds.images[7])


def test_resize_transforms():
    img = np.random.default_rng(1).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    out = centre_crop_resize(img, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    same = np.zeros((32, 32, 3), np.uint8)
    assert centre_crop_resize(same, 32) is same  # already the size: untouched
    a = random_resized_crop(img, 16, sample_rng(3, 1, 5))
    b = random_resized_crop(img, 16, sample_rng(3, 1, 5))
    c = random_resized_crop(img, 16, sample_rng(3, 2, 5))
    assert a.shape == (16, 16, 3) and np.array_equal(a, b) and not np.array_equal(a, c)
    gray = random_resized_crop(img[:, :, :1].copy(), 16, sample_rng(0, 0, 0))
    assert gray.shape == (16, 16, 1)


def test_loader_batches_in_order_with_workers_and_pickles(tree):
    fs = open_files(tree)
    fs = FileSet(fs.root, fs.files, fs.labels, fs.classes, shape=(16, 16, 3))
    ds = StreamDataset(fs, random_crop=True)
    pickle.loads(pickle.dumps(ds))  # DataLoader workers need it
    batches = [[(3, 0, 1), (0, 0, 1)], [(9, 0, 1)]]
    got = list(make_loader(ds, batches, workers=1))
    again = list(make_loader(ds, batches, workers=0))
    assert [y.tolist() for _, y in got] == [[0, 0], [1]]
    assert all(x.shape[1:] == (3, 16, 16) for x, _ in got)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(got, again))  # same crops in a worker or not


def test_a_bad_file_in_a_worker_is_one_line(tree):
    (tree / "b" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
    fs = open_files(tree)
    fs = FileSet(fs.root, fs.files, fs.labels, fs.classes, shape=(16, 16, 3))
    with pytest.raises(PatchcryptError) as info:
        list(make_loader(StreamDataset(fs), [[0, 1], [6, 7]], workers=1))
    assert len(str(info.value).splitlines()) == 1 and "b/2.png" in str(info.value)


def test_parse_bytes():
    assert parse_bytes("1G") == 1 << 30 and parse_bytes("512M") == 512 << 20 and parse_bytes("1.5GiB") == 3 << 29
    assert parse_bytes("1000") == 1000
    with pytest.raises(PatchcryptError):
        parse_bytes("much")
