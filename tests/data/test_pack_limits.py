"""`read_pack` reads every packed image's header before decoding it (issue 19, item 7): a 631-byte JPEG that
declares 12000² pixels loaded with 2.4 GB, one that declares 20000² raised Pillow's own exception."""

import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest

from patchcrypt.codec import encode_jpeg
from patchcrypt.data import read_pack, write_pack
from patchcrypt.errors import PatchcryptError

REPO = Path(__file__).resolve().parents[2]


def jpeg_bomb(height: int, width: int) -> bytes:
    """A valid 8×8 JPEG whose SOF0 frame header is patched to declare height×width."""
    data = bytearray(encode_jpeg(np.zeros((8, 8, 3), np.uint8), 90, "444"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def pack_with(tmp_path: Path, blobs, first: bool = False) -> Path:
    """A pack of a few 16x16 JPEGs per split, plus ``blobs`` (bytes) in train/b/ (first in order if ``first``)."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("a", "b"):
            d = tmp_path / "tree" / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(2):
                img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                (d / f"{i + 1}.jpg").write_bytes(encode_jpeg(img, 90, "444"))
    for i, blob in enumerate(blobs):
        name = f"0{i}.jpg" if first else f"9{i}.jpg"
        (tmp_path / "tree" / "train" / ("a" if first else "b") / name).write_bytes(blob)
    out = tmp_path / "p.npz"
    write_pack(tmp_path / "tree", out)
    return out


@pytest.mark.parametrize("side", [12000, 20000])
@pytest.mark.parametrize("first", [True, False])
def test_declared_size_checked_before_decoding(tmp_path, side, first):
    bomb = jpeg_bomb(side, side)
    assert len(bomb) < 1000
    pack = pack_with(tmp_path, [bomb], first=first)
    with pytest.raises(PatchcryptError) as err:
        read_pack(pack, ["train"])
    line = str(err.value)
    why = line.split("]: ", 1)[1]  # after the pack's path (a temporary folder named after this test)
    assert "\n" not in line and (f"{side}x{side}" in why or f"{side * side:,} pixels" in why), line
    assert "refused" in why or "over the limit" in why, line


def test_pixel_limit_from_the_environment(tmp_path, monkeypatch):
    pack = pack_with(tmp_path, [])
    assert read_pack(pack, ["test"])["test"].images.shape == (4, 16, 16, 3)
    monkeypatch.setenv("PATCHCRYPT_MAX_PIXELS", "100")
    with pytest.raises(PatchcryptError, match="over the limit of 100"):
        read_pack(pack, ["test"])


def test_a_larger_image_after_the_first_is_refused_from_its_header(tmp_path):
    big = encode_jpeg(np.zeros((64, 64, 3), np.uint8), 90, "444")
    pack = pack_with(tmp_path, [big])
    with pytest.raises(PatchcryptError, match="more than the 256 expected"):
        read_pack(pack, ["train"])


def test_pack_script_check_is_one_line_exit_2(tmp_path, capsys):
    pack_with(tmp_path, [jpeg_bomb(20000, 20000)], first=True)
    spec = importlib.util.spec_from_file_location("pack_cifar", REPO / "scripts" / "pack_cifar.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    code = script.main(["--src", str(tmp_path / "tree"), "--out", str(tmp_path / "q.npz"), "--check"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:"), err
