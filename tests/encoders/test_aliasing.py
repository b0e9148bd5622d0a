"""Aliasing found from the dynamics (G-test on splits of a code's frames) and split by it."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2_contingency

from spmn.encoders.aliasing import (
    Splits,
    apply_splits,
    find_aliasing,
    g_test,
    outcomes,
    refine,
    two_means_cut,
)


def _log(n, seed, aliased=True):
    """Four states; frames are 2-D points (state centre + noise). Codes: states 0 and 1 share
    code 0 when ``aliased``; state s goes to state (s + a) % 4 (a in {0, 1}); with 20% chance
    the move is to a random state (so outcomes are noisy, as in a slippery grid)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 5.0], [5.0, 5.0]])
    s = rng.integers(0, 4, n)
    a = rng.integers(0, 2, n)
    s2 = np.where(rng.random(n) < 0.2, rng.integers(0, 4, n), (s + a) % 4)
    F = centres[s] + 0.1 * rng.normal(size=(n, 2))
    Fn = centres[s2] + 0.1 * rng.normal(size=(n, 2))
    code = np.array([0, 0, 1, 2]) if aliased else np.arange(4)
    return F, Fn, code[s], code[s2], a, s, s2


def test_g_test_matches_scipy_log_likelihood_ratio():
    rng = np.random.default_rng(0)
    side = rng.integers(0, 2, 400)
    y = np.where(side == 1, rng.integers(0, 3, 400), rng.integers(1, 4, 400))
    a = np.zeros(400, int)
    G, df = g_test(side.astype(bool), a, y)
    T = np.zeros((2, 4))
    np.add.at(T, (side, y), 1)
    ref = chi2_contingency(T, correction=False, lambda_="log-likelihood")
    assert G == pytest.approx(ref.statistic, rel=1e-12) and df == ref.dof
    # stratified by action: the sum over actions
    a2 = np.r_[np.zeros(200, int), np.ones(200, int)]
    G2, df2 = g_test(side.astype(bool), a2, y)
    parts = [g_test(side[a2 == k].astype(bool), a2[a2 == k], y[a2 == k]) for k in (0, 1)]
    assert G2 == pytest.approx(sum(p[0] for p in parts)) and df2 == sum(p[1] for p in parts)


def test_two_means_cut_separates_two_groups():
    p = np.r_[np.zeros(30), np.ones(70) * 4.0]
    assert 0.0 < two_means_cut(p) < 4.0


def test_aliased_code_is_found_and_a_clean_one_is_not():
    F, Fn, z, zn, a, s, s2 = _log(4000, 0)
    y = outcomes(zn, np.zeros(4000, bool), np.zeros(4000, int))
    found = find_aliasing(F, z, a, y, seed=0)
    assert [f.code for f in found] == [0] and found[0].p_adjusted < 1e-6
    assert set(found[0].to_dict()) >= {"code", "G", "df", "p", "p_adjusted", "rows", "sides"}
    false_alarms = 0
    for seed in range(10):  # no aliasing: the splits are nuisance, independent of the outcome
        F, Fn, z, zn, a, *_ = _log(3000, seed + 1, aliased=False)
        y = outcomes(zn, np.zeros(3000, bool), np.zeros(3000, int))
        false_alarms += len(find_aliasing(F, z, a, y, seed=seed))
    assert false_alarms == 0


def test_refine_splits_the_aliased_code_into_the_states():
    F, Fn, z, zn, a, s, s2 = _log(4000, 3)
    splits, first = refine(F, Fn, z, zn, a, np.zeros(4000, bool), np.zeros(4000, int), 3, seed=0)
    assert [f.code for f in first] == [0] and len(splits) == 1 and splits.child.tolist() == [3]
    z2 = apply_splits(z, F, splits)
    # every code now holds one state
    for c in np.unique(z2):
        assert np.unique(s[z2 == c]).size == 1
    assert np.array_equal(apply_splits(z, F, Splits.empty(2)), z)
