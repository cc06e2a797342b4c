"""ele at large blocks: the FAQ in float32 that skips the first (rank-one) assignment and stops once a step
gains next to nothing (:func:`patchcrypt.attacks.many.inblock.faq_large`)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize

from patchcrypt.attacks.many import ele
from patchcrypt.attacks.many.inblock import faq_large, faq_symmetric
from patchcrypt.attacks.qap import objective
from patchcrypt.blocks import block_layout
from test_many_ele_warm import _maps, assignments, smooth_block_correlation  # noqa: F401 (a fixture)


def _problem(seed: int):
    b = smooth_block_correlation(seed=seed)
    perm = np.random.default_rng(seed + 1).permutation(len(b))
    a = b[np.ix_(perm, perm)] + 0.05 * np.random.default_rng(seed + 2).normal(size=b.shape)
    a = (a + a.T) / 2
    return a - a.mean(), b - b.mean()


def test_the_first_step_sorts_as_the_rank_one_assignment_would():
    a, b = _problem(0)
    n = len(a)
    grad = np.outer(a.sum(1), b.sum(0)) / n           # the gradient at the barycenter, halved
    cols = scipy.optimize.linear_sum_assignment(grad, maximize=True)[1]
    sorted_cols, _ = faq_large(a, b, maxiter=1)
    assert np.isclose(grad[np.arange(n), sorted_cols].sum(), grad[np.arange(n), cols].sum(), rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 3, 5])
def test_fewer_assignments_and_no_worse_than_the_float64_faq(assignments, seed):
    a, b = _problem(seed)
    old = faq_symmetric(a, b, maxiter=10)
    old_count, assignments[0] = assignments[0], 0
    new, solved = faq_large(a, b, maxiter=10)
    assert solved == assignments[0] < old_count               # counted, not timed
    assert objective(a, b, new) >= objective(a, b, old) - 1e-6 * abs(objective(a, b, old))


def test_a_start_at_the_answer_costs_one_assignment_and_is_returned_as_is(assignments):
    a, b = _problem(1)
    best, _ = faq_large(a, b, maxiter=50)
    assignments[0] = 0
    again, solved = faq_large(a, b, maxiter=50, start=best)
    assert np.array_equal(again, best) and solved == assignments[0] == 1


def test_large_blocks_solve_at_most_steps_assignments_a_position(monkeypatch, assignments):
    y, cp_u, cp_l = _maps(monkeypatch, large=True)
    ele.per_position_map(y, cp_u, cp_l, 4, lower_starts=0)
    positions = len(block_layout(16, 16, 3, 4))
    assert assignments[0] <= positions * (ele.LARGE_STEPS - 1)   # no first step's, no rounding's


def test_large_blocks_polish_no_lower_halves(monkeypatch):
    """The lower halves' FAQ answer stands at large blocks (no pairwise swaps, each an (L, L) product); the
    upper halves are still polished."""
    from patchcrypt.attacks import qap

    y, cp_u, cp_l = _maps(monkeypatch, large=True)
    calls, gains = [0], qap.swap_gains

    def counted(*args):
        calls[0] += 1
        return gains(*args)

    monkeypatch.setattr(qap, "swap_gains", counted)
    ele.per_position_map(y, cp_u, cp_l, 4, upper_starts=0)
    assert calls[0] == 0
    ele.per_position_map(y, cp_u, cp_l, 4, lower_starts=0)
    assert calls[0] >= len(block_layout(16, 16, 3, 4))        # at least one look a position
