"""`decrypt` checks sizes against the manifest; `--force` replaces only what it can tell is its own output
(issue 19, items 6, 9 and the leftover ``.DST.old-PID`` symlink of item 11)."""

import hashlib
import json

import numpy as np
import pytest

import patchcrypt.files.engine as files_mod
from patchcrypt.codec import encode_png, write_image

from cli_helpers import encrypt_args, make_tree, one_line_error, run


# -- item 6: image_shape enforced from the header, before decoding ------------------------------------------
def test_decrypt_refuses_a_file_larger_than_the_manifest_says(tmp_path, key, capsys, monkeypatch):
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    assert run(capsys, *encrypt_args(make_tree(tmp_path / "plain", n=3), enc, key))[0] == 0
    # a hostile tree: one file swapped for a larger image, its digest updated so the digest check passes
    big = encode_png(np.zeros((400, 640, 3), np.uint8))
    (enc / "dog" / "00001.png").write_bytes(big)
    manifest = json.loads((enc / "patchcrypt.json").read_text())
    manifest["files"]["dog/00001.png"]["sha256"] = hashlib.sha256(big).hexdigest()
    (enc / "patchcrypt.json").write_text(json.dumps(manifest))
    decoded = []
    real = files_mod.decode_image
    monkeypatch.setattr(files_mod, "decode_image", lambda data, *a, **k: decoded.append(len(data)) or real(data, *a, **k))
    code, _, err = run(capsys, "decrypt", enc, dec, "--key", key)
    one_line_error(code, err, "dog/00001.png: the file is 640x400 pixels, its manifest says 32x32")
    assert not dec.exists()
    assert len(big) not in decoded  # refused from its header, never decoded


def test_decrypt_with_pad_checks_each_files_padded_size(tmp_path, key, capsys):
    src = tmp_path / "plain"
    src.mkdir()
    write_image(src / "a.png", np.full((30, 22, 3), 9, np.uint8))
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    assert run(capsys, *encrypt_args(src, enc, key, "--pad"))[0] == 0
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
    code, _, err = run(capsys, *encrypt_args(make_tree(tmp_path / "plain", n=3), victim, key, "--force"))
    one_line_error(code, err, "only replaces a previous patchcrypt output")
    assert (victim / "docs" / "thesis.tex").read_text() == "mine"
    assert (victim / marker).read_text() == content


def test_force_refuses_our_output_once_other_files_are_added(tmp_path, key, capsys):
    src = make_tree(tmp_path / "plain", n=3)
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    assert run(capsys, *encrypt_args(src, enc, key))[0] == 0
    assert run(capsys, "decrypt", enc, dec, "--key", key)[0] == 0
    for out in (enc, dec):
        (out / "cat" / "notes.txt").write_text("added later")
    code, _, err = run(capsys, *encrypt_args(src, enc, key, "--force"))
    one_line_error(code, err, "its manifest does not list: cat/notes.txt")
    code, _, err = run(capsys, "decrypt", enc, dec, "--key", key, "--force")
    one_line_error(code, err, "cat/notes.txt")
    assert (enc / "cat" / "notes.txt").is_file() and (dec / "cat" / "notes.txt").is_file()
    for out in (enc, dec):  # once the extra file is gone, both are ours again
        (out / "cat" / "notes.txt").unlink()
    assert run(capsys, "decrypt", enc, dec, "--key", key, "--force")[0] == 0
    assert run(capsys, *encrypt_args(src, enc, key, "--force"))[0] == 0


# -- item 11: --force onto a symlink leaves no .DST.old-PID link behind -------------------------------------
def test_force_onto_a_symlink_leaves_no_old_link(tmp_path, key, capsys):
    src = make_tree(tmp_path / "plain", n=3)
    real = tmp_path / "real-out"
    assert run(capsys, *encrypt_args(src, real, key))[0] == 0
    link = tmp_path / "out"
    link.symlink_to(real, target_is_directory=True)
    assert run(capsys, *encrypt_args(src, link, key, "--force"))[0] == 0
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
