"""The compiled kernels (ciphers/kernels.py: nibble maps of le/ele, byte maps of the other schemes) give
exactly the bytes of the numpy path: both directions, several shapes and batch sizes (around the 4 or 8 images
gathered together), the threaded batch split, the large-image bands, torch CPU tensors; and the library falls
back to numpy, silently and with the same bytes, when numba is missing or PATCHCRYPT_NO_JIT=1."""

import sys

import numpy as np
import pytest

from patchcrypt.ciphers import create_cipher, kernels, program
from patchcrypt.keys import Key

numba = pytest.importorskip("numba")

KEY = Key.from_bytes(bytes(range(32)))


@pytest.fixture(autouse=True)
def kernels_for_every_batch(monkeypatch):
    """The small batches here take the kernels too (by default only batches of 1 MiB and more do)."""
    monkeypatch.setattr(program, "_JIT_BYTES", 0)


# (batch, H, W, C, M): one image, small blocks, a non-square image, one channel, 8 and 19 images (4 or 8 at a
# time and the rest), and a batch of more than 1 MB (split across the thread pool)
SHAPES = [(1, 16, 16, 3, 8), (3, 32, 32, 3, 4), (2, 48, 64, 3, 16), (2, 24, 40, 1, 8), (8, 16, 16, 3, 4),
          (19, 32, 32, 3, 8), (24, 128, 128, 3, 16)]
NIBBLE = ["le", "ele"]
BYTE = ["etc", "block-pixel", "pe", "step-ps-perblock"]


def _images(shape, seed=0):
    n, h, w, c, _ = shape
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def _both_paths(monkeypatch, fn):
    """``fn()`` with the kernels, then with PATCHCRYPT_NO_JIT=1 (the numpy path)."""
    monkeypatch.delenv("PATCHCRYPT_NO_JIT", raising=False)
    assert kernels.nibble_gather() is not None and kernels.byte_gather() is not None
    jit = fn()
    monkeypatch.setenv("PATCHCRYPT_NO_JIT", "1")
    assert kernels.nibble_gather() is None and kernels.byte_gather() is None
    plain = fn()
    monkeypatch.delenv("PATCHCRYPT_NO_JIT")
    return jit, plain


@pytest.mark.parametrize("scheme", NIBBLE + BYTE)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_kernel_equals_numpy_both_directions(scheme, shape, monkeypatch):
    x = _images(shape)
    if shape[3] not in create_cipher(scheme, KEY, block_size=shape[4]).spec.channels:
        pytest.skip(f"{scheme} takes colour images only")

    def run():
        cipher = create_cipher(scheme, KEY, block_size=shape[4])  # fresh: no tables shared between paths
        y = cipher.encrypt(x)
        return y, cipher.decrypt(y)

    (y_jit, back_jit), (y_np, back_np) = _both_paths(monkeypatch, run)
    assert np.array_equal(y_jit, y_np)
    assert np.array_equal(back_jit, back_np)
    assert np.array_equal(back_jit, x)
    assert not np.array_equal(y_jit, x)


@pytest.mark.parametrize("scheme", NIBBLE + BYTE)
def test_kernel_equals_numpy_in_bands(scheme, monkeypatch):
    """A tiny band size sends a 48x64 image through the large-image paths (tables a band at a time, and for
    ele's decryption the stream-ordered bands), which call the kernel on one image's slice at a time."""
    x = _images((2, 48, 64, 3, 8), seed=1)
    whole = create_cipher(scheme, KEY, block_size=8).encrypt(x)
    monkeypatch.setattr(program, "_BAND", 700)

    def run():
        cipher = create_cipher(scheme, KEY, block_size=8)
        y = cipher.encrypt(x)
        back = cipher.decrypt(y)
        cipher.program((48, 64, 3)).map  # the flat map now exists: the next calls take the flat-table bands
        return y, back, cipher.encrypt(x), cipher.decrypt(y)

    got_jit, got_np = _both_paths(monkeypatch, run)
    for a, b in zip(got_jit, got_np):
        assert np.array_equal(a, b)
    assert np.array_equal(got_jit[0], whole) and np.array_equal(got_jit[2], whole)
    assert np.array_equal(got_jit[1], x) and np.array_equal(got_jit[3], x)


@pytest.mark.parametrize("scheme", ["ele", "etc"])
def test_kernel_on_torch_cpu_tensors(scheme, monkeypatch):
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(_images((10, 32, 32, 3, 8), seed=2)).permute(0, 3, 1, 2).contiguous()

    def run():
        cipher = create_cipher(scheme, KEY, block_size=8)
        y = cipher.encrypt(x)
        return y.numpy().copy(), cipher.decrypt(y).numpy().copy()

    (y_jit, back_jit), (y_np, back_np) = _both_paths(monkeypatch, run)
    assert np.array_equal(y_jit, y_np) and np.array_equal(back_jit, back_np)
    assert np.array_equal(back_jit, x.numpy())


