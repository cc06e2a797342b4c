"""Every file a command reads is a regular file (or a link to one), bounded in size before reading, and
opened so that a FIFO cannot hang it (issue 27, item 2): an image that is a link to /dev/zero, a FIFO, a
sparse file far over the cap; a salt file, a part manifest and a decrypt marker that are FIFOs.

Each command runs in its own process with a time limit and an address-space limit, so that the code this
replaces (which read /dev/zero until memory ran out and waited on a FIFO for ever) fails here instead of
hanging the suite; its peak memory is read from the kernel (``wait4``)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Tuple

import pytest

from cli_helpers import encrypt_args, make_tree, run

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")

AS_LIMIT = 3 << 30  # the child may not map more than 3 GB: reading /dev/zero whole ends in MemoryError


def cli(tmp_path: Path, *args, timeout: float = 30, env: dict = None) -> Tuple[int, str, float, float]:
    """(exit code, stderr, seconds, peak resident MB) of ``python -m patchcrypt ARGS`` in a child process;
    a child still running after ``timeout`` seconds is killed and reported as exit code -9."""
    def limit():  # in the child, before exec
        resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))

    # a cache folder made before, as on any machine after its first run: no first-write note on stderr
    (tmp_path / "cache" / "trees").mkdir(mode=0o700, parents=True, exist_ok=True)
    err_path = tmp_path / f"stderr-{time.monotonic_ns()}"
    with open(err_path, "wb") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "patchcrypt", *map(str, args)], stdout=subprocess.DEVNULL,
                                stderr=err, stdin=subprocess.DEVNULL, preexec_fn=limit,
                                env={**os.environ, "PATCHCRYPT_CACHE": str(tmp_path / "cache"), **(env or {})})
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t0 > timeout:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, err_path.read_text(), time.monotonic() - t0, usage.ru_maxrss / 1024


def refused(result, match: str) -> None:
    code, err, seconds, mb = result
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), (code, err[-2000:])
    assert match in lines[0], lines[0]
    assert seconds < 20 and mb < 1536, (seconds, mb)


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "sparse"])
def test_encrypt_refuses_an_image_that_is_not_a_bounded_regular_file(tmp_path, key, kind):
    src, dst = make_tree(tmp_path / "plain", n=2), tmp_path / "enc"
    bad = src / "cat" / "00009.png"
    env = {}
    if kind == "/dev/zero":
        bad.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(bad)
    else:  # 64 MB of holes; with 1,000,000 pixels allowed an image file may have 8 MB + 16 MB
        with open(bad, "wb") as f:
            f.truncate(64 << 20)
        env = {"PATCHCRYPT_MAX_PIXELS": "1000000"}
    match = {"/dev/zero": "not a regular file", "fifo": "not a regular file", "sparse": "over the"}[kind]
    refused(cli(tmp_path, *encrypt_args(src, dst, key), env=env), match)
    assert not dst.exists() and sorted(p.name for p in (src / "cat").iterdir())[-1] == "00009.png"


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo"])
def test_decrypt_and_train_refuse_a_fifo_or_dev_zero_image(tmp_path, key, capsys, kind):
    plain = tmp_path / "plain"
    for split in ("train", "test"):
        make_tree(plain / split, n=2)
    enc = tmp_path / "enc"
    assert run(capsys, *encrypt_args(plain, enc, key))[0] == 0
    for tree in (enc, plain):  # decrypt the encrypted tree, train on the plain one
        victim = tree / "test" / "dog" / "00001.png"
        victim.unlink()
        victim.symlink_to("/dev/zero") if kind == "/dev/zero" else os.mkfifo(victim)
    refused(cli(tmp_path, "decrypt", enc, tmp_path / "dec", "--key", key), "not a regular file")
    assert not (tmp_path / "dec").exists()
    refused(cli(tmp_path, "train", "--data", plain, "--out", tmp_path / "run", "--model", "vit_pico_patch4_32",
                "--epochs", "1", "--device", "cpu", timeout=60), "not a regular file")


def test_salt_file_part_manifest_and_marker_fifos_are_refused(tmp_path, key, capsys):
    src = make_tree(tmp_path / "plain", n=2)
    # a salt file that is a FIFO, where the parts of a per-image run meet
    parts = tmp_path / "parts"
    parts.mkdir()
    os.mkfifo(parts / ".patchcrypt-salt")
    refused(cli(tmp_path, *encrypt_args(src, parts, key, "--per-image", "--part", "1/2")), "not a regular file")
    # a part manifest that is a FIFO, when the parts are merged
    parts2 = tmp_path / "parts2"
    assert run(capsys, *encrypt_args(src, parts2, key, "--part", "1/2"))[0] == 0
    os.mkfifo(parts2 / "patchcrypt.part-2-of-2.json")
    refused(cli(tmp_path, "merge-manifests", parts2), "not a regular file")
    assert (parts2 / "patchcrypt.part-1-of-2.json").is_file()  # nothing lost
    # a decrypt marker that is a FIFO, in the folder --force would replace
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    assert run(capsys, *encrypt_args(src, enc, key))[0] == 0
    dec.mkdir()
    os.mkfifo(dec / ".patchcrypt-decrypted.json")
    code, err, seconds, mb = cli(tmp_path, "decrypt", enc, dec, "--key", key, "--force")
    assert code == 2 and len(err.strip().splitlines()) == 1 and seconds < 20, (code, err[-2000:], seconds)
    assert (dec / ".patchcrypt-decrypted.json").exists()  # refused, nothing removed
