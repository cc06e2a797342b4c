"""`encrypt` / `decrypt` must not destroy data: --force, name collisions, Ctrl-C, foreign files in a tree."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from patchcrypt import Key
from patchcrypt.codec import encode_png, read_image, write_image

from cli_helpers import encrypt_args, make_tree, one_line_error, run

import patchcrypt

SRC = Path(patchcrypt.__file__).resolve().parents[1]  # the copy under test, for the subprocess


# -- --force ----------------------------------------------------------------------------------------------
def test_force_never_removes_the_source_or_its_parents(tmp_path, key, capsys, monkeypatch):
    victim = tmp_path / "victim"
    photos = make_tree(victim / "photos")
    (victim / "notes.txt").write_text("mine")
    code, _, err = run(capsys, *encrypt_args(photos, victim, key, "--force"))
    one_line_error(code, err, "contains the source")
    assert len(list(photos.rglob("*.png"))) == 12 and (victim / "notes.txt").read_text() == "mine"
    code, _, err = run(capsys, *encrypt_args(photos / "cat" / "00000.png", victim, key, "--force"))
    one_line_error(code, err, "contains the source")
    # the current folder and the home folder are never replaced, even when they hold a manifest
    work = tmp_path / "work"
    work.mkdir()
    (work / "patchcrypt.json").write_text("{}")
    monkeypatch.chdir(work)
    code, _, err = run(capsys, *encrypt_args(photos, ".", key, "--force"))
    one_line_error(code, err, "current folder")
    monkeypatch.setenv("HOME", str(work))
    code, _, err = run(capsys, *encrypt_args(photos, work, key, "--force"))
    one_line_error(code, err, "home folder")
    assert (work / "patchcrypt.json").is_file()


def test_force_replaces_only_previous_outputs(tmp_path, key, capsys):
    src = make_tree(tmp_path / "plain")
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.txt").write_text("keep")
    code, _, err = run(capsys, *encrypt_args(src, other, key, "--force"))
    one_line_error(code, err, "only replaces a previous patchcrypt output")
    assert (other / "a.txt").read_text() == "keep"
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    assert run(capsys, *encrypt_args(src, enc, key))[0] == 0
    assert run(capsys, *encrypt_args(src, enc, key, "--force"))[0] == 0
    assert run(capsys, "decrypt", enc, dec, "--key", key)[0] == 0
    assert run(capsys, "decrypt", enc, dec, "--key", key, "--force")[0] == 0  # a previous decrypt output
    code, _, err = run(capsys, "decrypt", enc, other, "--key", key, "--force")
    one_line_error(code, err, "only replaces a previous patchcrypt output")
    code, _, err = run(capsys, "decrypt", enc, tmp_path, "--key", key, "--force")
    one_line_error(code, err, "contains the source")


# -- same stem, different extension ---------------------------------------------------------------------------
def test_same_stem_collision_is_refused(tmp_path, key, capsys):
    src = make_tree(tmp_path / "plain", n=2)
    img = read_image(src / "cat" / "00000.png")
    write_image(src / "cat" / "00000.jpg", img)
    code, _, err = run(capsys, *encrypt_args(src, tmp_path / "enc", key))
    one_line_error(code, err, "would both be written as cat/00000.png")
    assert not (tmp_path / "enc").exists()
    (src / "cat" / "00000.jpg").rename(src / "cat" / "00001.PNG")  # same file on case-insensitive disks
    code, _, err = run(capsys, *encrypt_args(src, tmp_path / "enc", key, "--per-image"))
    one_line_error(code, err, "would both be written as")


# -- integrity ----------------------------------------------------------------------------------------------
def test_foreign_or_changed_files_are_named_and_refused(tmp_path, key, capsys):
    src = make_tree(tmp_path / "plain")
    enc = tmp_path / "enc"
    assert run(capsys, *encrypt_args(src, enc, key, "--per-image"))[0] == 0
    manifest = json.loads((enc / "patchcrypt.json").read_text())
    assert manifest["version"] == 2 and len(manifest["files"]) == 12
    assert all(len(m["sha256"]) == 64 for m in manifest["files"].values())
    rng = np.random.default_rng(7)
    foreign = encode_png(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    (enc / "dog" / "intruder.png").write_bytes(foreign)
    code, _, err = run(capsys, "decrypt", enc, tmp_path / "dec", "--key", key)
    one_line_error(code, err, "dog/intruder.png")
    assert "not in its manifest" in err and not (tmp_path / "dec").exists()
    (enc / "dog" / "intruder.png").unlink()
    (enc / "cat" / "00003.png").write_bytes(foreign)  # a file swapped under a listed name
    code, _, err = run(capsys, "decrypt", enc, tmp_path / "dec", "--key", key)
    one_line_error(code, err, "cat/00003.png")
    assert "digest differs" in err and not (tmp_path / "dec").exists()
    assert not list(tmp_path.glob(".dec*"))


# -- Ctrl-C ------------------------------------------------------------------------------------------------
_SMALL_CHUNKS = """
import signal, sys
# Ctrl-C as in a terminal: a test run from a background job (nohup, `&`, some CI runners) starts with SIGINT
# ignored, which Python and every child keep; then the interrupt would never arrive
signal.signal(signal.SIGINT, signal.default_int_handler)
import patchcrypt.files.engine as files
files.CHUNK = 8   # several steps, so the interrupt lands with chunks still to do
from patchcrypt.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_ctrl_c_exits_130_and_leaves_no_output(tmp_path, key):
    """A handshake, not a race: the child writes its first chunk, creates the marker named by
    PAUSE_ENV and waits; only then does the test send SIGINT."""
    from patchcrypt.files import PAUSE_ENV

    src = make_tree(tmp_path / "plain", n=12)
    dst, marker = tmp_path / "enc", tmp_path / "first-chunk-written"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", PAUSE_ENV: str(marker)}
    proc = subprocess.Popen([sys.executable, "-c", _SMALL_CHUNKS, *map(str, encrypt_args(src, dst, key))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 300  # only bounds a broken run; a working one signals in about a second
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), ("the encryption never signalled", proc.poll())
        partial = [p for p in tmp_path.glob(".enc.*.partial") if any(p.rglob("*.png"))]
        assert len(partial) == 1, "the first chunk should be in the staging folder"
        assert len(list(partial[0].rglob("*.png"))) == 8
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (proc.returncode, err)
    assert err.decode().strip().splitlines() == ["error: interrupted"]
    assert not dst.exists() and not list(tmp_path.glob(".enc*"))


def test_stale_partial_folder_of_a_killed_run_is_removed(tmp_path, key, capsys):
    src = make_tree(tmp_path / "plain", n=2)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process id that no longer runs
    stale = tmp_path / f".enc.{dead.pid}.abc123.partial"
    (stale / "cat").mkdir(parents=True)
    (stale / "cat" / "00000.png").write_bytes(b"half")
    code, _, err = run(capsys, *encrypt_args(src, tmp_path / "enc", key))
    assert code == 0 and not stale.exists()
    assert "interrupted run" in err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".enc")) == []


def test_ctrl_c_in_any_command_exits_130(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Key, "generate", interrupted)
    code, out, err = run(capsys, "keygen", "-o", tmp_path / "k.key")
    assert code == 130 and err.strip().splitlines() == ["error: interrupted"]
    assert not (tmp_path / "k.key").exists()
