"""WebDataset shards: encrypt --shard-size, the tar layout, decrypt bit for bit, training on shards, bad shards."""

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from patchcrypt.cli import main
from patchcrypt.codec import read_image, write_image
from patchcrypt.data.shards import open_shards

CLASSES = ("cat", "dog", "fox")


def make_tree(root: Path, per_class: int = 200, size: int = 32) -> Path:
    """``root/{train,test}/<class>/<n>.png``: crops of real photos, 5/6 of them train."""
    from patchcrypt.data.samples import sample_photos

    photos = sample_photos(96)
    rng = np.random.default_rng(3)
    for ci, cls in enumerate(CLASSES):
        for i in range(per_class):
            split = "test" if i % 6 == 0 else "train"
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            r, c = rng.integers(0, 96 - size, 2)
            write_image(root / split / cls / f"{i:04d}.png", np.ascontiguousarray(photos[ci][r:r + size, c:c + size]))
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("plain"))


@pytest.fixture(scope="module")
def shards(tree, key_file, tmp_path_factory):
    dst = tmp_path_factory.mktemp("enc") / "shards"
    assert main(["encrypt", str(tree), str(dst), "--key", str(key_file), "--scheme", "block-pixel",
                 "--block-size", "4", "--shard-size", "200"]) == 0
    return dst


def one_error(capsys, argv):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:"), (code, err)
    return err[0]


