"""`--force` replaces only files patchcrypt wrote: every file a manifest or decrypt marker lists must have the
content digest recorded when it was written. A crafted manifest or marker that lists a user's file by name
is refused (one line, exit 2) and nothing is deleted."""

import hashlib
import json
import os
from pathlib import Path

import pytest

from cli_helpers import encrypt_args, make_tree, one_line_error, run


def _files(root: Path):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    (victim / "docs").mkdir(parents=True)
    (victim / "docs" / "thesis.tex").write_text("mine")
    return victim


def _manifest(files) -> str:
    return json.dumps({"format": "patchcrypt-dataset", "version": 2, "scheme": "block-pixel", "block_size": 4,
                       "key_fingerprint": "0" * 16, "files": files})


@pytest.mark.parametrize("meta", [{}, {"sha256": "0" * 64}])
def test_a_crafted_manifest_listing_a_user_file_deletes_nothing(tmp_path, key, capsys, meta):
    victim = _victim(tmp_path)
    (victim / "patchcrypt.json").write_text(_manifest({"docs/thesis.tex": meta}))
    before = _files(victim)
    code, _, err = run(capsys, *encrypt_args(make_tree(tmp_path / "plain", n=2), victim, key, "--force"))
    one_line_error(code, err, "1 file(s) patchcrypt cannot show it wrote")
    assert "docs/thesis.tex" in err and "nothing was deleted" in err
    assert _files(victim) == before


@pytest.mark.parametrize("files", [["docs/thesis.tex"], {"docs/thesis.tex": {"sha256": "1" * 64}}])
def test_a_crafted_decrypt_marker_listing_a_user_file_deletes_nothing(tmp_path, key, capsys, files):
    victim = _victim(tmp_path)
    (victim / ".patchcrypt-decrypted.json").write_text(json.dumps({"format": "patchcrypt-decrypted",
                                                                   "file_count": 1, "files": files}))
    before = _files(victim)
    src = make_tree(tmp_path / "plain", n=2)
    enc = tmp_path / "enc"
    assert run(capsys, *encrypt_args(src, enc, key))[0] == 0
    code, _, err = run(capsys, "decrypt", enc, victim, "--key", key, "--force")
    one_line_error(code, err, "1 file(s) patchcrypt cannot show it wrote")
    assert _files(victim) == before


def test_the_digest_of_the_users_file_is_not_enough_through_a_link(tmp_path, key, capsys):
    victim = _victim(tmp_path)
    target = victim / "docs" / "thesis.tex"
    (victim / "out.png").symlink_to(target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()  # a link's target's digest does not make it ours
    os.mkfifo(victim / "pipe.png")  # a FIFO it lists is refused, never read (no hang)
    (victim / "patchcrypt.json").write_text(_manifest({"out.png": {"sha256": digest}, "pipe.png": {"sha256": digest},
                                                       "docs/thesis.tex": {}}))
    code, _, err = run(capsys, *encrypt_args(make_tree(tmp_path / "plain", n=2), victim, key, "--force"))
    one_line_error(code, err, "3 file(s) patchcrypt cannot show it wrote")
    assert (victim / "out.png").is_symlink() and target.read_text() == "mine" and (victim / "pipe.png").exists()


def test_a_changed_file_in_a_previous_output_stops_the_whole_replacement(tmp_path, key, capsys):
    src = make_tree(tmp_path / "plain", n=3)
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    assert run(capsys, *encrypt_args(src, enc, key))[0] == 0
    assert run(capsys, "decrypt", enc, dec, "--key", key)[0] == 0
    for out in (enc, dec):  # a user's own file saved over one the tool wrote
        (out / "dog" / "00001.png").write_bytes(b"my edit")
    before = {out: _files(out) for out in (enc, dec)}
    code, _, err = run(capsys, *encrypt_args(src, enc, key, "--force"))
    one_line_error(code, err, "1 file(s) patchcrypt cannot show it wrote")
    code, _, err = run(capsys, "decrypt", enc, dec, "--key", key, "--force")
    one_line_error(code, err, "lists 1 file(s)")
    assert {out: _files(out) for out in (enc, dec)} == before  # nothing half-deleted


def test_previous_outputs_are_still_replaced(tmp_path, key, capsys):
    src = make_tree(tmp_path / "plain", n=3)
    enc, dec, shards = tmp_path / "enc", tmp_path / "dec", tmp_path / "shards"
    assert run(capsys, *encrypt_args(src, enc, key))[0] == 0
    assert run(capsys, *encrypt_args(src, enc, key, "--force"))[0] == 0
    assert run(capsys, "decrypt", enc, dec, "--key", key)[0] == 0
    marker = json.loads((dec / ".patchcrypt-decrypted.json").read_text())
    assert marker["files"]["cat/00000.png"]["sha256"] == hashlib.sha256(
        (dec / "cat" / "00000.png").read_bytes()).hexdigest()
    assert run(capsys, "decrypt", enc, dec, "--key", key, "--force")[0] == 0
    # shard sets: every shard's digest is in the manifest, so a shard output is ours too
    assert run(capsys, *encrypt_args(src, shards, key, "--shard-size", "4"))[0] == 0
    assert run(capsys, *encrypt_args(src, shards, key, "--shard-size", "4", "--force"))[0] == 0
    assert run(capsys, "decrypt", shards, dec, "--key", key, "--force")[0] == 0
    assert run(capsys, "decrypt", shards, dec, "--key", key, "--force")[0] == 0
