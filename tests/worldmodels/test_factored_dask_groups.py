"""``groups=`` on the dask path: the one-hot groups are found from counts merged over the
partitions and the model is the in-memory fit with the same groups, whatever the partitioning."""
from __future__ import annotations

import itertools
import warnings

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from spmn import DataError
from spmn.errors import CoverageWarning
from spmn.worldmodels import FactoredWorldModel
from spmn.worldmodels.factored.groups import StateGroups, true_counts

pytestmark = pytest.mark.xdist_group(name="numba-kernels")
CELLS = 5


def position_logs(seed: int, n: int) -> pd.DataFrame:
    """A robot on a line of 5 cells logged one-hot (at___c0 .. at___c4, at most one true: cell 4
    is never reached), a boolean ``lit`` and a ``mode`` of 3 values; the action moves it."""
    rng = np.random.default_rng(seed)
    pos = rng.integers(-1, CELLS - 1, n)  # -1: off the line (no column true)
    a = rng.integers(0, 3, n)
    noise = rng.random(n)
    nxt = np.where(noise < 0.8, np.clip(pos + a - 1, -1, CELLS - 2), pos)
    lit = rng.integers(0, 2, n)
    mode = rng.integers(0, 3, n)
    cols: dict[str, np.ndarray] = {}
    for c in range(CELLS):
        cols[f"at___c{c}"] = (pos == c).astype(np.int64)
    cols["lit"], cols["mode"] = lit, mode
    for c in range(CELLS):
        cols[f"at___c{c}_next"] = (nxt == c).astype(np.int64)
    cols["lit_next"] = np.where(rng.random(n) < 0.9, lit ^ (pos == 1), lit).astype(np.int64)
    cols["mode_next"] = np.where(a == 2, (mode + 1) % 3, mode)
    cols["a"] = a
    cols["r"] = (nxt == CELLS - 2) * 1.0 - 0.1 * (a != 1) + 0.5 * lit
    return pd.DataFrame(cols)


def kw(groups):
    states = [f"at___c{c}" for c in range(CELLS)] + ["lit", "mode"]
    return {"states": states, "actions": ["a"], "reward": "r", "progress": False, "seed": 0,
            "groups": groups}


def pieces(df: pd.DataFrame, cuts) -> dd.DataFrame:
    edges = [0, *cuts, len(df)]
    frames = [df.iloc[a:b] for a, b in itertools.pairwise(edges)]
    return dd.from_delayed([dask.delayed(f) for f in frames], meta=df.iloc[:0],
                           verify_meta=False)


def assert_same(m1: FactoredWorldModel, m2: FactoredWorldModel) -> None:
    g1, g2 = m1.groups_, m2.groups_
    assert g1 is not None and g2 is not None
    assert (g1.names, g1.groups, g1.input_names) == (g2.names, g2.groups, g2.input_names)
    np.testing.assert_array_equal(g1.cards, g2.cards)
    assert m1.state_names_ == m2.state_names_ and m1.parents_ == m2.parents_
    for i, (a, b) in enumerate(zip(m1.trees_, m2.trees_)):
        for f in ("var", "child", "counts", "crit"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f"tree {i} {f}")
    assert m1.split_p_ == m2.split_p_
    for f in ("seen_states_", "joint_actions_", "state_cards_", "action_cards_"):
        np.testing.assert_array_equal(getattr(m1, f), getattr(m2, f), err_msg=f)
    for t1, t2 in zip(m1.reward_.tables, m2.reward_.tables):
        np.testing.assert_allclose(t2, t1, rtol=1e-12, atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        s1, s2 = m1.solve(0.9), m2.solve(0.9)
    np.testing.assert_allclose(s2.values, s1.values, rtol=1e-12, atol=1e-12)
    start = np.zeros(CELLS + 2, np.int64)
    start[1] = 1  # logged layout: the robot at cell 1
    assert s2.value(start) == pytest.approx(s1.value(start), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("groups", ["auto", [[f"at___c{c}" for c in range(CELLS - 1)]]])
@pytest.mark.parametrize("cuts", [(700,), (300, 300, 1900)])  # the repeated cut: an empty one
def test_dask_fit_with_groups_is_the_in_memory_fit(groups, cuts):
    df = position_logs(0, 3000)
    mem = FactoredWorldModel(**kw(groups)).fit(df)
    with dask.config.set(scheduler="sync"):
        dsk = FactoredWorldModel(**kw(groups)).fit(pieces(df, cuts))
    assert mem.groups_.names == ["at___c4", "lit", "mode", "at___c*"]  # c4 never true: apart
    assert mem.groups_.groups == [[0, 1, 2, 3]]
    assert_same(mem, dsk)


def test_counts_from_partitions_sum_to_the_whole():
    S = position_logs(1, 500)[[f"at___c{c}" for c in range(CELLS)] + ["lit", "mode"]].to_numpy()
    ones, co = true_counts(S)
    parts = [true_counts(S[a:b]) for a, b in [(0, 0), (0, 123), (123, 400), (400, 500)]]
    np.testing.assert_array_equal(sum(p[0] for p in parts), ones)
    np.testing.assert_array_equal(sum(p[1] for p in parts), co)
    names = [f"at___c{c}" for c in range(CELLS)] + ["lit", "mode"]
    cards = np.array([2] * (CELLS + 1) + [3])
    a = StateGroups.find(S, names, cards, "auto")
    b = StateGroups.from_counts(ones, co, S.shape[0], names, cards, "auto")
    assert a is not None and b is not None and a.groups == b.groups == [[0, 1, 2, 3]]


def test_a_given_group_whose_columns_are_true_together_is_refused_on_dask():
    df = position_logs(2, 1000)
    with dask.config.set(scheduler="sync"), \
            pytest.raises(DataError, match=r"'at___c0' and 'lit' are both true in \d+ logged"):
        FactoredWorldModel(**kw([["at___c0", "lit"]])).fit(pieces(df, (400,)))
