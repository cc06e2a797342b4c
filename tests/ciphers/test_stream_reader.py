"""ele's key stream on large images is read in order, a band at a time (issue 28, item 3): ``keys.StreamReader``
continues SHAKE-256 where hashlib can only return a prefix, so encrypting or decrypting holds a band's worth of
the stream, never all of it, and the ciphertexts are those of the written-out tables."""

import hashlib
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from patchcrypt.ciphers import base, create_cipher, program, steps
from patchcrypt.keys import Key, StreamReader

KEY = Key.from_bytes(bytes(range(32)))


def test_the_reader_gives_the_stream_s_bytes_in_any_order():
    plain = KEY.stream(["r"])
    head, want = plain.read(13), plain.read(300_000)
    s = KEY.stream(["r"])
    assert s.read(13) == head
    reader = s.tail(300_000)
    assert s.read(5) == KEY.stream(["r"]).read(300_018)[-5:]  # the stream goes on after the part read later
    cuts = [0, 1, 8, 4096, 70_001, 150_000, 300_000]
    parts = [(a, b) for a, b in zip(cuts[:-1], cuts[1:])]
    assert b"".join(reader.read_at(a, b - a) for a, b in parts) == want
    assert reader.passes == 1 and reader.produced == 300_013  # from the stream's start: 13 bytes skipped
    assert reader.read_at(8, 10) == want[8:18] and reader.passes == 2  # behind its place: started again
    # a read ahead (a band a thread started early) keeps the skipped bytes for the reads they belong to
    fresh = reader.fresh()
    assert fresh.read_at(150_000, 10) == want[150_000:150_010]
    assert fresh.read_at(4096, 100) == want[4096:4196] and fresh.read_at(4196, 10) == want[4196:4206]
    assert fresh.passes == 1 and fresh.nbytes == 150_000 - 110  # bytes 0..4096 wait for their read too
    with pytest.raises(ValueError):
        fresh.read_at(299_999, 2)


def test_the_reader_is_shake_256_continued():
    s = KEY.stream(["x", 1], nonce=b"n")
    reader = s.tail(1 << 20)
    got = b"".join(reader.read_at(a, 1 << 16) for a in range(0, 1 << 20, 1 << 16))
    assert got == KEY.stream(["x", 1], nonce=b"n").read(1 << 20)
    ref = hashlib.shake_256(reader._absorbed).digest(1 << 20)
    assert got == ref


def test_threads_reading_bands_in_pool_order_read_the_stream_once():
    reader = KEY.stream(["t"]).tail(64 * 4096)
    want = KEY.stream(["t"]).read(64 * 4096)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda a: reader.read_at(a, 4096), range(0, 64 * 4096, 4096)))
    assert b"".join(got) == want and reader.passes == 1 and reader.nbytes == 0


@pytest.fixture
def large(monkeypatch):
    """A 0.8 MP image takes the large-image paths: drawn rows, bands of 16k elements (a block row), no cached
    tables, gathered by a pool of 4 threads whatever the machine."""
    monkeypatch.setattr(steps, "DRAWN_ABOVE", 1 << 16)
    monkeypatch.setattr(program, "_BAND", 1 << 14)
    monkeypatch.setattr(base, "_BAND", 1 << 14)
    with ThreadPoolExecutor(4) as pool:
        monkeypatch.setattr(program, "_POOL", pool)
        yield


SHAPE = (2048, 128, 3)
STREAM = 2048 * 128 * 3 * 2 * 8  # the permutations' words, 8 bytes per 4-bit half (then a flip bit per half)


def _peak(fn):
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("m", [16, 8])
def test_large_ele_holds_a_band_of_its_stream_and_gives_the_same_bytes(m, request):
    x = np.random.default_rng(m).integers(0, 256, (1,) + SHAPE, dtype=np.uint8)
    written = create_cipher("ele", KEY, block_size=m)  # tables written out, from one whole-stream draw
    want = written.encrypt(x)
    request.getfixturevalue("large")
    cipher = create_cipher("ele", KEY, block_size=m)
    image = x.nbytes
    y, enc_peak = _peak(lambda: cipher.encrypt(x))
    assert np.array_equal(y, want)
    drawn = cipher.program(SHAPE)._compact.local
    assert isinstance(drawn, program.DrawnRows) and isinstance(drawn.source.reader, StreamReader)
    reader = drawn.source.reader
    assert reader.passes == 1 and reader.produced == STREAM  # one pass, in order, nothing read twice
    back, dec_peak = _peak(lambda: cipher.decrypt(y))
    assert np.array_equal(back, x)
    assert reader.passes == 2 and reader.produced == 2 * STREAM  # decryption too reads it in order
    # the image in and out, the flip bits (a 64th of the stream) and a band per thread: far below the stream
    assert enc_peak < 2 * image + STREAM / 4, enc_peak
    assert dec_peak < 2 * image + STREAM / 4, dec_peak
    assert cipher.program(SHAPE).nbytes < STREAM / 32
