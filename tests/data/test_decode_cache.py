"""The decode cache never serves a stale tree (issue 19, item 8) and refuses cache folders it cannot trust."""

import os
from pathlib import Path

import numpy as np
import pytest

from patchcrypt.codec import read_image, write_image
from patchcrypt.data import load_dataset
from patchcrypt.errors import PatchcryptError


def make_tree(root: Path) -> Path:
    """cat/0000..0004 and dog/0000..0004, 8x8, every file a different image, all with one mtime."""
    rng = np.random.default_rng(7)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(5):
            path = root / cls / f"{i:04d}.png"
            write_image(path, rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
            os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    return root


def check_against_files(ds, root):
    for img, label, rel in zip(ds.images, ds.labels, ds.files):
        assert ds.classes[label] == rel.split("/")[0], rel
        assert np.array_equal(img, read_image(root / rel)), rel


def test_moving_a_file_to_another_class_is_seen(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHCRYPT_CACHE", str(tmp_path / "cache"))
    root = make_tree(tmp_path / "tree")
    first = load_dataset(root)
    assert list(np.bincount(first.labels)) == [5, 5]
    # count, total size, newest mtime and first/last names all stay the same
    os.replace(root / "cat" / "0002.png", root / "dog" / "0002b.png")
    again = load_dataset(root)
    assert list(np.bincount(again.labels)) == [4, 6]
    check_against_files(again, root)
    assert np.array_equal(again.images, load_dataset(root, cache=False).images)


def test_swapping_two_files_of_one_size_is_seen(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHCRYPT_CACHE", str(tmp_path / "cache"))
    root = make_tree(tmp_path / "tree")
    load_dataset(root)
    a, b = root / "cat" / "0001.png", root / "dog" / "0003.png"
    st = a.stat()
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    for p in (a, b):  # even with the old mtimes restored, a changed size list or mtime_ns shows
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    check_against_files(load_dataset(root), root)


def test_cache_root_that_is_a_symlink_is_refused(tmp_path, monkeypatch):
    real = tmp_path / "elsewhere"
    real.mkdir()
    link = tmp_path / "cache"
    link.symlink_to(real, target_is_directory=True)
    monkeypatch.setenv("PATCHCRYPT_CACHE", str(link))
    root = make_tree(tmp_path / "tree")
    with pytest.raises(PatchcryptError, match="is a symbolic link; refused") as err:
        load_dataset(root)
    assert "\n" not in str(err.value)
    assert not any(real.rglob("*")), "nothing may be written through the link"
    assert load_dataset(root, cache=False).images.shape == (10, 8, 8, 3)


def test_cache_trees_folder_that_is_a_symlink_is_refused(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    (tmp_path / "elsewhere").mkdir()
    (cache / "trees").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    monkeypatch.setenv("PATCHCRYPT_CACHE", str(cache))
    with pytest.raises(PatchcryptError, match="trees: the decode cache folder is a symbolic link"):
        load_dataset(make_tree(tmp_path / "tree"))


def test_cache_root_of_another_user_is_refused(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("PATCHCRYPT_CACHE", str(cache))
    monkeypatch.setattr(os, "getuid", lambda: cache.stat().st_uid + 1)
    with pytest.raises(PatchcryptError, match="belongs to another user"):
        load_dataset(make_tree(tmp_path / "tree"))


# -- issue 27, item 10: say so, and let it be turned off ----------------------------------------------------
def test_cache_off_writes_nothing(tmp_path, monkeypatch):
    """PATCHCRYPT_CACHE=off: no file anywhere, neither in the home folder nor in a folder named "off"."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATCHCRYPT_CACHE", "off")
    monkeypatch.chdir(tmp_path)
    root = make_tree(tmp_path / "tree")
    before = sorted(tmp_path.rglob("*"))
    ds = load_dataset(root)
    check_against_files(ds, root)
    assert sorted(tmp_path.rglob("*")) == before


def test_notice_once_when_the_cache_folder_is_made(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    monkeypatch.setenv("PATCHCRYPT_CACHE", str(cache))
    root = make_tree(tmp_path / "tree")
    load_dataset(root)
    err = capsys.readouterr().err
    assert err.count("note: caching decoded plain images in") == 1, err
    assert str(cache / "trees") in err and "--no-cache or PATCHCRYPT_CACHE=off" in err
    assert "0.0 MB for this data set" in err  # 10 images of 8x8x3 bytes
    assert any((cache / "trees").iterdir())
    load_dataset(root)  # reuse: served from the cache
    load_dataset(root, mode="L")  # a new entry in the folder that now exists
    assert "note:" not in capsys.readouterr().err


def test_no_cache_option_on_every_command_that_loads_trees(tmp_path, monkeypatch, capsys):
    """``report --no-cache`` reads the run's data folder for its examples and writes no cache entry; train,
    evaluate, attack and demo take the option too."""
    from patchcrypt.cli import main

    cache = tmp_path / "cache"
    monkeypatch.setenv("PATCHCRYPT_CACHE", str(cache))  # restored after the test, whatever the CLI sets
    root = make_tree(tmp_path / "tree")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("epoch,train_loss\n1,2.0\n")
    (run / "config.yaml").write_text(f"data: {root}\nscheme: plain\n")
    out = tmp_path / "r.html"
    assert main(["report", str(run), "--data", str(root), "-o", str(out), "--no-cache"]) == 0
    assert "Examples (plain run" in out.read_text()  # the tree was read
    assert not cache.exists()
    assert "note: caching" not in capsys.readouterr().err
    for command in ("train", "evaluate", "attack", "demo"):
        assert main([command, "--help"]) == 0
        assert "--no-cache" in capsys.readouterr().out, command
