"""The data-set engine's outputs, pinned byte for byte: every way of running ``encrypt`` (one process writing
files, shards, ``--part I/N`` joined by ``merge-manifests``, torchrun ranks) and both ``decrypt`` paths (a
tree, a shard set) write exactly the files they wrote before the engine was reorganised.

Each case encrypts a small generated tree (noise images of two sizes, written as PNG, fixed seed) with a fixed
key and a fixed salt, and compares the SHA-256 of its output (every file name and every file's digest, the
manifest included) with the value recorded from the engine as it was. A change that alters any byte of any
output fails here; the values depend on Pillow's PNG and JPEG encoders, so a new Pillow may need them
recorded again (``python tests/data/test_engine_outputs.py`` prints them).
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from patchcrypt.cli import main

SALT = "00112233445566778899aabbccddeeff"
COMMON = ["--scheme", "etc", "--block-size", "4", "--salt", SALT]
# case -> (encrypt arguments after the key; "part" cases run every part then merge-manifests)
CASES: Dict[str, List[str]] = {
    "tree-png": ["--scheme", "etc", "--block-size", "4"],
    "tree-jpeg-pad": ["--scheme", "etc", "--block-size", "8", "--format", "jpeg", "--pad"],
    "tree-per-image": [*COMMON, "--per-image"],
    "shards": [*COMMON, "--shard-size", "5"],
    "shards-per-image": [*COMMON, "--shard-size", "5", "--per-image", "--resize", "16x16"],
    "parts": [*COMMON, "--per-image"],
    "parts-shards": [*COMMON, "--shard-size", "4"],
}
# recorded from the engine before it was reorganised: (encrypted output, decrypted output)
EXPECTED: Dict[str, tuple] = {
    'parts': ('505d59ead851f5b0c3a480619a40c4b8a27d409b0041b8be6b2d459ea846d89e', 'efac00b0b9e602c66ccb5ac8ae34783b76948b8f12fa2f14946397cc137f2d62'),
    'parts-shards': ('f4159a9d3450080c80642e50207a4f88ace702b927b4837f2f2c0c7361d445ed', 'efac00b0b9e602c66ccb5ac8ae34783b76948b8f12fa2f14946397cc137f2d62'),
    'shards': ('0d7383ed948f559cd7ee7bd8da6bcd26a468e472538b9399c6e8ec952a0b870e', 'efac00b0b9e602c66ccb5ac8ae34783b76948b8f12fa2f14946397cc137f2d62'),
    'shards-per-image': ('ea2509a8832255804a0d6f1a87e1c87962419d06163728f6086e2fa1b2f1c7ad', 'd2d71193a19f8c961ba2f5168d66f7c33078cc41b6bc6ae6347aeff3ddf84cdc'),
    'tree-jpeg-pad': ('461462e2237db3924fadab88ce088000f6d3de1666b1012035420293c550906e', '4097b07448270c09674dc0d426f6de49e87cbf764589c10e88a073fa23e35e4f'),
    'tree-per-image': ('505d59ead851f5b0c3a480619a40c4b8a27d409b0041b8be6b2d459ea846d89e', 'efac00b0b9e602c66ccb5ac8ae34783b76948b8f12fa2f14946397cc137f2d62'),
    'tree-png': ('85c7e78e42211a2eb4cf7b2626c31934a10b3c89f8c2dbcfc827ed15e77de187', 'efac00b0b9e602c66ccb5ac8ae34783b76948b8f12fa2f14946397cc137f2d62'),
}


def make_images(root: Path) -> Path:
    """``root/{train,test}/<class>/<n>.png``: 20 noise images, 20x20 and 24x16 (two shapes in a batch)."""
    from PIL import Image

    rng = np.random.default_rng(31)
    for split, n in (("train", 4), ("test", 2)):
        for cls in ("ant", "bee", "cat"):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n + (cls == "cat")):
                shape = (20, 20, 3) if i % 2 else (24, 16, 3)
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / split / cls / f"{i}.png")
    return root


def make_key(folder: Path) -> Path:
    from patchcrypt import Key

    path = folder / "owner.key"
    Key.from_bytes(bytes(range(32))).save(path)
    return path


def tree_digest(root: Path) -> str:
    lines = [f"{p.relative_to(root).as_posix()}\t{hashlib.sha256(p.read_bytes()).hexdigest()}"
             for p in sorted(root.rglob("*")) if p.is_file()]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def run_case(name: str, src: Path, key: Path, out: Path) -> tuple:
    """(digest of the encrypted output, digest of its decryption) for case ``name``."""
    args = CASES[name]
    enc, dec = out / f"{name}-enc", out / f"{name}-dec"
    if name.startswith("parts"):
        for i in (2, 1, 3):
            assert main(["encrypt", str(src), str(enc), "--key", str(key), *args, "--part", f"{i}/3"]) == 0
        assert main(["merge-manifests", str(enc)]) == 0
    else:
        assert main(["encrypt", str(src), str(enc), "--key", str(key), *args]) == 0
    assert main(["decrypt", str(enc), str(dec), "--key", str(key)]) == 0
    return tree_digest(enc), tree_digest(dec)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("engine")
    return make_images(base / "plain"), make_key(base)


@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_are_the_recorded_bytes(name, setup, tmp_path):
    src, key = setup
    assert run_case(name, src, key, tmp_path) == EXPECTED[name]


@pytest.mark.parametrize("layout", [[], ["--shard-size", "5"], ["--part", "1/2"], ["--salt", SALT]])
def test_every_run_refuses_pad_past_the_pixel_limit(layout, setup, tmp_path, capsys, monkeypatch):
    """One loop, one rule: an image that --pad would grow past the pixel limit is refused, naming it, in one
    process and in shards, parts and salted runs alike (20x20 pads to 24x24 = 576 pixels at M=8)."""
    src, key = setup
    monkeypatch.setenv("PATCHCRYPT_MAX_PIXELS", "420")
    dst = tmp_path / "enc"
    code = main(["encrypt", str(src), str(dst), "--key", str(key), "--scheme", "etc", "--block-size", "8", "--pad",
                 *layout])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "--pad would make it 24x24 = 576 pixels, over the limit of 420" in err
    assert not dst.exists() or not any(dst.rglob("*.png"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tree-per-image", "shards"])
def test_torchrun_ranks_write_the_recorded_bytes(name, setup, tmp_path):
    src, key = setup
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    dst = tmp_path / "two"
    for _ in range(3):  # another process may take the free port before torchrun binds it: try another
        cmd = [str(torchrun), "--nproc-per-node=2", "--master-addr", "127.0.0.1", "--master-port",
               str(_free_port()), "-m", "patchcrypt", "encrypt", str(src), str(dst), "--key", str(key), *CASES[name]]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        if "EADDRINUSE" not in res.stderr:
            break
    assert res.returncode == 0, res.stderr[-3000:]
    assert tree_digest(dst) == EXPECTED[name][0]


if __name__ == "__main__":  # print the values of EXPECTED for this engine
    with tempfile.TemporaryDirectory() as d:
        plain, key_path = make_images(Path(d) / "plain"), make_key(Path(d))
        for case in sorted(CASES):
            print(f"    {case!r}: {run_case(case, plain, key_path, Path(d))!r},")
