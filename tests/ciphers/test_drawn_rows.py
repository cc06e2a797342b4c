"""ele's per-block key material on large images (issue 28, item 3): the key-stream bytes are kept and each
band's permutations and flips are drawn from them when the band is gathered (``program.DrawnRows``), and the
stream is produced by one SHAKE call. Same ciphertexts as the written-out tables, in every path."""

import pickle
import tracemalloc

import numpy as np
import pytest

from patchcrypt.ciphers import base, create_cipher, program, steps
from patchcrypt.keys import Key
from patchcrypt.runtime import to_nchw

KEY = Key.from_bytes(bytes(range(32)))


@pytest.fixture
def small_bands(monkeypatch):
    """Tiny thresholds, so a small image takes the drawn-rows and band paths."""
    monkeypatch.setattr(steps, "DRAWN_ABOVE", 10)
    monkeypatch.setattr(program, "_BAND", 700)
    monkeypatch.setattr(base, "_BAND", 700)


CASES = [(4, (48, 64, 3)), (3, (27, 33, 3)), (8, (48, 64, 1))]  # M = 3: rows of flips not on a byte


@pytest.mark.parametrize("m,shape", CASES)
@pytest.mark.parametrize("per_image", [False, True])
def test_drawn_rows_give_the_same_ciphertexts(m, shape, per_image, request):
    x = np.random.default_rng(m).integers(0, 256, (2,) + shape, dtype=np.uint8)
    nonces = [bytes([i]) * 16 for i in range(2)] if per_image else None
    ref = create_cipher("ele", KEY, block_size=m, per_image=per_image)
    want, want_map = ref.encrypt(x, nonces), ref.key_map(shape, nonces[0] if nonces else b"")
    request.getfixturevalue("small_bands")
    cipher = create_cipher("ele", KEY, block_size=m, per_image=per_image)
    y = cipher.encrypt(x, nonces)
    assert np.array_equal(y, want)
    assert np.array_equal(cipher.decrypt(y, nonces), x)
    assert np.array_equal(cipher.encrypt(to_nchw(x), nonces).numpy(), to_nchw(want).numpy())
    got_map = cipher.key_map(shape, nonces[0] if nonces else b"")
    assert np.array_equal(got_map.g, want_map.g) and np.array_equal(got_map.m, want_map.m)
    if not per_image:
        assert isinstance(cipher.program(shape)._compact.local, program.DrawnRows)
        assert np.array_equal(cipher.program(shape).map.inverse().g, ref.program(shape).map.inverse().g)


@pytest.mark.parametrize("width", [96, 54])
def test_drawn_tables_are_the_stream_s_draws(width, small_bands):
    geo = steps.Geometry(10, 1, width // 2)
    drawn = steps.learnable(KEY.stream(["t"]), geo, shared=False)
    assert isinstance(drawn.local, program.DrawnRows)
    s = KEY.stream(["t"])
    perms, flips = s.permutations(10, width), s.bits(10 * width).reshape(10, width)
    assert np.array_equal(np.asarray(drawn.local), perms)
    assert np.array_equal(np.asarray(drawn.mask), flips * 15)
    written = program.BlockMap(10, width, local=perms.astype(np.int16), mask=(flips * 15).astype(np.uint8))
    src = np.random.default_rng(0).permutation(10)
    for a, b in ((drawn.inverse(), written.inverse()),
                 (program.BlockMap(10, width, src=src).then(drawn).inverse(),
                  program.BlockMap(10, width, src=src).then(written).inverse())):
        assert np.array_equal(a.src, b.src) if b.src is not None else a.src is None
        assert np.array_equal(np.asarray(a.local), b.local) and np.array_equal(np.asarray(a.mask), b.mask)
    # composed after another in-block step, the drawn tables are written out: same map
    rf = steps.rotate_flip(KEY.stream(["rf"]), geo)
    both, ref = rf.lift_to_nibbles().then(drawn), rf.lift_to_nibbles().then(written)
    assert np.array_equal(both.local, ref.local) and np.array_equal(both.mask, ref.mask)


def test_a_program_with_drawn_rows_pickles(small_bands):
    x = np.random.default_rng(5).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    cipher = create_cipher("ele", KEY, block_size=4)
    prog = cipher.program((32, 32, 3))
    back = pickle.loads(pickle.dumps(prog))
    assert back._compact.local.same_draw(back._compact.mask)  # the stream bytes travel once, shared
    assert back.nbytes == prog.nbytes
    assert np.array_equal(back.apply_numpy(x.reshape(1, -1), "enc"), cipher.encrypt(x).reshape(1, -1))


def test_ele_compiles_within_its_stream(monkeypatch):
    """Compiling ele on an image above DRAWN_ABOVE holds the stream bytes and little else: it used to hold
    the stream (doubled, and the old copy while the new one was made) plus int16 permutations and the mask."""
    monkeypatch.setattr(steps, "DRAWN_ABOVE", 1 << 20)
    monkeypatch.setattr(program, "_BAND", 1 << 16)  # and a large image's gathers: no table cached
    monkeypatch.setattr(base, "_BAND", 1 << 16)
    shape = (512, 512, 3)
    stream_bytes = 512 * 512 * 3 * 2 * 8
    cipher = create_cipher("ele", KEY, block_size=16)
    tracemalloc.start()
    try:
        prog = cipher.program(shape)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.1 * stream_bytes
    cipher.decrypt(cipher.encrypt(np.zeros((1,) + shape, np.uint8)))
    assert prog.nbytes < 1.1 * stream_bytes  # both directions draw from the same bytes


def test_reserve_gives_the_same_bytes_in_one_call():
    calls = []

    class Counting:
        def __init__(self, h):
            self.h = h

        def digest(self, n):
            calls.append(n)
            return self.h.digest(n)

    plain = KEY.stream(["r"])
    want = [plain.read(5), plain.read(70_000), plain.read(3)]
    s = KEY.stream(["r"])
    s._shake = Counting(s._shake)
    s.read(5)
    s.reserve(70_003)
    got = [s.read(70_000), s.read(3)]
    assert got == want[1:] and len(calls) == 2 and calls[-1] == 70_008


def test_a_tree_of_large_images_of_two_sizes_holds_one_stream_at_a_time(monkeypatch):
    """The cached program of the last size (its stream bytes) is dropped before the next size compiles: it
    would be evicted once the new one is cached anyway, and the two streams are never held together."""
    monkeypatch.setattr(steps, "DRAWN_ABOVE", 1 << 20)
    monkeypatch.setattr(program, "_BAND", 1 << 16)
    monkeypatch.setattr(base, "_BAND", 1 << 16)
    cipher = create_cipher("ele", KEY, block_size=16)
    cipher._CACHE_BYTES = 1 << 20
    stream_bytes = 512 * 512 * 3 * 2 * 8
    tracemalloc.start()  # before the first size: its bytes count while they are held
    try:
        assert cipher.program((512, 512, 3)).nbytes < stream_bytes / 20  # the stream is read, not kept
        tracemalloc.reset_peak()
        cipher.program((512, 544, 3))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.2 * stream_bytes * 544 / 512
