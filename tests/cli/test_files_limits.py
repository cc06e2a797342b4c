"""`decrypt` checks sizes against the manifest; `--force` replaces only what it can tell is its own output
(issue 19, items 6, 9 and the leftover ``.DST.old-PID`` symlink of item 11)."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import patchcrypt.files as files_mod
from patchcrypt import Key
from patchcrypt.cli import main
from patchcrypt.codec import encode_png, write_image


@pytest.fixture
def key(tmp_path):
    path = tmp_path / "owner.key"
    Key.generate().save(path)
    return path


def make_tree(root: Path, n: int = 3, size: int = 32) -> Path:
    rng = np.random.default_rng(n)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            write_image(root / c / f"{i:04d}.png", rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return root


def run(capsys, *args):
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, match):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), (code, err)
    assert match in lines[0], lines[0]


def encrypt(src, dst, key, *extra):
    return ["encrypt", src, dst, "--key", key, "--scheme", "block-pixel", "--block-size", 4, *extra]


# -- item 6: image_shape enforced from the header, before decoding ------------------------------------------
def test_decrypt_refuses_a_file_larger_than_the_manifest_says(tmp_path, key, capsys, monkeypatch):
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    assert run(capsys, *encrypt(make_tree(tmp_path / "plain"), enc, key))[0] == 0
    # a hostile tree: one file swapped for a larger image, its digest updated so the digest check passes
    big = encode_png(np.zeros((400, 640, 3), np.uint8))
    (enc / "dog" / "0001.png").write_bytes(big)
    manifest = json.loads((enc / "patchcrypt.json").read_text())
    manifest["files"]["dog/0001.png"]["sha256"] = hashlib.sha256(big).hexdigest()
    (enc / "patchcrypt.json").write_text(json.dumps(manifest))
    decoded = []
    real = files_mod.decode_image
    monkeypatch.setattr(files_mod, "decode_image", lambda data, *a, **k: decoded.append(len(data)) or real(data, *a, **k))
    code, _, err = run(capsys, "decrypt", enc, dec, "--key", key)
    one_line_error(code, err, "dog/0001.png: the file is 640x400 pixels, its manifest says 32x32")
    assert not dec.exists()
    assert len(big) not in decoded  # refused from its header, never decoded


def test_decrypt_with_pad_checks_each_files_padded_size(tmp_path, key, capsys):
    src = tmp_path / "plain"
    src.mkdir()
    write_image(src / "a.png", np.full((30, 22, 3), 9, np.uint8))
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    assert run(capsys, *encrypt(src, enc, key, "--pad"))[0] == 0
    assert run(capsys, "decrypt", enc, dec, "--key", key)[0] == 0  # 32x24 on disk, as --pad recorded
    big = encode_png(np.zeros((64, 64, 3), np.uint8))
    (enc / "a.png").write_bytes(big)
    manifest = json.loads((enc / "patchcrypt.json").read_text())
    manifest["files"]["a.png"]["sha256"] = hashlib.sha256(big).hexdigest()
    (enc / "patchcrypt.json").write_text(json.dumps(manifest))
    code, _, err = run(capsys, "decrypt", enc, tmp_path / "dec2", "--key", key)
    one_line_error(code, err, "its manifest says 24x32")


# -- item 9: --force trusts a manifest that parses and lists every file ------------------------------------
@pytest.mark.parametrize("marker", ["patchcrypt.json", ".patchcrypt-decrypted.json"])
@pytest.mark.parametrize("content", ["", "{}", '{"format": "patchcrypt-decrypted"}'])
def test_force_refuses_a_bare_marker_beside_unrelated_files(tmp_path, key, capsys, marker, content):
    victim = tmp_path / "victim"
    (victim / "docs").mkdir(parents=True)
    (victim / "docs" / "thesis.tex").write_text("mine")
    (victim / marker).write_text(content)
    code, _, err = run(capsys, *encrypt(make_tree(tmp_path / "plain"), victim, key, "--force"))
    one_line_error(code, err, "only replaces a previous patchcrypt output")
    assert (victim / "docs" / "thesis.tex").read_text() == "mine"
    assert (victim / marker).read_text() == content


def test_force_refuses_our_output_once_other_files_are_added(tmp_path, key, capsys):
    src = make_tree(tmp_path / "plain")
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    assert run(capsys, *encrypt(src, enc, key))[0] == 0
    assert run(capsys, "decrypt", enc, dec, "--key", key)[0] == 0
    for out in (enc, dec):
        (out / "cat" / "notes.txt").write_text("added later")
    code, _, err = run(capsys, *encrypt(src, enc, key, "--force"))
    one_line_error(code, err, "its manifest does not list: cat/notes.txt")
    code, _, err = run(capsys, "decrypt", enc, dec, "--key", key, "--force")
    one_line_error(code, err, "cat/notes.txt")
    assert (enc / "cat" / "notes.txt").is_file() and (dec / "cat" / "notes.txt").is_file()
    for out in (enc, dec):  # once the extra file is gone, both are ours again
        (out / "cat" / "notes.txt").unlink()
    assert run(capsys, "decrypt", enc, dec, "--key", key, "--force")[0] == 0
    assert run(capsys, *encrypt(src, enc, key, "--force"))[0] == 0


# -- item 11: --force onto a symlink leaves no .DST.old-PID link behind -------------------------------------
def test_force_onto_a_symlink_leaves_no_old_link(tmp_path, key, capsys):
    src = make_tree(tmp_path / "plain")
    real = tmp_path / "real-out"
    assert run(capsys, *encrypt(src, real, key))[0] == 0
    link = tmp_path / "out"
    link.symlink_to(real, target_is_directory=True)
    assert run(capsys, *encrypt(src, link, key, "--force"))[0] == 0
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    assert leftovers == []
    assert (link / "patchcrypt.json").is_file() and not link.is_symlink()
    assert (real / "patchcrypt.json").is_file()  # the link's target is left as it was


def test_etc_gray_composite_larger_than_the_limit_decrypts(tmp_path, key, capsys, monkeypatch):
    """An etc-gray ciphertext (4:2:0 composite) has 1.5x the pixels of its plain image; the pixel limit
    applies to the plain image the manifest records, so what encrypt accepted, decrypt takes back."""
    src = tmp_path / "plain"
    src.mkdir()
    write_image(src / "a.png", np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    monkeypatch.setenv("PATCHCRYPT_MAX_PIXELS", "1100")  # 32x32 = 1024 plain, 32x48 = 1536 composite
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    assert run(capsys, "encrypt", src, enc, "--key", key, "--scheme", "etc-gray", "--block-size", 8)[0] == 0
    code, _, err = run(capsys, "decrypt", enc, dec, "--key", key)
    assert code == 0, err
    assert (dec / "a.png").is_file()
    monkeypatch.setenv("PATCHCRYPT_MAX_PIXELS", "1000")  # a manifest declaring more than the limit: refused
    code, _, err = run(capsys, "decrypt", enc, tmp_path / "dec2", "--key", key)
    one_line_error(code, err, "size in its manifest")
