"""`patchcrypt encrypt` / `decrypt` on real CIFAR images, and every bad input of the foundation issue."""

import json
import os
import shutil

import numpy as np
import pytest

from patchcrypt import Key
from patchcrypt.codec import read_image, write_image
from patchcrypt.metrics import psnr

from cli_helpers import one_line_error, run


@pytest.fixture
def tree(tmp_path, shared_cifar):
    root = tmp_path / "plain"
    for cls in ("airplane", "cat"):
        (root / cls).mkdir(parents=True)
        for f in sorted((shared_cifar / "test" / cls).glob("*.jpg"))[:10]:
            shutil.copy(f, root / cls / f.name)
    return root


@pytest.mark.parametrize("scheme, m, fmt", [("block-pixel", 4, "png"), ("etc", 4, "png"), ("ele", 8, "png"),
                                           ("etc", 16, "jpeg"), ("etc-gray", 8, "png")])
def test_round_trip_tree(tree, key, tmp_path, capsys, scheme, m, fmt):
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    code, out, err = run(capsys, "encrypt", tree, enc, "--key", key, "--scheme", scheme, "--block-size", m,
                         "--format", fmt, "--resize", "32x32" if m != 16 else "64x64")
    assert code == 0, err
    manifest = json.loads((enc / "patchcrypt.json").read_text())
    raw_key = Key.load(key)
    assert manifest["scheme"] == scheme and manifest["block_size"] == m and manifest["file_count"] == 20
    assert manifest["key_fingerprint"] == raw_key.fingerprint
    import base64
    secret = raw_key._bytes
    text = (enc / "patchcrypt.json").read_text()
    assert secret.hex() not in text and base64.b64encode(secret).decode() not in text
    assert (enc / "cat").is_dir() and len(list((enc / "cat").iterdir())) == 10
    assert run(capsys, "decrypt", enc, dec, "--key", key)[0] == 0
    for f in sorted((tree / "cat").iterdir())[:3]:
        original = read_image(f)
        if m == 16:  # --resize: the rule train and evaluate use (short side to 64/0.875, centre crop)
            from patchcrypt.data.resize import centre_crop_resize
            original = centre_crop_resize(original, 64)
        back = read_image(dec / "cat" / (f.stem + ".png"))
        encrypted = read_image(enc / "cat" / (f.stem + (".jpg" if fmt == "jpeg" else ".png")))
        if fmt == "png" and scheme != "etc-gray":
            assert np.array_equal(back, original)          # lossless: exact
            assert not np.array_equal(encrypted, original)
        else:
            assert psnr(original, back) > 28                # JPEG / YCbCr 4:2:0: close, not exact


def test_single_file_per_image_and_pad(tmp_path, key, capsys, real_photo):
    src = tmp_path / "photo.png"
    write_image(src, real_photo[:200, :210])
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    assert run(capsys, "encrypt", src, enc, "--key", key, "--scheme", "etc", "--block-size", 16, "--pad",
               "--per-image")[0] == 0
    manifest = json.loads((enc / "patchcrypt.json").read_text())
    meta = manifest["files"]["photo.png"]
    assert len(bytes.fromhex(meta["nonce"])) >= 16 and meta["orig_shape"] == [200, 210]
    assert read_image(enc / "photo.png").shape == (208, 224, 3)
    assert run(capsys, "decrypt", enc, dec, "--key", key)[0] == 0
    assert np.array_equal(read_image(dec / "photo.png"), real_photo[:200, :210])


# -- bad input: one line on stderr, non-zero exit, destination untouched ------------------------------------
def encrypt_args(src, dst, key, scheme="block-pixel", m=4, *extra):
    return ["encrypt", src, dst, "--key", key, "--scheme", scheme, "--block-size", m, *extra]


def test_corrupt_truncated_and_non_image(tree, key, tmp_path, capsys):
    good = next((tree / "cat").iterdir())
    (tree / "cat" / "truncated.jpg").write_bytes(good.read_bytes()[:200])
    code, _, err = run(capsys, *encrypt_args(tree, tmp_path / "out", key))
    one_line_error(code, err, "truncated.jpg")
    assert not (tmp_path / "out").exists()
    (tree / "cat" / "truncated.jpg").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(100))
    code, _, err = run(capsys, *encrypt_args(tree, tmp_path / "out", key))
    one_line_error(code, err, "truncated.jpg")
    notimg = tmp_path / "notes.png"
    notimg.write_text("hello, not an image")
    code, _, err = run(capsys, *encrypt_args(notimg, tmp_path / "out2", key))
    one_line_error(code, err, "notes.png")
    assert not list(tmp_path.glob(".out*"))  # no staging folders left behind


