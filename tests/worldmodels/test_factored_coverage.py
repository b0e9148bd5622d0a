"""The factored model's honesty about thin data: leaves checked along the greedy policy's own
path in the learned model, and thin nodes that still tell actions apart."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import spmn
from spmn import DataError, Variable
from spmn.errors import CoverageWarning
from spmn.worldmodels import FactoredWorldModel


def test_thin_leaves_along_the_policys_path_are_warned_about():
    """The start is well logged but the greedy policy walks into states the logs barely show:
    the warning comes from the learned model's own rollouts, not from the start states."""
    rng = np.random.default_rng(0)
    x = np.r_[np.repeat([0, 1, 2], 400), np.repeat([3, 4], 4)]
    a = rng.integers(0, 2, x.size)
    logs = {"x": x, "a": a, "x_next": np.minimum(x + a, 4), "r": x.astype(float)}
    var = Variable.discrete("x", 5)
    model = FactoredWorldModel(var, "a", min_count=30, min_samples_leaf=1, progress=False,
                               seed=0).fit(logs)
    with pytest.warns(CoverageWarning, match="rollouts of the learned model") as rec:
        sol = model.solve(0.9, horizon=5, start=np.array([[0]]))
    assert "x_next" in str(rec[0].message)
    np.testing.assert_array_equal(np.ravel(sol.policy(np.array([[0]]), 0)), [1])  # walks up
    with warnings.catch_warnings():  # a short horizon never leaves the logged states
        warnings.simplefilter("error", CoverageWarning)
        model.solve(0.9, horizon=2, start=np.array([[0]]))


def test_a_thin_node_still_tells_actions_apart(tmp_path):
    """Five logged steps from x = 3: a no-op twice (stays), a move three times (x = 4). With
    min_samples_action=1 the tree splits on the action there (the G-test allows it); asking 5
    rows per branch of action splits too pools the two and credits the no-op with the move."""
    rng = np.random.default_rng(1)
    x = np.r_[np.repeat([0, 1, 2], 300), [3, 3, 3, 3, 3]]
    a = np.r_[rng.integers(0, 2, 900), [0, 0, 1, 1, 1]]
    logs = {"x": x, "a": a, "x_next": np.minimum(x + a, 4), "r": (x == 4).astype(float)}
    var = Variable.discrete("x", 5)
    split = FactoredWorldModel(var, "a", split_p=0.05, progress=False).fit(logs)
    pooled = FactoredWorldModel(var, "a", split_p=0.05, min_samples_action=5,
                                progress=False).fit(logs)
    np.testing.assert_allclose(split.predict([3], [0])["x_next"], [0, 0, 0, 1, 0])
    np.testing.assert_allclose(split.predict([3], [1])["x_next"], [0, 0, 0, 0, 1])
    np.testing.assert_allclose(pooled.predict([3], [0])["x_next"], [0, 0, 0, 0.4, 0.6])
    assert spmn.load(spmn.save(split, tmp_path / "m.json")).min_samples_action == 1
    with pytest.raises(DataError, match="min_samples_action must be an integer >= 1"):
        FactoredWorldModel(var, "a", min_samples_action=0, progress=False).fit(logs)