def test_shard_layout_and_manifest(shards):
    manifest = json.loads((shards / "patchcrypt.json").read_text())
    assert manifest["layout"] == "webdataset" and manifest["file_count"] == 600
    names = [s["path"] for s in manifest["shards"]]
    assert names == ["test/shard-000000.tar", "train/shard-000000.tar", "train/shard-000001.tar",
                     "train/shard-000002.tar"]
    assert sum(s["samples"] for s in manifest["shards"]) == 600
    for s in manifest["shards"]:
        data = (shards / s["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == s["sha256"] and len(data) == s["bytes"]
    # the WebDataset convention: members grouped by key (up to the first dot), consecutive, key.png/.cls/.json
    with tarfile.open(shards / "train/shard-000000.tar", "r|") as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar]
    assert len(members) == 3 * 200
    for k in range(0, len(members), 3):
        keys = {name.split(".", 1)[0] for name, _ in members[k:k + 3]}
        exts = [name.split(".", 1)[1] for name, _ in members[k:k + 3]]
        assert len(keys) == 1 and exts == ["png", "cls", "json"]
        meta = json.loads(members[k + 2][1])
        assert CLASSES[int(members[k + 1][1])] == meta["class"] and meta["path"].startswith("train/" + meta["class"])
        assert hashlib.sha256(members[k][1]).hexdigest() == manifest["files"][meta["path"]]["sha256"]


def test_webdataset_reads_the_shards(shards):
    wds = pytest.importorskip("webdataset")
    ds = wds.WebDataset([str(p) for p in sorted((shards / "train").glob("*.tar"))], shardshuffle=False)
    samples = list(ds)
    assert len(samples) == 498 and {"png", "cls", "json"} <= set(samples[0])


def test_decrypt_restores_the_plain_images_bit_for_bit(tree, shards, key_file, tmp_path):
    out = tmp_path / "dec"
    assert main(["decrypt", str(shards), str(out), "--key", str(key_file)]) == 0
    plain = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.png"))
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == plain
    for rel in plain[::37]:
        assert np.array_equal(read_image(tree / rel), read_image(out / rel)), rel


def test_train_on_shards_without_the_key_and_on_plain_shards_with_it(shards, tree, key_file, tmp_path):
    from patchcrypt.train import TrainConfig, train

    tiny = {"depth": 1, "embed_dim": 32, "num_heads": 2}
    base = dict(model="vit_pico_patch4_32", epochs=1, batch_size=32, model_kwargs=tiny, max_steps=3, workers=0)
    server = train(TrainConfig(data=str(shards), out=str(tmp_path / "server"), stream=True, **base))
    assert server["pre_encrypted"] and server["scheme"] == "block-pixel" and server["n_train"] == 498
    ram = train(TrainConfig(data=str(shards), out=str(tmp_path / "server-ram"), stream=False, **base))
    assert ram["best_test_acc"] == server["best_test_acc"]
    # a user's plain WebDataset shards: the owner encrypts on the fly
    plain = tmp_path / "plain-shards"
    for split in ("train", "test"):
        fs = open_shards(shards, split)
        (plain / split).mkdir(parents=True)
        with tarfile.open(plain / split / "000000.tar", "w") as tar:
            for i in range(len(fs)):
                for name, data in ((f"s{i:05d}.png", fs.read_bytes(i)), (f"s{i:05d}.cls", str(fs.labels[i]).encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    # and encrypt accepts them: into a tree (an ImageFolder) or into shards again; decrypt gives the members back
    for extra, name in (([], "from-shards-tree"), (["--shard-size", "100"], "from-shards-shards")):
        assert main(["encrypt", str(plain), str(tmp_path / name), "--key", str(key_file), "--scheme", "etc",
                     "--block-size", "4", *extra]) == 0
        assert main(["decrypt", str(tmp_path / name), str(tmp_path / f"{name}-dec"), "--key", str(key_file)]) == 0
        dec = sorted((tmp_path / f"{name}-dec").rglob("*.png"))
        assert len(dec) == 600 and dec[0].relative_to(tmp_path / f"{name}-dec").as_posix() == "test/0/s00000.png"
        first = open_shards(plain, "test")
        assert np.array_equal(read_image(dec[0]), first.decode(0))
    owner = train(TrainConfig(data=str(plain), out=str(tmp_path / "owner"), scheme="etc", key=str(key_file),
                              block_size=4, stream=True, **base))
    assert not owner["pre_encrypted"] and owner["scheme"] == "etc" and owner["n_train"] == 498


def test_bad_shards_are_named_and_nothing_is_written(shards, key_file, tmp_path, capsys):
    import shutil

    work = tmp_path / "work"
    shutil.copytree(shards, work)
    victim = work / "train" / "shard-000001.tar"
    original = victim.read_bytes()
    cases = {"truncated": original[:len(original) // 2], "foreign": (work / "train" / "shard-000002.tar").read_bytes(),
             "changed": original[:1000] + bytes([original[1000] ^ 1]) + original[1001:]}
    for what, data in cases.items():
        victim.write_bytes(data)
        out = tmp_path / f"dec-{what}"
        err = one_error(capsys, ["decrypt", work, out, "--key", key_file])
        assert "train/shard-000001.tar" in err and not out.exists(), (what, err)
        err = one_error(capsys, ["train", "--data", work, "--out", tmp_path / f"run-{what}", "--epochs", "1"])
        assert "shard-000001.tar" in err and not (tmp_path / f"run-{what}").exists(), (what, err)
    victim.write_bytes(b"not a tar at all" * 100)  # and with no manifest to check against: not a tar
    (work / "patchcrypt.json").unlink()
    err = one_error(capsys, ["train", "--data", work, "--out", tmp_path / "run-x", "--epochs", "1"])
    assert "shard-000001.tar" in err and "not a readable WebDataset shard" in err


def test_a_sample_of_another_size_than_the_manifest_is_refused_before_decoding(shards, key_file, tmp_path, capsys):
    """A hostile shard set whose digests were all updated still cannot slip in an image of another size: each
    sample's header is checked against the manifest's image shape before it is decoded."""
    import shutil

    work = tmp_path / "work"
    shutil.copytree(shards, work)
    victim = work / "train" / "shard-000000.tar"
    manifest = json.loads((work / "patchcrypt.json").read_text())
    big = io.BytesIO()
    from PIL import Image

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(big, format="PNG")
    out_tar = io.BytesIO()
    swapped, metas = None, {}
    with tarfile.open(victim) as src, tarfile.open(fileobj=out_tar, mode="w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name.endswith(".json"):
                metas[member.name[:-len(".json")]] = json.loads(data)
            if swapped is None and member.name.endswith(".png"):
                swapped, data = member.name[:-len(".png")], big.getvalue()
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    victim.write_bytes(out_tar.getvalue())
    rel = metas[swapped]["path"]
    manifest["files"][rel]["sha256"] = hashlib.sha256(big.getvalue()).hexdigest()
    for rec in manifest["shards"]:
        if rec["path"] == "train/shard-000000.tar":
            rec["bytes"], rec["sha256"] = victim.stat().st_size, hashlib.sha256(victim.read_bytes()).hexdigest()
    (work / "patchcrypt.json").write_text(json.dumps(manifest))
    out = tmp_path / "dec"
    err = one_error(capsys, ["decrypt", work, out, "--key", key_file])
    assert "64x64" in err and "manifest" in err and not out.exists(), err


@pytest.mark.parametrize("member,text", [("json", "[1, 2]"), ("json", '{"path": 7}'), ("cls", "1" + "0" * 23),
                                         ("cls", "-1")], ids=["json list", "json path", "cls 1e23", "cls -1"])
def test_hostile_shard_metadata_is_one_line(tmp_path, key_file, capsys, member, text):
    """Issue 27, item 5: a plain shard whose ``.json`` is a list or whose ``.cls`` is 10**23 ended in a raw
    AttributeError / OverflowError (exit 1) in encrypt and train; now one line naming the shard, exit 2."""
    from patchcrypt.codec import encode_png

    src = tmp_path / "src"
    src.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(3):
            members = {"png": encode_png(np.full((32, 32, 3), 40 * i, np.uint8)), "cls": str(i % 2).encode(),
                       "json": json.dumps({"path": f"c/{i}.png"}).encode()}
            if i == 1:
                members[member] = text.encode()
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{i:04d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    (src / "shard-000000.tar").write_bytes(buf.getvalue())
    err = one_error(capsys, ["encrypt", src, tmp_path / "enc", "--key", key_file, "--scheme", "block-pixel",
                             "--block-size", "4"])
    assert "shard-000000.tar" in err and not (tmp_path / "enc").exists(), err
    err = one_error(capsys, ["train", "--data", src, "--out", tmp_path / "run", "--epochs", "1"])
    assert "shard-000000.tar" in err and not (tmp_path / "run").exists(), err
