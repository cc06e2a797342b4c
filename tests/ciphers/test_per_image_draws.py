"""Per-image keys drawn for a whole batch at once give every image the key material its own stream gives."""

import numpy as np
import pytest

from patchcrypt import Key
from patchcrypt.ciphers import create_cipher
from patchcrypt.ciphers.program import BlockBatch
from patchcrypt.ciphers.registry import SCHEMES
from patchcrypt.ciphers.steps import Geometry, batch_step_map, step_map

KEY = Key.from_bytes(bytes(range(32)))
NONCES = [bytes([i]) * 16 for i in range(7)]


def test_stream_batch_reads_every_stream():
    streams = KEY.streams(["t", 1], NONCES)
    alone = [KEY.stream(["t", 1], nc) for nc in NONCES]
    assert np.array_equal(streams.words(5), np.stack([s.words(5) for s in alone]))
    assert np.array_equal(streams.bits(13), np.stack([s.bits(13) for s in alone]))
    assert np.array_equal(streams.permutations(3, 9), np.stack([s.permutations(3, 9) for s in alone]))
    assert np.array_equal(streams.integers(6, 11), np.stack([s.integers(6, 11) for s in alone]))


def test_stream_batch_integers_with_rejected_words():
    # a bound just over 2^63 rejects about half of all words: rows finish by their own stream
    m = (1 << 63) + 1
    streams = KEY.streams(["t", 2], NONCES)
    got = streams.integers(m, 20)
    want = np.stack([KEY.stream(["t", 2], nc).integers(m, 20) for nc in NONCES])
    assert np.array_equal(got, want)


@pytest.mark.parametrize("symbol,shared", [("BS", False), ("RF", False), ("RF", True), ("NP", False),
                                           ("BF", False), ("NPV", False), ("CS", False), ("CS", True),
                                           ("PS", False), ("PS", True), ("LE", False), ("LE", True)])
def test_batch_step_equals_each_image(symbol, shared):
    geo = Geometry(n=6, m=2, c=3)
    label = ["step", symbol]
    batch = batch_step_map(symbol, KEY.streams(label, NONCES), geo, shared)
    for i, nc in enumerate(NONCES):
        one = step_map(symbol, KEY.stream(label, nc), geo, shared)
        width = one.L
        local = batch.gathers()
        if one.src is None:
            assert batch.src is None
        else:
            assert np.array_equal(batch.src[i], one.src)
        want = np.broadcast_to(np.arange(width) if one.local is None else one.local, (6, width))
        assert np.array_equal(np.broadcast_to(np.arange(width) if local is None else local[i], (6, width)), want)
        mask = np.zeros((6, width), np.uint8) if one.mask is None else one.mask
        got = np.zeros((6, width), np.uint8) if batch.mask is None else batch.mask[i]
        assert np.array_equal(np.broadcast_to(got, (6, width)), np.broadcast_to(mask, (6, width)))


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_large_batch_equals_one_image_at_a_time(name):
    m = SCHEMES[name].resolve_block_size(None, default=4)
    cipher = create_cipher(name, KEY, block_size=m, per_image=True)
    x = np.random.default_rng(1).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    nonces = cipher.new_nonces(24)
    batch = cipher.encrypt(x, nonces)
    assert np.array_equal(batch, np.concatenate([cipher.encrypt(x[i:i + 1], [nonces[i]]) for i in range(24)]))
    back = cipher.decrypt(batch, nonces)
    assert np.array_equal(back, np.concatenate([cipher.decrypt(batch[i:i + 1], [nonces[i]]) for i in range(24)]))


def test_composed_states_written_out_past_the_table_limit(monkeypatch):
    cipher = create_cipher("etc", KEY, block_size=4, per_image=True)
    x = np.random.default_rng(2).integers(0, 256, (9, 16, 16, 3), dtype=np.uint8)
    nonces = cipher.new_nonces(9)
    tables = cipher.encrypt(x, nonces)
    monkeypatch.setattr(BlockBatch, "MAX_STATES", 1)  # every composition of states gathers arrays instead
    assert np.array_equal(cipher.encrypt(x, nonces), tables)
    assert np.array_equal(cipher.decrypt(tables, nonces), x)
