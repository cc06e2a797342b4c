"""Large images are compiled and applied a band at a time (issue 19, item 5); the bands must give exactly
the bytes of the one-shot path. A tiny band size makes a 48x64 image take the large-image paths."""

import numpy as np
import pytest

from patchcrypt.ciphers import create_cipher, program
from patchcrypt.keys import Key

KEY = Key.from_bytes(bytes(range(32)))


@pytest.mark.parametrize("scheme", ["etc", "block-pixel", "block-pixel-cs", "le", "ele", "pe", "etc-gray",
                                    "step-ps-perblock"])
@pytest.mark.parametrize("per_image", [False, True])
def test_banded_equals_one_shot(scheme, per_image, monkeypatch):
    m = 8
    x = np.random.default_rng(3).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    nonces = [bytes([i]) * 16 for i in range(2)] if per_image else None
    whole = create_cipher(scheme, KEY, block_size=m, per_image=per_image).encrypt(x, nonces)
    monkeypatch.setattr(program, "_BAND", 700)  # not a multiple of any block length
    banded = create_cipher(scheme, KEY, block_size=m, per_image=per_image)
    y = banded.encrypt(x, nonces)
    assert np.array_equal(y, whole)
    back = banded.decrypt(y, nonces)
    if scheme != "etc-gray":  # etc-gray decrypts up to its colour conversion
        assert np.array_equal(back, x)
    # torch CPU tensors (channels first) and programs whose flat map exists take the flat-table bands
    import torch

    from patchcrypt.runtime import to_nchw

    yt = banded.encrypt(to_nchw(x), nonces)
    assert np.array_equal(yt.numpy(), to_nchw(whole).numpy())
    if not per_image:
        shape = (48, 64 + 32, 1) if scheme == "etc-gray" else (48, 64, 3)
        assert banded.program(shape).map.g.size  # materialise the flat map
        assert np.array_equal(banded.encrypt(x), whole)


def test_program_tables_are_int32_and_not_copied():
    prog = create_cipher("etc", KEY, block_size=16).program((224, 224, 3))
    g, m = prog.tables("enc")
    assert g.dtype == np.int32 and g is prog.map.g  # the table is the map's own index array
    assert "dec" not in prog._maps  # encrypting never builds the decryption map


def test_cache_keeps_large_tables_of_one_shape_only():
    cipher = create_cipher("block-pixel", KEY, block_size=16)
    cipher._CACHE_BYTES = 1 << 20
    for side in (320, 336, 352):
        cipher.encrypt(np.zeros((1, side, side, 3), np.uint8))
    assert len(cipher._programs) == 1


@pytest.mark.parametrize("m", [3, 6, 8, 255])
def test_banded_integer_draws_equal_the_stream_s(m, monkeypatch):
    from patchcrypt.ciphers import steps

    size = 5000
    ref = KEY.stream(("draw", m))
    want = ref.integers(m, size)
    monkeypatch.setattr(steps, "_DRAW_BAND", 300)
    got_stream = KEY.stream(("draw", m))
    got = steps._integers(got_stream, m, size)
    assert np.array_equal(got, want)
    assert got_stream.read(16) == ref.read(16)  # the stream is left at the same place


@pytest.mark.parametrize("subsampling", ["420", "444"])
def test_etc_gray_colour_conversion_in_row_bands_is_exact(subsampling, monkeypatch):
    from patchcrypt.ciphers.etc_gray import EtcGrayCipher

    x = np.random.default_rng(5).integers(0, 256, (2, 96, 64, 3), dtype=np.uint8)
    whole = create_cipher("etc-gray", KEY, block_size=8, subsampling=subsampling)
    y, z = whole.encrypt(x), whole.decrypt(whole.encrypt(x))
    monkeypatch.setattr(EtcGrayCipher, "_ROWS", 16)
    banded = create_cipher("etc-gray", KEY, block_size=8, subsampling=subsampling)
    assert np.array_equal(banded.encrypt(x), y)
    assert np.array_equal(banded.decrypt(y), z)