def test_size_not_multiple_gray_into_colour_and_block_size(tmp_path, key, capsys, real_photo):
    odd = tmp_path / "odd.png"
    write_image(odd, real_photo[:30, :30])
    code, _, err = run(capsys, *encrypt_args(odd, tmp_path / "o1", key, "etc", 4))
    one_line_error(code, err, "not a multiple of the block size")
    gray = tmp_path / "gray.png"
    write_image(gray, real_photo[:32, :32, :1])
    code, _, err = run(capsys, *encrypt_args(gray, tmp_path / "o2", key, "etc", 4))
    one_line_error(code, err, "3 channel")
    code, _, err = run(capsys, *encrypt_args(odd, tmp_path / "o3", key, "etc-gray", 16))
    one_line_error(code, err, "block size 8")


def test_missing_malformed_and_wrong_key(tree, key, tmp_path, capsys):
    code, _, err = run(capsys, *encrypt_args(tree, tmp_path / "o", tmp_path / "nokey.key"))
    one_line_error(code, err, "nokey.key")
    bad = tmp_path / "bad.key"
    bad.write_text("{not json")
    os.chmod(bad, 0o600)
    code, _, err = run(capsys, *encrypt_args(tree, tmp_path / "o", bad))
    one_line_error(code, err, "bad.key")
    enc = tmp_path / "enc"
    assert run(capsys, *encrypt_args(tree, enc, key))[0] == 0
    other = tmp_path / "other.key"
    Key.generate().save(other)
    code, _, err = run(capsys, "decrypt", enc, tmp_path / "dec", "--key", other)
    one_line_error(code, err, "wrong key")
    code, _, err = run(capsys, "decrypt", enc, tmp_path / "dec", "--key", key, "--scheme", "etc")
    one_line_error(code, err, "wrong scheme")
    code, _, err = run(capsys, "decrypt", tree, tmp_path / "dec", "--key", key)
    one_line_error(code, err, "patchcrypt.json")
    assert not (tmp_path / "dec").exists()


def test_destination_inside_source_and_populated(tree, key, tmp_path, capsys):
    code, _, err = run(capsys, *encrypt_args(tree, tree / "enc", key))
    one_line_error(code, err, "inside the source")
    dst = tmp_path / "busy"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    code, _, err = run(capsys, *encrypt_args(tree, dst, key))
    one_line_error(code, err, "--force")
    assert (dst / "keep.txt").read_text() == "mine"
    # --force replaces only a previous patchcrypt output (one with its manifest), never other folders
    code, _, err = run(capsys, *encrypt_args(tree, dst, key, "block-pixel", 4, "--force"))
    one_line_error(code, err, "only replaces a previous patchcrypt output")
    assert (dst / "keep.txt").read_text() == "mine"
    previous = tmp_path / "previous"
    assert run(capsys, *encrypt_args(tree, previous, key))[0] == 0
    assert run(capsys, *encrypt_args(tree, previous, key, "block-pixel", 4, "--force"))[0] == 0
    assert (previous / "patchcrypt.json").is_file()
    # a file the manifest does not list makes it no longer only our output (issue 19, item 9)
    (previous / "keep.txt").write_text("added later")
    code, _, err = run(capsys, *encrypt_args(tree, previous, key, "block-pixel", 4, "--force"))
    one_line_error(code, err, "does not list: keep.txt")
    assert (previous / "keep.txt").read_text() == "added later"


def test_disk_write_failure_leaves_destination(tree, key, tmp_path, capsys, monkeypatch):
    dst = tmp_path / "dst"
    assert run(capsys, *encrypt_args(tree, dst, key))[0] == 0  # a previous output: --force may replace it
    before = sorted((p.relative_to(dst), p.read_bytes()) for p in dst.rglob("*") if p.is_file())
    import patchcrypt.files.engine as files

    def full_disk(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files, "_write", full_disk)
    code, _, err = run(capsys, *encrypt_args(tree, dst, key, "block-pixel", 4, "--force"))
    one_line_error(code, err, "No space left")
    assert sorted((p.relative_to(dst), p.read_bytes()) for p in dst.rglob("*") if p.is_file()) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dst")]
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, err = run(capsys, *encrypt_args(tree, blocker / "out", key))
    one_line_error(code, err, "no such folder")
