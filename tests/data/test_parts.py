"""Encryption split across processes: --part I/N + merge-manifests, torchrun, salted per-image nonces."""

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from patchcrypt.cli import main

from test_shards import make_tree, one_error  # the shard tests' small tree and error check (same folder)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("plain"), per_class=24)


def digests(root: Path):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def enc(tree, dst, key_file, *extra):
    assert main(["encrypt", str(tree), str(dst), "--key", str(key_file), "--scheme", "etc", "--block-size", "4",
                 *map(str, extra)]) == 0


@pytest.mark.parametrize("shard", [[], ["--shard-size", "10"]])
def test_parts_merge_to_exactly_what_one_process_writes(tree, key_file, tmp_path, shard, capsys):
    enc(tree, tmp_path / "one", key_file, *shard)
    for i in (2, 3, 1):  # any order
        enc(tree, tmp_path / "parts", key_file, "--part", f"{i}/3", *shard)
    assert "part 2/3" in capsys.readouterr().out
    assert main(["merge-manifests", str(tmp_path / "parts")]) == 0
    assert digests(tmp_path / "parts") == digests(tmp_path / "one")


def test_merge_refuses_missing_mismatched_and_overlapping_parts(tree, key_file, tmp_path, capsys):
    d = tmp_path / "p"
    enc(tree, d, key_file, "--part", "1/3")
    enc(tree, d, key_file, "--part", "3/3")
    assert "part 2/3 missing" in one_error(capsys, ["merge-manifests", d])
    # part 2 made with another block size: a different run
    assert main(["encrypt", str(tree), str(d), "--key", str(key_file), "--scheme", "etc", "--block-size", "8",
                 "--part", "2/3"]) == 0
    assert "part 2/3 does not match part 1/3 (block_size" in one_error(capsys, ["merge-manifests", d])
    enc(tree, d, key_file, "--part", "2/3")
    enc(tree, d, key_file, "--part", "1/2")  # a stale part of another split
    assert "different splits" in one_error(capsys, ["merge-manifests", d])
    (d / "patchcrypt.part-1-of-2.json").unlink()
    doc = json.loads((d / "patchcrypt.part-3-of-3.json").read_text())
    doc["units"][0] -= 1  # claims a unit of part 2 as well
    (d / "patchcrypt.part-3-of-3.json").write_text(json.dumps(doc))
    assert "part 3/3 overlaps" in one_error(capsys, ["merge-manifests", d])
    assert not (d / "patchcrypt.json").exists()
    doc["units"][0] += 2  # and now leaves one out
    (d / "patchcrypt.part-3-of-3.json").write_text(json.dumps(doc))
    assert "gap before part 3/3" in one_error(capsys, ["merge-manifests", d])
    assert not (d / "patchcrypt.json").exists()
    assert "--part must be I/N" in one_error(capsys, ["encrypt", tree, tmp_path / "x", "--key", key_file, "--scheme",
                                                      "etc", "--block-size", "4", "--part", "0/2"])


def test_per_image_nonces_are_unique_across_parts_and_runs_and_parts_share_a_salt(tree, key_file, tmp_path):
    for run in ("a", "b"):
        for i in (1, 2):
            enc(tree, tmp_path / run, key_file, "--per-image", "--part", f"{i}/2")
        assert main(["merge-manifests", str(tmp_path / run)]) == 0
    ma, mb = (json.loads((tmp_path / r / "patchcrypt.json").read_text()) for r in ("a", "b"))
    na = [m["nonce"] for m in ma["files"].values()]
    nb = [m["nonce"] for m in mb["files"].values()]
    assert len(set(na)) == len(na) == ma["file_count"] and not set(na) & set(nb)
    assert ma["nonce_salt"] != mb["nonce_salt"]
    # a salt given by the user reproduces a run exactly, in one process or in parts
    salt = ma["nonce_salt"]
    enc(tree, tmp_path / "c", key_file, "--per-image", "--salt", salt)
    assert digests(tmp_path / "c") == digests(tmp_path / "a")
    out = tmp_path / "dec"
    assert main(["decrypt", str(tmp_path / "a"), str(out), "--key", str(key_file)]) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_writes_exactly_the_files_one_process_writes(tree, key_file, tmp_path):
    enc(tree, tmp_path / "one", key_file, "--shard-size", "7")
    enc(tree, tmp_path / "one-files", key_file)
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    for name, extra in (("two", ["--shard-size", "7"]), ("two-files", [])):
        for _ in range(3):  # another process may take the free port before torchrun binds it: try another
            cmd = [str(torchrun), "--nproc-per-node=2", "--master-addr", "127.0.0.1", "--master-port",
                   str(_free_port()), "-m", "patchcrypt", "encrypt", str(tree), str(tmp_path / name), "--key",
                   str(key_file), "--scheme", "etc", "--block-size", "4", *extra]
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
            if "EADDRINUSE" not in res.stderr:
                break
        assert res.returncode == 0, res.stderr[-3000:]
        assert res.stdout.count("encrypted ") == 1  # rank 0 speaks
    assert digests(tmp_path / "two") == digests(tmp_path / "one")
    assert digests(tmp_path / "two-files") == digests(tmp_path / "one-files")


@pytest.mark.slow
def test_torchrun_ranks_with_different_keys_stop_before_writing(tree, key_file, tmp_path):
    """Issue 27, item 3: rank 1 holding another key used to exit 0 with a manifest naming rank 0's key and
    half the images under the other one. Now every rank stops with one line and nothing is written."""
    from patchcrypt import Key

    other = tmp_path / "other.key"
    Key.generate().save(other)
    script = tmp_path / "rank.py"  # each rank its own --key, as a misconfigured job would give them
    script.write_text("import os, sys\nfrom patchcrypt.cli import main\n"
                      f"keys = [{str(key_file)!r}, {str(other)!r}]\n"
                      f"sys.exit(main(['encrypt', {str(tree)!r}, {str(tmp_path / 'out')!r}, '--key', "
                      "keys[int(os.environ['RANK'])], '--scheme', 'etc', '--block-size', '4']))\n")
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    for _ in range(3):
        cmd = [str(torchrun), "--nproc-per-node=2", "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
               str(script)]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        if "EADDRINUSE" not in res.stderr:
            break
    assert res.returncode != 0, res.stderr[-3000:]
    assert "torchrun ranks disagree on the key fingerprint" in res.stderr, res.stderr[-3000:]
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no staging folder left either
