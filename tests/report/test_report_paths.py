"""A report names no folder of the machine it was made on (issue 27, item 9): run folders, results files and
data folders are named relative to the working directory or by their last component, in every note."""

import json
import re

import numpy as np
import pytest

from patchcrypt.cli import main
from patchcrypt.codec import encode_png, write_image


def _run(root, name, data):
    run = root / "runs" / name
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text("epoch,train_loss,test_acc\n1,2.0,0.5\n")
    (run / "config.yaml").write_text(f"data: {data}\nscheme: plain\n")
    return run


@pytest.fixture
def private(tmp_path, monkeypatch):
    """A home folder under tmp_path holding the photos, the runs and a results file; the working directory
    elsewhere; the default cache (~/.cache/patchcrypt) in use."""
    home = tmp_path / "home" / "someone"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("PATCHCRYPT_CACHE", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    rng = np.random.default_rng(0)
    mixed, good = home / "photos-mixed", home / "photos"
    for tree, sizes in ((mixed, (32, 16)), (good, (32, 32))):
        for c, s in zip("ab", sizes):
            (tree / c).mkdir(parents=True)
            write_image(tree / c / "0.png", rng.integers(0, 256, (s, s, 3), dtype=np.uint8))
    bench = home / "bench"
    bench.mkdir()
    (bench / "chart.png").write_bytes(encode_png(np.zeros((8, 8, 3), np.uint8)))
    (bench / "results.json").write_text(json.dumps({
        "kind": "compression", "command": f"benchmarks/compression.py --data {good}", "rows": [{"q": 90}],
        "figures": ["chart.png", str(good / "a" / "0.png")]}))
    runs = [_run(home, "mixed", mixed), _run(home, "linked-cache", good)]
    return tmp_path, home, runs, [mixed, good], bench


def _page(out, runs, data, *more):
    args = ["report", *map(str, runs), *map(str, more), "-o", str(out)] + [a for d in data for a in ("--data", str(d))]
    assert main(args) == 0
    return re.sub(r'base64,[^"]+', "", out.read_text())  # the text, not the embedded pictures' bytes


def test_no_absolute_path_on_the_page(private):
    """Every note that names a path: a data folder's load error, the cache folder refused, a figure skipped,
    the command of a results file, the source line under each heading."""
    tmp_path, home, runs, data, bench = private
    work = tmp_path / "work"
    page = _page(work / "a.html", runs, data, bench)
    (tmp_path / "elsewhere").mkdir()  # then the default cache folder a link, which the examples refuse
    (home / ".cache" / "patchcrypt").rename(tmp_path / "old-cache")
    (home / ".cache" / "patchcrypt").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    page += _page(work / "b.html", runs[1:], data)
    # the notes are there (the check is not vacuous), naming folders by their last component, home as ~
    assert "photos-mixed/b/0.png: image is 16x16, others are 32x32" in page
    assert "~/.cache/patchcrypt: the decode cache folder is a symbolic link" in page
    assert "figure 0.png skipped" in page and "--data ~/photos</code>" in page
    assert ">mixed</p>" in page and ">linked-cache</p>" in page and '"src">results.json ' in page
    for secret in (str(tmp_path), str(home), "someone"):
        assert secret not in page, secret
    assert sorted(p.name for p in work.iterdir()) == ["a.html", "b.html"]


def test_folders_inside_the_working_directory_are_named_relative_to_it(private, monkeypatch, capsys):
    tmp_path, home, runs, data, bench = private
    monkeypatch.chdir(home)
    out = tmp_path / "work" / "report.html"
    assert main(["report", str(runs[0]), "-o", str(out), "--data", str(data[0])]) == 0, capsys.readouterr().err
    page = out.read_text()
    assert ">runs/mixed</p>" in page and "examples: photos-mixed/b/0.png: image is 16x16" in page
    assert str(tmp_path) not in page
