"""ele at large blocks: a later round starts each block position's FAQ from the round before's answer."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize

from patchcrypt import Key
from patchcrypt.attacks.keymaps import unit_indices
from patchcrypt.attacks.many import ele
from patchcrypt.attacks.many.inblock import correlation, recover_permutation
from patchcrypt.blocks import block_layout
from patchcrypt.ciphers import create_cipher
from patchcrypt.ciphers.program import Map
from test_many_ele_fast import smooth_images


@pytest.fixture
def assignments(monkeypatch):
    """Counts the linear assignments solved (one per FAQ step, one to round the last)."""
    count = [0]
    solve = scipy.optimize.linear_sum_assignment

    def counted(*args, **kw):
        count[0] += 1
        return solve(*args, **kw)

    monkeypatch.setattr(scipy.optimize, "linear_sum_assignment", counted)
    return count


def smooth_block_correlation(m: int = 6, seed: int = 0) -> np.ndarray:
    """(3·m·m, 3·m·m) correlation of the values of m×m RGB blocks of generated smooth images."""
    x = smooth_images(60, 4 * m, seed).reshape(60, 4, m, 4, m, 3).transpose(0, 1, 3, 2, 4, 5)
    return correlation(x.reshape(-1, m * m * 3).astype(np.float64))


def test_a_warm_start_at_the_answer_ends_at_once(assignments):
    b = smooth_block_correlation()
    perm = np.random.default_rng(1).permutation(len(b))
    a = b[np.ix_(perm, perm)]                       # cipher position i holds plain position perm[i]
    cold, _ = recover_permutation(a, b, starts=1)
    cold_steps, assignments[0] = assignments[0], 0
    warm, _ = recover_permutation(a, b, start=perm)
    assert np.array_equal(warm, perm)
    assert assignments[0] <= 2 < cold_steps        # one step finds nothing better, one rounds it
    assert (b[np.ix_(cold, cold)] * a).sum() <= (b[np.ix_(perm, perm)] * a).sum() + 1e-9


def test_position_target_reads_back_every_positions_map():
    lay = block_layout(16, 16, 3, 4)
    halves = unit_indices(lay, True)
    rng = np.random.default_rng(0)
    g, targets = np.arange(halves.size), []
    for q in range(len(lay)):
        targets.append(rng.permutation(halves.shape[1]))
        g[halves[q][targets[-1]]] = halves[q]
    dec = Map(g, np.zeros(halves.size, dtype=np.uint8))
    for q in range(len(lay)):
        assert np.array_equal(ele._position_target(dec, halves[q]), targets[q])


def _maps(monkeypatch, large: bool):
    victims, public = smooth_images(40, 16, 1), smooth_images(60, 16, 2)
    y = create_cipher("ele", Key.from_bytes(bytes(range(32))), block_size=4).encrypt(victims)
    cp_u, cp_l = ele.half_correlations(public, 4)
    if large:               # the large-block path on blocks of 48 values (a test's size)
        monkeypatch.setattr(ele, "LARGE_BLOCK", 16)
    return y, cp_u, cp_l


def test_large_blocks_start_later_rounds_from_the_round_before(monkeypatch, assignments):
    y, cp_u, cp_l = _maps(monkeypatch, large=True)
    first = ele.per_position_map(y, cp_u, cp_l, 4, lower_starts=0)
    cold, assignments[0] = assignments[0], 0
    again = ele.per_position_map(y, cp_u, cp_l, 4, lower_starts=0, previous=first)
    warm = assignments[0]
    positions = len(block_layout(16, 16, 3, 4))
    assert 2 * positions < cold <= positions * (ele.LARGE_STEPS + 1)     # the barycenter start alone
    assert warm <= 3 * positions < cold    # from the answer: mostly one step finds it, one rounds it
    # against the same reference the warm start keeps what the round before found, or improves on it
    assert np.array_equal(_flip_of_cipher_half(again), _flip_of_cipher_half(first))
    assert _objective(again, y, cp_u) >= _objective(first, y, cp_u) - 1e-6


def test_small_blocks_ignore_the_round_before(monkeypatch):
    y, cp_u, cp_l = _maps(monkeypatch, large=False)
    first = ele.per_position_map(y, cp_u, cp_l, 4, upper_starts=4, lower_starts=0)
    stale = Map(np.roll(first.g, 2), first.m)
    again = ele.per_position_map(y, cp_u, cp_l, 4, upper_starts=4, lower_starts=0, previous=stale)
    assert np.array_equal(again.g, first.g) and np.array_equal(again.m, first.m)


def _flip_of_cipher_half(dec: Map) -> np.ndarray:
    out = np.empty_like(dec.m)
    out[dec.g] = dec.m
    return out


def _objective(dec: Map, y: np.ndarray, cp_u: np.ndarray) -> float:
    """Σ over block positions of the QAP objective of the decrypted upper halves against ``cp_u``."""
    z = ele._decrypt_halves(dec, y)
    x = z.reshape(len(z), 4, 4, 4, 4, 3).transpose(1, 3, 0, 2, 4, 5).reshape(16, len(z), 48) >> 4
    b = cp_u - cp_u.mean()
    total = 0.0
    for rows in x.astype(np.float64):
        a = correlation(rows)
        total += float(((a - a.mean()) * b).sum())
    return total
