"""Splits and subsets are pure functions of the labels and a seed (patchcrypt.data.split), stated once for
images in RAM and files on disk. The pinned positions are what the trainer has always picked: a change
here would move images between a user's train, validation and test splits."""

import numpy as np
import pytest

from patchcrypt.data import ImageSet
from patchcrypt.data.split import hold_out, split_test_mask, subset_positions
from patchcrypt.data.stream import FileSet
from patchcrypt.errors import PatchcryptError

# four classes, one of them with a single image
LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 0, 0, 2, 1, 1, 0, 2, 0, 3, 2, 1, 0, 0], dtype=np.int64)


def test_the_test_split_is_the_seeded_stratified_tenth():
    assert np.flatnonzero(split_test_mask(LABELS, 3)).tolist() == [8, 19, 21, 23]


def test_the_held_out_share_skips_a_class_of_one():
    mask = hold_out(LABELS, 0.25, 3)
    assert np.flatnonzero(mask).tolist() == [5, 8, 10, 15, 22, 23]
    assert not mask[LABELS == 3].any()


def test_subset_positions_are_balanced_and_pinned():
    picked = subset_positions(LABELS, 7, 3)
    assert picked.tolist() == [1, 12, 13, 15, 17, 19, 23]
    assert subset_positions(LABELS, None).tolist() == list(range(len(LABELS)))
    assert set(subset_positions(LABELS, 3, 3).tolist()) <= set(picked.tolist())  # a prefix of a larger subset
    with pytest.raises(PatchcryptError, match="positive"):
        subset_positions(LABELS, 0)


def test_images_in_ram_and_files_on_disk_pick_the_same_subset():
    n = len(LABELS)
    images = ImageSet(np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1), LABELS, ["a", "b", "c", "d"])
    files = FileSet(root=".", files=[f"{i}.png" for i in range(n)], labels=LABELS, classes=["a", "b", "c", "d"])
    in_ram = images.subset(7, 3).images.ravel().tolist()
    on_disk = [int(f.split(".")[0]) for f in files.subset(7, 3).files]
    assert in_ram == on_disk == [1, 12, 13, 15, 17, 19, 23]
