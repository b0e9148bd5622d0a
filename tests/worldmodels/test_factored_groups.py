"""One-hot groups of the factored world model: boolean columns of which at most one is true
learned as one categorical variable (found from the logs or given), the same model as one
fitted on the categorical column itself, lookups in either layout, and the errors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import spmn
from spmn import DataError, Variable
from spmn.worldmodels import FactoredWorldModel
from spmn.worldmodels.factored.groups import StateGroups

L = 6  # corridor cells; the goal is the last one


def corridor_logs(n: int = 20_000, seed: int = 0, extra: bool = False):
    """A robot on a corridor logged one-hot (``at___c0`` ... ``at___c5``, all 0 once it broke
    down in cells 2-3), a lamp it may toggle, uniform random states and actions."""
    rng = np.random.default_rng(seed)
    pos = rng.integers(-1, L, n)  # -1: broken down (no column true)
    lamp = rng.integers(0, 2, n)
    move = rng.integers(0, 3, n)  # 0 stay, 1 left, 2 right
    toggle = rng.integers(0, 2, n)
    step = np.where(move == 1, -1, np.where(move == 2, 1, 0))
    ok = rng.random(n) < 0.8
    nxt = np.where(ok & (pos >= 0), np.clip(pos + step, 0, L - 1), pos)
    nxt = np.where((pos >= 2) & (pos <= 3) & (rng.random(n) < 0.05), -1, nxt)
    lamp_n = np.where(toggle == 1, 1 - lamp, lamp)
    r = np.where(pos == L - 1, 0.0, -1.0) + 0.1 * lamp
    logs = {"lamp": lamp, "lamp_next": lamp_n, "move": move, "toggle": toggle, "r": r}
    for c in range(L):
        logs[f"at___c{c}"] = (pos == c).astype(np.int64)
        logs[f"at___c{c}_next"] = (nxt == c).astype(np.int64)
    cat = np.where(pos >= 0, pos + 1, 0), np.where(nxt >= 0, nxt + 1, 0)
    if extra:  # a column never true, and two rare columns never true together (no evidence)
        logs["at___c6"] = logs["at___c6_next"] = np.zeros(n, np.int64)
        for name, rows in (("rare___a", [0, 1, 2]), ("rare___b", [3, 4, 5])):
            col = np.zeros(n, np.int64)
            col[rows] = 1
            logs[name], logs[f"{name}_next"] = col, col.copy()
    return logs, cat


def state_names(logs):
    return ["lamp", *sorted(k for k in logs if k.startswith(("at___", "rare___"))
                            and not k.endswith("_next"))]


def fit(logs, groups="auto", **kw):
    return FactoredWorldModel(state_names(logs), ["move", "toggle"], "r", progress=False,
                              seed=0, groups=groups, **kw).fit(logs)


def all_input_states(include_none: bool = True) -> np.ndarray:
    rows = []
    for lamp in (0, 1):
        for p in range(-1 if include_none else 0, L):
            rows.append([lamp, *[int(p == c) for c in range(L)]])
    return np.array(rows, np.int64)


def test_auto_finds_the_one_hot_position_and_is_the_categorical_model():
    logs, (cat, cat_n) = corridor_logs()
    m = fit(logs)
    g = m.groups_
    assert [[g.input_names[j] for j in grp] for grp in g.groups] == \
        [[f"at___c{c}" for c in range(L)]]
    assert m.state_names_ == ["lamp", "at___c*"] and m.state_cards_.tolist() == [2, L + 1]
    assert g.values("at___c*")[:2] == ["none", "at___c0"]
    assert "at___c* = one of 6 columns (at___c0 ... at___c5) or none" in str(m.explain())
    # the same model as one fitted on the categorical column itself
    clogs = {"lamp": logs["lamp"], "lamp_next": logs["lamp_next"], "pos": cat, "pos_next": cat_n,
             "move": logs["move"], "toggle": logs["toggle"], "r": logs["r"]}
    ref = FactoredWorldModel(["lamp", Variable.discrete("pos", L + 1)], ["move", "toggle"], "r",
                             progress=False, seed=0).fit(clogs)
    assert [t.parents for t in m.trees_] == [t.parents for t in ref.trees_]
    for a, b in zip(m.trees_, ref.trees_):
        np.testing.assert_array_equal(a.counts, b.counts)
    S = np.array([[lamp, p] for lamp in (0, 1) for p in range(L + 1)], np.int64)
    for h in (None, 4):
        for method in ("flat", "structured"):
            a = m.solve(0.9, horizon=h, method=method, start=S)
            b = ref.solve(0.9, horizon=h, method=method, start=S)
            np.testing.assert_array_equal(a.value(S), b.value(S))
            np.testing.assert_array_equal(a.policy(S), b.policy(S))


def test_lookups_take_the_logged_layout_too():
    logs, _ = corridor_logs()
    m = fit(logs)
    X = all_input_states()
    E = m.groups_.encode(X)
    np.testing.assert_array_equal(m.groups_.decode(E), X)
    sol = m.solve(0.9, horizon=5, start=X[:1])
    full = m.solve(0.9, horizon=5, method="structured")
    np.testing.assert_array_equal(full.value(X), full.value(E))
    np.testing.assert_array_equal(full.policy(X, 2), full.policy(E, 2))
    assert sol.value(X[0]) == pytest.approx(full.value(E[0]), rel=1e-12)  # flat vs structured
    as_dict = {n: X[:, j] for j, n in enumerate(state_names(logs))}
    np.testing.assert_array_equal(full.value(as_dict), full.value(E))
    np.testing.assert_allclose(m.predict(X[3], [2, 0])["at___c*_next"],
                               m.predict(E[3], [2, 0])["at___c*_next"])
    # the model's own reachable states from the start: positions (and none) x lamp, no
    # state with the robot in two cells
    assert sol.states.shape[0] <= 2 * (L + 1)


def test_never_true_and_unsupported_columns_stay_apart():
    logs, _ = corridor_logs(extra=True)
    m = fit(logs)
    g = m.groups_
    assert len(g.groups) == 1 and len(g.groups[0]) == L
    for name in ("at___c6", "rare___a", "rare___b"):
        assert name in m.state_names_


def test_given_groups_are_checked_on_the_logs():
    logs, _ = corridor_logs()
    cells = [f"at___c{c}" for c in range(L)]
    m = fit(logs, groups=[cells[:3], cells[3:]])
    assert len(m.groups_.groups) == 2 and len(m.state_names_) == 3
    with pytest.raises(DataError, match=r"'lamp' and 'at___c0' are both true|'at___c0' and "
                       r"'lamp' are both true"):
        fit(logs, groups=[["lamp", "at___c0"]])
    with pytest.raises(DataError, match="'nowhere' is not a state column"):
        fit(logs, groups=[["at___c0", "nowhere"]])
    with pytest.raises(DataError, match="in two groups"):
        fit(logs, groups=[cells[:3], cells[2:]])
    with pytest.raises(DataError, match="needs two state columns"):
        fit(logs, groups=[cells[:1]])
    with pytest.raises(DataError, match="groups must be None, 'auto'"):
        fit(logs, groups="sometimes")
    logs3 = dict(logs, size=np.arange(len(logs["r"])) % 3, size_next=np.arange(len(logs["r"])) % 3)
    with pytest.raises(DataError, match="'size' has 3 values"):
        FactoredWorldModel(["size", *state_names(logs)], ["move", "toggle"], "r", progress=False,
                           groups=[["size", "at___c0"]]).fit(logs3)


def test_a_state_with_two_members_true_names_the_group_and_row():
    logs, _ = corridor_logs()
    sol = fit(logs).solve(0.9, horizon=3, method="structured")
    X = all_input_states()
    X[4, 1:] = 0
    X[4, 1:3] = 1
    with pytest.raises(DataError, match=r"state row 4 has 2 columns of the one-hot group "
                       r"'at___c\*' true \(at___c0, at___c1\)"):
        sol.value(X)


def test_save_load_simulate_and_circuit(tmp_path):
    from gymnasium.utils.env_checker import check_env

    logs, _ = corridor_logs(8000)
    m = fit(logs)
    back = spmn.load(spmn.save(m, tmp_path / "grouped.json"))
    assert back.groups_.to_payload() == m.groups_.to_payload() and back.groups == "auto"
    X = all_input_states()
    a, b = m.solve(0.9, horizon=4, method="structured"), back.solve(0.9, horizon=4,
                                                                    method="structured")
    np.testing.assert_array_equal(a.value(X), b.value(X))
    given = fit(logs, groups=[[f"at___c{c}" for c in range(L)]])
    again = spmn.load(spmn.save(given, tmp_path / "given.json"))
    assert again.groups == [[f"at___c{c}" for c in range(L)]]
    env = m.to_env(start=X[1:2], max_episode_steps=10, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped, skip_render_check=True)
    cols = m.rollout("random", n_episodes=20, horizon=5, seed=0).columns
    # rollouts come back in the logged columns (refit-ready), exactly one-hot or none
    cells = np.stack([cols[f"at___c{c}"] for c in range(L)], axis=1)
    assert cells.sum(axis=1).max() <= 1 and "at___c*" not in cols
    again2 = fit({**cols, "r": cols["r"]}, groups="auto")
    assert again2.state_names_ == m.state_names_
    # the circuit over the model's variables: one-step MEU = the best expected reward
    c = m.circuit_
    c.validate()
    one = m.solve(0.9, horizon=1, method="structured")
    np.testing.assert_allclose(c.meu(m.circuit_evidence(X)), one.value(X), rtol=0, atol=1e-12)


def test_groups_map_round_trips_and_names_are_unique():
    S = np.array([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 1]] * 20, np.int64)
    g = StateGroups(["p___a", "p___b", "p___c", "q"], np.array([2, 2, 2, 2]), [[0, 1, 2]])
    assert g.names == ["q", "p*"]
    np.testing.assert_array_equal(g.decode(g.encode(S)), S)
    g2 = StateGroups(["x1", "x2", "y1", "y2"], np.array([2, 2, 2, 2]), [[0, 1], [2, 3]])
    assert g2.names == ["x*", "y*"]
    g3 = StateGroups(["a1", "a2", "a3", "a4"], np.array([2, 2, 2, 2]), [[0, 1], [2, 3]])
    assert len(set(g3.names)) == 2
