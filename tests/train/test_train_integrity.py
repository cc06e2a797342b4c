"""Training and evaluating on encrypted data trusts nothing the files say beyond their manifest.

- files moved between class folders, swapped or changed are refused by their digests (in memory and
  streamed, trees and shards), and so are files the manifest does not list;
- an encrypted image of another size than the data set's is an error naming it, never resized or cropped;
- a ``patchcrypt.json`` that is a folder, a FIFO or a link to a device is refused, never read as plain data;
- a config or checkpoint value of the wrong type is one line naming the option.

Each is one line on stderr and exit 2; images are 16x16, two classes, a few files.
"""

import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from patchcrypt.cli import main
from patchcrypt.codec import encode_png, write_image

TRAIN = ["--model", "vit_pico_patch4_32", "--epochs", "1", "--batch-size", "8", "--workers", "0"]


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plain")
    rng = np.random.default_rng(27)
    for split, n in (("train", 6), ("test", 2)):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                write_image(root / split / cls / f"{i}.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    return root


@pytest.fixture(scope="module")
def enc(plain, key_file, tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("enc") / "tree"
    assert main(["encrypt", str(plain), str(dst), "--key", str(key_file), "--scheme", "block-pixel",
                 "--block-size", "4"]) == 0
    return dst


@pytest.fixture(scope="module")
def enc_shards(plain, key_file, tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("enc") / "shards"
    assert main(["encrypt", str(plain), str(dst), "--key", str(key_file), "--scheme", "block-pixel",
                 "--block-size", "4", "--shard-size", "100"]) == 0
    return dst


def one_error(capsys, argv) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:"), (code, err)
    return err[0]


def train_error(capsys, data: Path, out: Path, *extra) -> str:
    err = one_error(capsys, ["train", "--data", data, "--out", out, *TRAIN, *extra])
    # streamed, a file is read (and refused) in the first epoch, after the run folder was started
    assert not (out / "last.pt").exists() if "--stream" in extra else not out.exists(), err
    return err


def redigest(tree: Path) -> None:
    """Bring the manifest's file digests up to date with the files (a hostile but consistent tree)."""
    manifest = json.loads((tree / "patchcrypt.json").read_text())
    for rel, meta in manifest["files"].items():
        meta["sha256"] = hashlib.sha256((tree / rel).read_bytes()).hexdigest()
    (tree / "patchcrypt.json").write_text(json.dumps(manifest))


# -- item 6: digests --------------------------------------------------------------------------------------
def _swapped_copy(enc, work, first: str, second: str):
    """A copy of the encrypted tree ``enc`` in ``work`` with the contents of two files swapped."""
    shutil.copytree(enc, work)
    a, b = work / first, work / second
    data_a = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(data_a)
    return work


@pytest.mark.parametrize("stream", ["--in-memory", "--stream"])
def test_files_swapped_between_classes_are_refused(enc, tmp_path, capsys, stream):
    work = _swapped_copy(enc, tmp_path / "work", "train/a/0.png", "train/b/0.png")
    err = train_error(capsys, work, tmp_path / "run", stream)
    assert "train/a/0.png" in err and "digest differs from the manifest" in err, err


@pytest.mark.parametrize("stream", ["--in-memory", "--stream"])
def test_a_file_moved_to_another_class_folder_is_not_in_the_manifest(enc, tmp_path, capsys, stream):
    work = tmp_path / "work"
    shutil.copytree(enc, work)
    (work / "train/a/0.png").rename(work / "train/b/9.png")
    err = train_error(capsys, work, tmp_path / "run", stream)
    assert "b/9.png" in err and "not in the manifest" in err, err


def test_evaluate_checks_the_digests_too(enc, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(enc), "--out", str(run), *TRAIN]) == 0
    capsys.readouterr()
    work = _swapped_copy(enc, tmp_path / "work", "test/a/1.png", "test/b/0.png")
    err = one_error(capsys, ["evaluate", run, "--data", work])
    assert "test/a/1.png" in err and "digest" in err, err


def test_a_swapped_shard_member_is_refused_by_its_digest(enc_shards, tmp_path, capsys):
    """Even when the shard's own digest was brought up to date, the member's recorded digest names it."""
    work = tmp_path / "work"
    shutil.copytree(enc_shards, work)
    shard = work / "train/shard-000000.tar"
    members = []
    with tarfile.open(shard) as tar:
        for m in tar.getmembers():
            members.append((m, tar.extractfile(m).read()))
    pngs = [i for i, (m, _) in enumerate(members) if m.name.endswith(".png")]
    members[pngs[0]], members[pngs[1]] = (members[pngs[0]][0], members[pngs[1]][1]), \
        (members[pngs[1]][0], members[pngs[0]][1])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for m, data in members:
            m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    shard.write_bytes(buf.getvalue())
    manifest = json.loads((work / "patchcrypt.json").read_text())
    for rec in manifest["shards"]:
        if rec["path"] == "train/shard-000000.tar":
            rec["bytes"], rec["sha256"] = shard.stat().st_size, hashlib.sha256(shard.read_bytes()).hexdigest()
    (work / "patchcrypt.json").write_text(json.dumps(manifest))
    err = train_error(capsys, work, tmp_path / "run")
    assert "shard-000000.tar" in err and "digest differs from the manifest" in err, err


# -- item 6: never resized --------------------------------------------------------------------------------
@pytest.mark.parametrize("stream", ["--in-memory", "--stream"])
@pytest.mark.parametrize("victim,side", [("train/a/3.png", 32), ("train/b/2.png", 8), ("train/a/0.png", 32)],
                         ids=["larger", "smaller", "the first"])
def test_an_encrypted_image_of_another_size_is_never_resized(enc, tmp_path, capsys, stream, victim, side):
    """The manifest's digests brought up to date, so only the size rule stands between the file and training
    (streamed, it was centre-crop-resized; the first file's size set the size of the whole run)."""
    work = tmp_path / "work"
    shutil.copytree(enc, work)
    write_image(work / victim, np.full((side, side, 3), 7, np.uint8))
    redigest(work)
    err = train_error(capsys, work, tmp_path / "run", stream)
    assert victim in err and f"{side}x{side}" in err and "never resized" in err, err


def test_an_encrypted_shard_sample_of_another_size_is_never_resized(enc_shards, tmp_path, capsys):
    work = tmp_path / "work"
    shutil.copytree(enc_shards, work)
    shard = work / "train/shard-000000.tar"
    big = encode_png(np.zeros((32, 32, 3), np.uint8))
    buf, swapped, pngs = io.BytesIO(), None, 0
    with tarfile.open(shard) as src, tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()
            if m.name.endswith(".json") and m.name.startswith(str(swapped)):
                swapped = json.loads(data)["path"]
            pngs = pngs + 1 if m.name.endswith(".png") else pngs
            if swapped is None and pngs == 3:  # the third sample, not the first (which sets nothing here)
                swapped, data = m.name.split(".")[0], big
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    shard.write_bytes(buf.getvalue())
    manifest = json.loads((work / "patchcrypt.json").read_text())
    manifest["files"][swapped]["sha256"] = hashlib.sha256(big).hexdigest()
    for rec in manifest["shards"]:
        if rec["path"] == "train/shard-000000.tar":
            rec["bytes"], rec["sha256"] = shard.stat().st_size, hashlib.sha256(shard.read_bytes()).hexdigest()
    (work / "patchcrypt.json").write_text(json.dumps(manifest))
    for stream in ("--stream", "--in-memory"):
        err = train_error(capsys, work, tmp_path / f"run{stream}", stream)
        assert swapped in err and "32x32" in err and "never resized" in err, err


# -- item 8: a manifest that is not a regular file; values of the wrong type ------------------------------
@pytest.mark.parametrize("kind", ["folder", "fifo", "link to a device", "dangling link"])
def test_a_manifest_that_is_not_a_regular_file_is_refused(enc, tmp_path, capsys, kind):
    if kind == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    work = tmp_path / "work"
    shutil.copytree(enc, work)
    manifest = work / "patchcrypt.json"
    manifest.unlink()
    {"folder": lambda: manifest.mkdir(), "fifo": lambda: os.mkfifo(manifest),
     "link to a device": lambda: manifest.symlink_to(os.devnull),
     "dangling link": lambda: manifest.symlink_to(tmp_path / "nowhere.json")}[kind]()
    for stream in ("--in-memory", "--stream"):
        err = train_error(capsys, work, tmp_path / "run", stream)
        assert "patchcrypt.json" in err, err


@pytest.mark.parametrize("line,option", [('img_size: "16"', "img_size"), ('epochs: "1"', "epochs"),
                                         ('lr: "x"', "lr"), ("model_kwargs: [1]", "model_kwargs"),
                                         ('model_kwargs: {img_size: "16"}', "img_size"),
                                         ('stream: "yes"', "stream")])
def test_a_config_value_of_the_wrong_type_is_named(enc, tmp_path, capsys, line, option):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(line + "\n")
    err = one_error(capsys, ["train", "--data", enc, "--out", tmp_path / "run", "--config", cfg])
    assert option in err and ("wrong type" in err or "not a number" in err), err
    assert "out of bounds" not in err and "TypeError" not in err, err


@pytest.mark.parametrize("extra", [{}, {"optimizer": {"x": 1}, "scheduler": {}},
                                   {"optimizer": {}, "scheduler": {}, "best_acc": "0.5"}],
                         ids=["no optimizer", "bad optimizer", "text best_acc"])
def test_a_damaged_checkpoint_to_resume_is_one_line(enc, tmp_path, capsys, extra):
    import torch

    run = tmp_path / "run"
    assert main(["train", "--data", str(enc), "--out", str(run), *TRAIN]) == 0
    capsys.readouterr()
    ckpt = torch.load(run / "last.pt", weights_only=True)
    ckpt["extra"] = extra
    torch.save(ckpt, run / "last.pt")
    err = one_error(capsys, ["train", "--data", enc, "--out", run, *TRAIN[:2], "--epochs", "2", *TRAIN[4:],
                             "--resume"])
    assert "last.pt" in err and "damaged checkpoint" in err, err
