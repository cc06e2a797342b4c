"""The CIFAR-shaped fixture: generated on a fresh clone, and an error (not a skip) where CI expects ../shared."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import CIFAR_CLASSES, REPO, make_cifar_like_tree


def test_generated_tree_has_the_cifar_layout(tmp_path):
    from patchcrypt.data import load_dataset

    root = make_cifar_like_tree(tmp_path / "c", counts={"train": 2, "test": 3})
    ds = load_dataset(root, split="test")
    assert ds.classes == sorted(CIFAR_CLASSES) and ds.images.shape == (30, 32, 32, 3)
    assert len({im.tobytes() for im in ds.images}) == 30  # distinct crops, not one image repeated
    again = make_cifar_like_tree(tmp_path / "d", counts={"train": 2, "test": 3})
    assert all((again / f.relative_to(root)).read_bytes() == f.read_bytes() for f in root.rglob("*.jpg"))
    assert np.ptp(ds.images) > 100  # real photo content, not flat


def _pytest(env_extra, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **env_extra}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_missing_shared_falls_back_or_fails_but_never_skips():
    test = "tests/data/test_readers.py::test_split_required_and_picked"
    ran = _pytest({"PATCHCRYPT_SHARED": "/nonexistent", "PATCHCRYPT_REQUIRE_SHARED": "0"}, test)
    assert ran.returncode == 0 and "1 passed" in ran.stdout and "skipped" not in ran.stdout, ran.stdout
    required = _pytest({"PATCHCRYPT_SHARED": "/nonexistent", "PATCHCRYPT_REQUIRE_SHARED": "1"}, test)
    assert required.returncode != 0, required.stdout
    assert "PATCHCRYPT_REQUIRE_SHARED" in required.stdout + required.stderr


@pytest.mark.slow
def test_ci_requires_the_shared_data_and_runs_make_test():
    ci = (REPO / ".ci" / "run").read_text()
    assert "PATCHCRYPT_REQUIRE_SHARED=1" in ci and "make test" in ci
