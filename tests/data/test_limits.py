"""Untrusted inputs: decompression bombs, key files that are not files, malformed manifests, crafted pickles."""

import json
import os
import pickle
import struct
import threading
import time
import tracemalloc
import zlib
from unittest import mock

import numpy as np
import pytest

from patchcrypt import Key
from patchcrypt.cli import main
from patchcrypt import codec
from patchcrypt.codec import decode_image, encode_jpeg, encode_png, read_image, write_image
from patchcrypt.data import load_dataset
from patchcrypt.errors import PatchcryptError

BOMB = 9000  # 81 MP: over the 40 MP default, under Pillow's own 179 MP refusal, so only our check stops it


def png_bomb(height: int, width: int) -> bytes:
    """A valid 1×1 PNG whose IHDR is patched (CRC fixed) to declare height×width."""
    data = bytearray(encode_png(np.zeros((1, 1, 3), np.uint8)))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def jpeg_bomb(height: int, width: int) -> bytes:
    """A valid 8×8 JPEG whose SOF0 frame header is patched to declare height×width."""
    data = bytearray(encode_jpeg(np.zeros((8, 8, 3), np.uint8), 90, "444"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _refusing_large(decode, pixels_of):
    """``decode``, except that it fails on an image over the default limit: such pixels are never decoded."""
    def guarded(*args, **kwargs):
        if pixels_of(*args) > codec.DEFAULT_MAX_PIXELS:
            raise AssertionError("a bomb's pixels were decoded: the size check must come first, from the header")
        return decode(*args, **kwargs)
    return guarded


def refused_quickly(fn, match: str, exc_type=PatchcryptError):
    """``fn`` raises ``exc_type`` containing ``match`` without decoding the bomb, < 20 MB allocated at peak.

    No clock: the decoders (libjpeg-turbo via simplejpeg, Pillow's load) fail when asked for more pixels than
    the limit, so a refusal that comes after decoding fails here whatever the machine's speed. The time bound
    only catches a hang, with a wide margin (decoding 81 MP takes seconds; a header read, microseconds).
    """
    import simplejpeg
    from PIL import Image, ImageFile

    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        jpeg_pixels = lambda data, *a: int(np.prod(simplejpeg.decode_jpeg_header(data)[:2]))  # noqa: E731
        pil_pixels = lambda im, *a: im.size[0] * im.size[1]  # noqa: E731
        with mock.patch.object(simplejpeg, "decode_jpeg", _refusing_large(simplejpeg.decode_jpeg, jpeg_pixels)), \
                mock.patch.object(ImageFile.ImageFile, "load", _refusing_large(ImageFile.ImageFile.load, pil_pixels)), \
                mock.patch.object(Image.Image, "load", _refusing_large(Image.Image.load, pil_pixels)):
            with pytest.raises(exc_type, match=match) as info:
                fn()
    finally:
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert seconds < 60.0, seconds
    assert peak < 20 * 2 ** 20, f"{peak / 2 ** 20:.0f} MB allocated"
    assert "\n" not in str(info.value)
    return info.value


@pytest.mark.parametrize("make", [png_bomb, jpeg_bomb], ids=["png", "jpeg"])
def test_bomb_refused_from_its_header(make):
    data = make(BOMB, BOMB)
    assert len(data) < 1000
    err = refused_quickly(lambda: decode_image(data, name="bomb"), "over the limit of 40,000,000")
    assert codec.image_size(data) == (BOMB, BOMB)
    assert "PATCHCRYPT_MAX_PIXELS" in str(err)
    refused_quickly(lambda: decode_image(data, name="bomb", upsampling="block"), "pixels")


def test_bomb_in_every_reader(tmp_path):
    tree = tmp_path / "tree" / "cat"
    tree.mkdir(parents=True)
    write_image(tree / "a.png", np.zeros((32, 32, 3), np.uint8))
    (tree / "b.png").write_bytes(png_bomb(BOMB, BOMB))
    refused_quickly(lambda: load_dataset(tmp_path / "tree", cache=False), "b.png")
    refused_quickly(lambda: load_dataset(tree / "b.png"), "pixels")
    refused_quickly(lambda: read_image(tree / "b.png"), "pixels")


def test_pixel_limit_can_be_raised(tmp_path, monkeypatch):
    path = tmp_path / "x.png"
    write_image(path, np.zeros((40, 50, 3), np.uint8))
    monkeypatch.setenv("PATCHCRYPT_MAX_PIXELS", "1999")
    with pytest.raises(PatchcryptError, match="50x40 = 2,000 pixels"):
        read_image(path)
    monkeypatch.setenv("PATCHCRYPT_MAX_PIXELS", "2000")
    assert read_image(path).shape == (40, 50, 3)
    monkeypatch.setenv("PATCHCRYPT_MAX_PIXELS", "lots")
    with pytest.raises(PatchcryptError, match="PATCHCRYPT_MAX_PIXELS"):
        read_image(path)


def test_server_refuses_any_size_but_the_models_before_decoding():
    pytest.importorskip("starlette")
    from patchcrypt.serve.routes import HTTPError, decode_images

    for data in (png_bomb(BOMB, BOMB), jpeg_bomb(BOMB, BOMB), png_bomb(33, 32)):
        err = refused_quickly(lambda: decode_images([("x", data)], (32, 32, 3)), "expected", HTTPError)
        assert err.status == 400
    assert decode_images([("ok", encode_png(np.ones((32, 32, 3), np.uint8)))], (32, 32, 3)).shape == (1, 32, 32, 3)


# -- key files -------------------------------------------------------------------------------------------
def _load_in_thread(path, seconds=120.0):  # catches a hang (a FIFO blocks forever); a load takes milliseconds
    result = {}

    def target():
        try:
            Key.load(path)
        except PatchcryptError as exc:
            result["error"] = str(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"Key.load({path}) hung"
    return result.get("error", "")


def test_key_file_must_be_a_small_regular_file(tmp_path):
    assert "not a regular file" in _load_in_thread("/dev/zero")
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo)
    assert "not a regular file" in _load_in_thread(fifo)
    big = tmp_path / "big.key"
    big.write_bytes(b" " * (2 << 20))
    os.chmod(big, 0o600)
    assert "key files are under 1 kB" in _load_in_thread(big)
    good = tmp_path / "good.key"
    Key.generate().save(good)
    assert _load_in_thread(good) == ""


# -- manifests ---------------------------------------------------------------------------------------------
@pytest.fixture
def encrypted(tmp_path):
    src = tmp_path / "plain" / "cat"
    src.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(3):
        write_image(src / f"{i}.png", rng.integers(0, 256, (36, 36, 3), dtype=np.uint8))
    key = tmp_path / "k.key"
    Key.generate().save(key)
    enc = tmp_path / "enc"
    assert main(["encrypt", str(tmp_path / "plain"), str(enc), "--key", str(key), "--scheme", "etc",
                 "--block-size", "8", "--pad", "--per-image"]) == 0
    return enc, key


@pytest.mark.parametrize("field, value", [
    ("block_size", "8"), ("block_size", -8), ("per_image", "yes"), ("pad", 1), ("key_fingerprint", 12),
    ("image_shape", [-40, 40, 3]), ("files", []), ("file_format", "gif"), ("version", 99),
    ("files.cat/0.png.orig_shape", [-36, 36]), ("files.cat/0.png.orig_shape", [36]),
    ("files.cat/0.png.nonce", "zz"), ("files.cat/0.png.nonce", None), ("files.cat/0.png.sha256", 5),
    ("options", "x"), ("classes", "cat"), ("jpeg_quality", 0), ("file_count", -1),
])
def test_malformed_manifest_is_one_line(encrypted, tmp_path, capsys, field, value):
    enc, key = encrypted
    path = enc / "patchcrypt.json"
    m = json.loads(path.read_text())
    if field.startswith("files."):
        rel, _, name = field[len("files."):].rpartition(".")
        m["files"][rel][name] = value
        if value is None:
            del m["files"][rel][name]
    else:
        m[field] = value
    path.write_text(json.dumps(m))
    capsys.readouterr()
    code = main(["decrypt", str(enc), str(tmp_path / "dec"), "--key", str(key)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "malformed manifest" in err[0], err
    assert not (tmp_path / "dec").exists()


def test_well_formed_manifest_decrypts(encrypted, tmp_path):
    enc, key = encrypted
    assert main(["decrypt", str(enc), str(tmp_path / "dec"), "--key", str(key)]) == 0
    assert read_image(tmp_path / "dec" / "cat" / "0.png").shape == (36, 36, 3)


# -- CIFAR-10 python batches ---------------------------------------------------------------------------------
def _fake_cifar(d, n=20, protocol=2):
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = [i % 10 for i in range(n)]
    batch = {b"batch_label": b"testing batch 1 of 1", b"labels": labels,
             b"data": images.transpose(0, 3, 1, 2).reshape(n, -1), b"filenames": [b"x.png"] * n}
    with open(d / "test_batch", "wb") as f:
        pickle.dump(batch, f, protocol=protocol)
    return images, labels


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batches_load_with_the_restricted_unpickler(tmp_path, protocol):
    images, labels = _fake_cifar(tmp_path / "cifar-10-batches-py", protocol=protocol)
    ds = load_dataset(tmp_path, "test")
    assert np.array_equal(ds.images, images) and list(ds.labels) == labels


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_crafted_cifar_pickle_runs_nothing(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    marker = tmp_path / "pwned"
    with open(d / "test_batch", "wb") as f:
        pickle.dump({b"data": _Payload(marker), b"labels": []}, f, protocol=2)
    with pytest.raises(PatchcryptError, match="refused"):
        load_dataset(tmp_path, "test")
    assert not marker.exists()
    with open(d / "test_batch", "wb") as f:
        pickle.dump({b"data": [1, 2, 3], b"labels": [0]}, f)
    with pytest.raises(PatchcryptError, match="not a CIFAR-10 batch"):
        load_dataset(tmp_path, "test")


def test_evaluate_cli_on_cifar_batches(tmp_path, capsys):
    import torch

    from patchcrypt.models import create_model
    from patchcrypt.models.checkpoint import save_checkpoint

    _fake_cifar(tmp_path / "cifar" / "cifar-10-batches-py")
    kwargs = {"num_classes": 10}
    model = create_model("vit_pico_patch4_32", seed=0, **kwargs)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "run" / "best.pt", model, model_name="vit_pico_patch4_32", model_kwargs=kwargs,
                    classes=[str(i) for i in range(10)])
    capsys.readouterr()
    code = main(["evaluate", str(tmp_path / "run"), "--data", str(tmp_path / "cifar"), "--split", "test",
                 "--json", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["n_images"] == 20
