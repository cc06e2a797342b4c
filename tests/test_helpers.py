"""Shared helpers: atomic_write, to_nchw, resize_image/as_display in codec."""

import os
import stat

import numpy as np
import pytest
import torch

from patchcrypt.atomic import atomic_write
from patchcrypt.codec import as_display, resize_image
from patchcrypt.runtime import to_nchw


def test_atomic_write_forms_and_mode(tmp_path):
    assert atomic_write(tmp_path / "a", b"x").read_bytes() == b"x"
    assert atomic_write(tmp_path / "b", "é").read_text(encoding="utf-8") == "é"
    atomic_write(tmp_path / "c", lambda f: f.write(b"yz"), mode=0o600)
    assert (tmp_path / "c").read_bytes() == b"yz"
    assert stat.S_IMODE(os.stat(tmp_path / "c").st_mode) == 0o600
    atomic_write(tmp_path / "a", b"new")
    assert (tmp_path / "a").read_bytes() == b"new"


def test_atomic_write_failure_leaves_old_file_and_no_temporary(tmp_path):
    target = atomic_write(tmp_path / "t", b"old")

    def boom(f):
        f.write(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]


def test_to_nchw_numpy_and_torch():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.uint8).reshape(2, 3, 4, 5)
    t = to_nchw(x)
    assert t.shape == (2, 5, 3, 4) and t.dtype == torch.uint8 and t.is_contiguous()
    assert torch.equal(t, torch.from_numpy(x).permute(0, 3, 1, 2))
    assert torch.equal(to_nchw(torch.from_numpy(x)), t)
    assert torch.equal(to_nchw(x[:, ::-1]), torch.from_numpy(x[:, ::-1].copy()).permute(0, 3, 1, 2))


def test_as_display_and_resize():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (8, 12, 1), dtype=np.uint8)
    shown = as_display(gray, (16, 24, 3))
    assert shown.shape == (16, 24, 3)
    assert np.array_equal(shown[::2, ::2], np.repeat(gray, 3, 2))  # nearest: every block stays sharp
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert as_display(rgb) is rgb and as_display(rgb, (8, 8, 3)) is rgb
    assert resize_image(rgb, (16, 4)).shape == (16, 4, 3)
    assert resize_image(gray, (4, 6)).shape == (4, 6, 1)
