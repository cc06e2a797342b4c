"""Transformation counts and the effective key space, checked against brute-force enumeration."""

import itertools
import math

import numpy as np
import pytest

from patchcrypt import Key
from patchcrypt.ciphers import create_cipher
from patchcrypt.cli.info import scheme_rows
from patchcrypt.ciphers.steps import KEY_BITS_LOG10, colour_tables, dihedral_tables

KEY = Key.from_bytes(bytes(range(32)))


def _distinct_maps(choices_per_step, size):
    """Count distinct compositions y = x[g] ^ m over every combination of per-step (g, m) choices."""
    seen = set()
    for combo in itertools.product(*choices_per_step):
        g, m = np.arange(size), np.zeros(size, np.uint8)
        for sg, sm in combo:  # then(): (g1, m1) then (g2, m2) = (g1[g2], m1[g2] ^ m2)
            g, m = g[sg], m[sg] ^ sm
        seen.add((g.tobytes(), m.tobytes()))
    return len(seen)


def _per_block(tables, n, L):
    """Every assignment of one local gather per block, as global (g, zero mask) choices."""
    out = []
    for pick in itertools.product(range(len(tables)), repeat=n):
        out.append((np.concatenate([b * L + tables[k] for b, k in enumerate(pick)]), np.zeros(n * L, np.uint8)))
    return out


def _block_perms(n, L):
    return [(np.concatenate([p * L + np.arange(L) for p in perm]), np.zeros(n * L, np.uint8))
            for perm in itertools.permutations(range(n))]


def _np_masks(n, L):
    return [(np.arange(n * L), np.repeat(np.array(bits, np.uint8) * 255, L))
            for bits in itertools.product((0, 1), repeat=n)]


def test_block_pixel_cs_counts_no_more_than_block_pixel():
    """A shared colour order after a shared pixel shuffle is one more permutation of the same L values."""
    for size, m in ((32, 4), (224, 16)):
        bp = create_cipher("block-pixel", KEY, block_size=m).transformations_log10(size, size, 3)
        bpcs = create_cipher("block-pixel-cs", KEY, block_size=m).transformations_log10(size, size, 3)
        assert bpcs == pytest.approx(bp)
    # brute force on two 1x1 RGB blocks (L = 3): BS x PS x BF x shared CS
    n, L = 2, 3
    ps = [(np.tile(np.array(p), n) + np.repeat(np.arange(n) * L, L), np.zeros(n * L, np.uint8))
          for p in itertools.permutations(range(L))]
    bf = [(np.arange(n * L), np.tile(np.array(b, np.uint8) * 255, n)) for b in itertools.product((0, 1), repeat=L)]
    cs = [(np.tile(t, n) + np.repeat(np.arange(n) * L, L), np.zeros(n * L, np.uint8)) for t in colour_tables(1)]
    count = _distinct_maps([_block_perms(n, L), ps, bf, cs], n * L)
    assert math.log10(count) == pytest.approx(
        create_cipher("block-pixel-cs", KEY, block_size=1).transformations_log10(1, 2, 3))


def test_etc_rotation_adds_nothing_on_1x1_blocks():
    n, L = 2, 3
    count = _distinct_maps([_block_perms(n, L), _per_block(dihedral_tables(1, 3), n, L), _np_masks(n, L),
                            _per_block(colour_tables(1), n, L)], n * L)
    assert count == 2 * 4 * 36  # 2 block orders x 2^2 NP x 6^2 CS; the 8 dihedral states all coincide
    assert create_cipher("etc", KEY, block_size=1).transformations_log10(1, 2, 3) == pytest.approx(math.log10(count))
    assert create_cipher("step-rf", KEY, block_size=1).transformations_log10(4, 4, 3) == 0


def test_etc_on_2x2_blocks_counts_every_state():
    """With M = 2 the 8 dihedral states, 2 NP and 6 CS states of a block are all different maps."""
    L = 12
    count = _distinct_maps([_per_block(dihedral_tables(2, 3), 1, L), _np_masks(1, L),
                            _per_block(colour_tables(2), 1, L)], L)
    assert count == 96
    assert create_cipher("etc", KEY, block_size=2).transformations_log10(2, 2, 3) == pytest.approx(math.log10(96))


def test_key_space_is_the_smaller_of_count_and_256_bits():
    assert KEY_BITS_LOG10 == pytest.approx(77.06, abs=0.005)
    big = create_cipher("ele", KEY, block_size=16)
    assert big.transformations_log10(224, 224, 3) > 900_000
    assert big.key_space_log10(224, 224, 3) == pytest.approx(KEY_BITS_LOG10)
    small = create_cipher("le", KEY, block_size=1)  # 6! x 2^6 maps on one RGB pixel: fewer than keys
    assert small.key_space_log10(4, 4, 3) == pytest.approx(math.log10(math.factorial(6) * 2 ** 6))
    for r in scheme_rows(224, 16, include_steps=True):
        if r["log10_key_space"] is not None:
            assert r["log10_key_space"] == pytest.approx(min(r["log10_transformations"], KEY_BITS_LOG10), abs=0.06)
            assert r["log10_key_space"] <= 77.06