@pytest.mark.parametrize("count", [3, 8, 11])
@pytest.mark.parametrize("index", [np.int32, np.int64])
def test_kernels_equal_numpy_on_drawn_tables_and_odd_arrays(count, index):
    """The kernels against the numpy formulas on arbitrary tables (int32, or int64 as for images of 2^31
    values and more), a read-only source and an output that is a strided view (what the band paths pass)."""
    rng = np.random.default_rng(4)
    d = 999
    x = rng.integers(0, 256, (count, d), dtype=np.uint8)
    x.setflags(write=False)
    g = rng.permutation(2 * d).astype(index)
    bh, sh, bl, sl, m = program._nibble_tables(program.Map(g, rng.integers(0, 16, 2 * d, dtype=np.uint8)))
    bh, bl = bh.astype(index), bl.astype(index)
    wants = {"nibble": (((x[:, bh] << sh) & 0xF0) | ((x[:, bl] >> sl) & 0x0F)) ^ m,
             "byte": x[:, g[:d] // 2] ^ m, "byte, no mask": x[:, g[:d] // 2]}
    runs = {"nibble": (kernels.nibble_gather(), (bh, sh, bl, sl, m)), "byte": (kernels.byte_gather(), (g[:d] // 2, m)),
            "byte, no mask": (kernels.byte_gather(), (g[:d] // 2, None))}
    for name, (kernel, tabs) in runs.items():
        wide = np.zeros((count, d + 10), dtype=np.uint8)
        kernel(x, wide[:, 5:5 + d], *tabs)
        assert np.array_equal(wide[:, 5:5 + d], wants[name]), name
        assert not wide[:, :5].any() and not wide[:, 5 + d:].any()  # nothing written outside the view


def test_fallback_when_numba_is_missing(monkeypatch):
    x = _images((2, 32, 32, 3, 8), seed=5)
    want = create_cipher("le", KEY, block_size=8).encrypt(x)
    want_etc = create_cipher("etc", KEY, block_size=8).encrypt(x)
    monkeypatch.setattr(kernels, "_KERNELS", None)  # not built yet in this "process"
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba raises ImportError
    assert kernels.nibble_gather() is None and kernels.byte_gather() is None
    for scheme, expected in (("le", want), ("etc", want_etc)):
        cipher = create_cipher(scheme, KEY, block_size=8)
        y = cipher.encrypt(x)
        assert np.array_equal(y, expected)
        assert np.array_equal(cipher.decrypt(y), x)


@pytest.mark.parametrize("value, off", [("1", True), ("yes", True), ("0", False), ("", False)])
def test_no_jit_variable(value, off, monkeypatch):
    monkeypatch.setenv("PATCHCRYPT_NO_JIT", value)
    assert kernels.disabled() is off
    assert (kernels.nibble_gather() is None) is off and (kernels.byte_gather() is None) is off


def test_jit_without_a_cache_folder_compiles_quietly():
    """numba finds no cache folder for a function without a source file (as for a read-only install with a
    read-only home): ``jit`` compiles it without a disk cache instead of raising."""
    space = {}
    exec("def add_one(a):\n    for i in range(a.size):\n        a[i] += 1\n", space)
    with pytest.raises(RuntimeError):
        numba.njit(cache=True)(space["add_one"])  # what jit guards against
    fn = kernels.jit(space["add_one"])
    a = np.arange(5)
    fn(a)
    assert a.tolist() == [1, 2, 3, 4, 5]


def _spy(monkeypatch, kind):
    """Calls of the ``kind`` kernel, recorded as the shapes of their source batches."""
    kernels.nibble_gather()
    built = dict(kernels._KERNELS)
    calls = []

    def spy(*args):
        calls.append(args[0].shape)
        return built[kind](*args)

    monkeypatch.setattr(kernels, "_KERNELS", {**built, kind: spy})
    return calls


@pytest.mark.parametrize("scheme, kind", [("le", "nibble"), ("ele", "nibble"), ("etc", "byte"), ("pe", "byte")])
def test_fixed_key_maps_go_through_the_kernels(scheme, kind, monkeypatch):
    calls = _spy(monkeypatch, kind)
    cipher = create_cipher(scheme, KEY, block_size=8)
    cipher.decrypt(cipher.encrypt(_images((2, 32, 32, 3, 8))))
    assert calls == [(2, 32 * 32 * 3)] * 2


def test_small_batches_stay_on_numpy(monkeypatch):
    """Below 1 MiB a batch does not pay a process's first kernel call (about a second)."""
    monkeypatch.setattr(program, "_JIT_BYTES", 1 << 20)
    calls = _spy(monkeypatch, "nibble")
    cipher = create_cipher("le", KEY, block_size=16)
    cipher.encrypt(_images((1, 224, 224, 3, 16)))
    assert calls == []
    cipher.encrypt(_images((24, 128, 128, 3, 16)))  # 1.2 MB: two chunks on this machine's thread pool
    assert sum(c[0] for c in calls) == 24


def test_kernels_compile_without_a_writable_cache_folder(monkeypatch):
    """A read-only install with a read-only home: every cache folder numba tries refuses its test file, numba
    refuses ``cache=True``, and the kernels are compiled without a disk cache, giving the same bytes."""
    from numba.core import caching

    def refuse(self):
        raise PermissionError(13, "Permission denied", self.get_cache_path())

    monkeypatch.setattr(caching._CacheLocator, "ensure_cache_path", refuse)
    with pytest.raises(RuntimeError):
        numba.njit(cache=True)(kernels._byte_gather)  # what jit guards against
    fresh = kernels.jit(kernels._nibble_gather)
    rng = np.random.default_rng(6)
    x = rng.integers(0, 256, (9, 300), dtype=np.uint8)
    tabs = program._nibble_tables(program.Map(rng.permutation(600).astype(np.int32),
                                              rng.integers(0, 16, 600, dtype=np.uint8)))
    got, want = np.empty_like(x), np.empty_like(x)
    fresh(x, got, *tabs)
    program._apply_nibbles_np(x, want, tabs)
    assert np.array_equal(got, want)
