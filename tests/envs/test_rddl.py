"""The RDDL adapter: grounding, logging through pyRDDLGym, Monte Carlo values and the exact compile.

The reference values (instance 1, finite horizon from the initial state) were computed by an
independent solver; the exact compile must reproduce V* to 1e-5 and the uniform-random policy's
value to 0.01. The simulator checks compare the exact model with pyRDDLGym's own simulation: every
logged transition must have positive exact probability and the exact reward, empirical next-state
frequencies must match P, and Monte Carlo returns must lie within 3 standard errors.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyRDDLGym")
pytest.importorskip("rddlrepository")

from spmn.envs.rddl import RDDLDomain, evaluate_policy, log_transitions, validate_columns  # noqa: E402
from spmn.envs.rddl_exact import compile_exact  # noqa: E402
from spmn.errors import DataError  # noqa: E402

REFERENCE = [  # name, horizon, V*, uniform-random policy value
    ("CrossingTraffic_MDP_ippc2011", 15, -4.428556, -13.32),
    ("Elevators_MDP_ippc2011", 10, -7.330074, -9.81),
    ("SkillTeaching_MDP_ippc2011", 10, -3.022175, -10.25),
    ("Navigation_MDP_ippc2011", 5, -4.636995, -4.98),
    ("GameOfLife_MDP_ippc2011", 3, 12.754481, 9.82),
]

_CACHE: dict = {}


def domain(name: str, instance: int = 1) -> RDDLDomain:
    key = (name, instance)
    if key not in _CACHE:
        _CACHE[key] = RDDLDomain(name, instance)
    return _CACHE[key]


def exact(name: str):
    key = ("exact", name)
    if key not in _CACHE:
        _CACHE[key] = compile_exact(domain(name))
    return _CACHE[key]


# A small domain with an enum fluent (Discrete), a bounded int, a termination and discount 0.9.
TINY = """
domain tiny_mdp {
  types { cell : object; tier : {@low, @mid, @high}; };
  pvariables {
    P-STAY : { non-fluent, real, default = 0.7 };
    mode : { state-fluent, tier, default = @low };
    count : { state-fluent, int, default = 0 };
    lit(cell) : { state-fluent, bool, default = false };
    push : { action-fluent, bool, default = false };
    toggle(cell) : { action-fluent, bool, default = false };
  };
  cpfs {
    mode' = if (push) then Discrete(tier, @low : 0.2, @mid : 0.5, @high : 0.3) else mode;
    count' = if (push ^ (count < 3)) then count + 1 else if (count > 0) then count - 1 else 0;
    lit'(?c) = if (toggle(?c)) then ~lit(?c) else Bernoulli(P-STAY * lit(?c));
  };
  reward = [sum_{?c: cell} lit(?c)] + (mode == @high) - 0.1 * count;
  termination { (count == 3) ^ (mode == @high); };
  state-invariants { count >= 0; count <= 3; };
}
"""
TINY_INSTANCE = """
non-fluents nf_tiny { domain = tiny_mdp; objects { cell : {c1, c2}; }; non-fluents { P-STAY = 0.6; }; }
instance tiny_1 { domain = tiny_mdp; non-fluents = nf_tiny; init-state { lit(c1); };
  max-nondef-actions = MAXA; horizon = 6; discount = 0.9; }
"""

# A reward that reads the next state (R(s, a, s')) and, in a variant, a state-reading precondition.
NEXT = """
domain next_mdp {
  types { cell : object; };
  pvariables {
    P-ON : { non-fluent, real, default = 0.5 };
    count : { state-fluent, int, default = 0 };
    lit(cell) : { state-fluent, bool, default = false };
    push : { action-fluent, bool, default = false };
    toggle(cell) : { action-fluent, bool, default = false };
  };
  cpfs {
    count' = if (push ^ (count < 2)) then count + 1 else if (count > 0) then count - 1 else 0;
    lit'(?c) = if (toggle(?c)) then ~lit(?c) else Bernoulli(P-ON);
  };
  reward = [sum_{?c: cell} lit'(?c)] - 0.5 * count;
  PRECONDITIONS
  state-invariants { count >= 0; count <= 2; };
}
"""
NEXT_INSTANCE = """
non-fluents nf_next { domain = next_mdp; objects { cell : {c1, c2}; }; non-fluents { P-ON = 0.3; }; }
instance next_1 { domain = next_mdp; non-fluents = nf_next; max-nondef-actions = 1; horizon = 5;
  discount = 1.0; }
"""


def write(tmp_path, text: str, instance: str, tag: str = "d") -> RDDLDomain:
    d, i = tmp_path / f"{tag}_domain.rddl", tmp_path / f"{tag}_instance.rddl"
    d.write_text(text)
    i.write_text(instance)
    return RDDLDomain(str(d), str(i))


def rows(d: RDDLDomain, logs: dict, names) -> np.ndarray:
    return np.stack([logs[f] for f in names], axis=1)


def check_against_exact(d: RDDLDomain, ex, logs: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every logged transition is possible under the exact model and earns its exact reward."""
    si = np.array([ex.state_index(r) for r in rows(d, logs, d.state_fluents)])
    ti = np.array([ex.state_index(r) for r in rows(d, logs, d.next_fluents)])
    ai = np.array([d.action_index(r) for r in rows(d, logs, d.action_fluents)])
    P = ex.mdp.P
    p = (P[ai, si, ti] if not ex.mdp.is_sparse
         else np.array([P[a][s, t] for a, s, t in zip(ai, si, ti)]))
    assert p.min() > 0, "pyRDDLGym produced a transition the exact model calls impossible"
    if ex.mdp._R_kind == "sa":
        R = ex.mdp.expected_reward[ai, si]
    else:
        R = ex.mdp._R.reshape(ex.n_actions, ex.n_states, ex.n_states)[ai, si, ti]
    np.testing.assert_allclose(logs["r"], R, atol=1e-9)
    assert np.array_equal(logs["terminated"], ex.mdp.terminal[ti])
    return si, ai, ti


def frequencies_match(ex, si, ai, ti, n_pairs: int = 3) -> None:
    """Next-state frequencies of the most logged (s, a) pairs match P within 4.5 sigma per entry."""
    pairs, counts = np.unique(np.stack([si, ai], 1), axis=0, return_counts=True)
    for (s, a), n in zip(pairs[np.argsort(-counts)][:n_pairs], np.sort(counts)[::-1][:n_pairs]):
        sel = (si == s) & (ai == a)
        emp = np.bincount(ti[sel], minlength=ex.n_states) / n
        P = ex.mdp.P
        p = P[a, s] if not ex.mdp.is_sparse else P[a][[s], :].toarray().ravel()
        tol = 4.5 * np.sqrt(p * (1 - p) / n) + 1.5 / n
        assert np.all(np.abs(emp - p) <= tol), (s, a, n, np.abs(emp - p).max())


# ---------------------------------------------------------------------- grounding
def test_grounding_of_elevators():
    d = domain("Elevators_MDP_ippc2011")
    assert (d.horizon, d.discount, d.max_nondef_actions) == (40, 1.0, 1)
    assert len(d.state_fluents) == 13 and len(d.action_fluents) == 4
    assert "elevator-at-floor___e0__f0" in d.state_fluents
    assert d.values["elevator-closed___e0"] == (False, True)
    init = {f for f, c in d.initial_state.items() if c}
    assert init == {"elevator-at-floor___e0__f0", "elevator-dir-up___e0", "elevator-closed___e0"}
    acts = d.joint_actions()
    assert acts.shape == (5, 4) and not acts[0].any() and (acts.sum(axis=1) <= 1).all()
    assert d.columns[-3:] == ("r", "terminated", "truncated")
    assert [v.name for v in d.state_variables()] == list(d.state_fluents)


def test_enum_and_bounded_int_fluents_are_grounded_with_their_values(tmp_path):
    d = write(tmp_path, TINY, TINY_INSTANCE.replace("MAXA", "2"))
    assert d.values["mode"] == ("low", "mid", "high")
    assert d.values["count"] == (0, 1, 2, 3)
    assert d.initial_state == {"mode": 0, "count": 0, "lit___c1": 1, "lit___c2": 0}
    assert (d.horizon, d.discount, d.max_nondef_actions) == (6, 0.9, 2)
    assert len(d.joint_actions()) == 1 + 3 + 3
    assert d.action_row({"toggle___c2": True}).tolist() == [0, 0, 1]
    assert d.state_row({"mode": "high", "count": 2, "lit___c1": 0, "lit___c2": 1}).tolist() == [2, 2, 0, 1]


# ---------------------------------------------------------------------- exact values
@pytest.mark.parametrize("name, H, vstar, vrandom", REFERENCE)
def test_exact_compile_reproduces_reference_values(name, H, vstar, vrandom):
    ex = exact(name)
    assert ex.optimal_value(H) == pytest.approx(vstar, abs=1e-5)
    assert ex.policy_value("random", H) == pytest.approx(vrandom, abs=0.01)
    assert np.array_equal(ex.states[0], domain(name).initial_row)
    # the greedy policy as a callable evaluates to V* exactly
    assert ex.policy_value(ex.greedy_policy(H), H) == pytest.approx(ex.optimal_value(H), abs=1e-9)


@pytest.mark.parametrize("name", ["CrossingTraffic_MDP_ippc2011", "Navigation_MDP_ippc2011"])
def test_policy_value_asks_only_the_states_the_policy_reaches(name):
    ex = exact(name)
    H = 6
    greedy = ex.greedy_policy(H)
    asked: list[tuple[int, int]] = []

    def policy(state, t):  # greedy on even steps, a state-dependent other action on odd ones
        asked.append((ex.state_index(state), t))
        return greedy(state, t) if t % 2 == 0 else ex.action(sum(state.values()) % ex.n_actions)

    v = ex.policy_value(policy, H)
    n_forward = len(asked)
    full = ex.policy_values(policy, H)  # every (state, step) asked
    assert v == pytest.approx(full[0, 0], abs=1e-12)
    assert len(set(asked[:n_forward])) == n_forward < H * ex.n_states
    assert {s for s, t in asked[:n_forward] if t == 0} == {0}


def test_exact_state_mapping_round_trips():
    ex = exact("Navigation_MDP_ippc2011")
    for i in range(ex.n_states):
        assert ex.state_index(ex.state(i)) == i
    with pytest.raises(DataError, match="not reachable"):
        ex.state_index({f: 1 for f in ex.domain.state_fluents})


# ---------------------------------------------------------------------- logging
def test_logs_are_gymnasium_style_and_deterministic():
    d = domain("CrossingTraffic_MDP_ippc2011")
    n = 2 * d.horizon + 7
    logs = log_transitions(d, n, seed=3)
    assert tuple(logs) == d.columns
    assert all(len(v) == n for v in logs.values())
    assert logs["r"].dtype == np.float64 and logs["truncated"].dtype == bool
    # episodes reset at the instance horizon: truncated, not terminated
    assert np.flatnonzero(logs["truncated"]).tolist() == [d.horizon - 1, 2 * d.horizon - 1]
    assert not logs["terminated"].any()
    S, S2 = rows(d, logs, d.state_fluents), rows(d, logs, d.next_fluents)
    cont = ~logs["truncated"][:-1]
    assert np.array_equal(S2[:-1][cont], S[1:][cont])
    assert np.array_equal(S[d.horizon], d.initial_row)
    again = log_transitions(d, n, seed=3)
    assert all(np.array_equal(logs[c], again[c]) for c in logs)
    other = log_transitions(d, n, seed=4)
    assert not all(np.array_equal(logs[c], other[c]) for c in logs)
    validate_columns(d, logs)


def test_random_policy_is_uniform_over_valid_joint_actions():
    d = domain("GameOfLife_MDP_ippc2011")
    logs = log_transitions(d, 4000, seed=0, backend="compiled")
    ai = np.array([d.action_index(r) for r in rows(d, logs, d.action_fluents)])
    counts = np.bincount(ai, minlength=len(d.joint_actions()))
    assert len(counts) == 10
    expected = 4000 / 10
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


def test_callable_policy_and_compiled_backend_deterministic():
    d = domain("Navigation_MDP_ippc2011")
    north = lambda state, t: {"move-north": 1}  # noqa: E731
    logs = log_transitions(d, 50, policy=north, seed=1)
    assert (logs["move-north"] == 1).all() and (logs["move-south"] == 0).all()
    a = log_transitions(d, 500, seed=2, backend="compiled", lanes=7)
    b = log_transitions(d, 500, seed=2, backend="compiled", lanes=7)
    assert all(np.array_equal(a[c], b[c]) for c in a)
    validate_columns(d, a)


# ---------------------------------------------------------------------- exact vs pyRDDLGym
def test_exact_model_agrees_with_pyrddlgym_simulation():
    name, H = "Elevators_MDP_ippc2011", 10
    d, ex = domain(name), exact(name)
    logs = log_transitions(d, 2500, seed=11)
    si, ai, ti = check_against_exact(d, ex, logs)
    frequencies_match(ex, si, ai, ti)
    mc = evaluate_policy(d, "random", 200, seed=5, horizon=H)
    assert abs(mc.mean - ex.policy_value("random", H)) < 3 * mc.stderr
    assert mc.n_episodes == 200 and mc.returns.shape == (200,)


@pytest.mark.parametrize("name", ["CrossingTraffic_MDP_ippc2011", "SkillTeaching_MDP_ippc2011",
                                  "GameOfLife_MDP_ippc2011"])
def test_every_simulated_transition_is_exact(name):
    d, ex = domain(name), exact(name)
    check_against_exact(d, ex, log_transitions(d, 600, seed=0))


def test_greedy_policy_in_the_simulator_earns_vstar():
    name, H = "CrossingTraffic_MDP_ippc2011", 15
    d, ex = domain(name), exact(name)
    mc = evaluate_policy(d, ex.greedy_policy(H), 200, seed=2, horizon=H)
    assert abs(mc.mean - ex.optimal_value(H)) < 3 * mc.stderr + 1e-9


def test_tiny_domain_enum_int_termination_against_pyrddlgym(tmp_path):
    d = write(tmp_path, TINY, TINY_INSTANCE.replace("MAXA", "2"))
    ex = compile_exact(d)
    assert ex.mdp.terminal.any()
    logs = log_transitions(d, 3000, seed=1)
    assert logs["terminated"].any()
    si, ai, ti = check_against_exact(d, ex, logs)
    frequencies_match(ex, si, ai, ti)
    v = ex.policy_value("random")  # discount 0.9, horizon 6
    mc = evaluate_policy(d, "random", 1500, seed=3)
    assert abs(mc.mean - v) < 3 * mc.stderr
    mc = evaluate_policy(d, "random", 20000, seed=3, backend="compiled")
    assert abs(mc.mean - v) < 3 * mc.stderr


def test_reward_of_the_next_state(tmp_path):
    d = write(tmp_path, NEXT.replace("PRECONDITIONS", ""), NEXT_INSTANCE)
    assert d.program.reward_reads_next
    ex = compile_exact(d)
    check_against_exact(d, ex, log_transitions(d, 1500, seed=0))
    mc = evaluate_policy(d, "random", 20000, seed=1, backend="compiled")
    assert abs(mc.mean - ex.policy_value("random")) < 3 * mc.stderr


def test_state_reading_precondition(tmp_path):
    d = write(tmp_path, NEXT.replace("PRECONDITIONS", "action-preconditions { push => (count < 2); };"),
              NEXT_INSTANCE)
    for backend in ("pyrddlgym", "compiled"):
        logs = log_transitions(d, 800, seed=0, backend=backend)
        assert not np.any((logs["count"] == 2) & (logs["push"] == 1))
        assert np.any((logs["count"] == 1) & (logs["push"] == 1))
    with pytest.raises(DataError, match="precondition 0 forbids"):
        compile_exact(d)


# ---------------------------------------------------------------------- bad input
BAD_FLUENT = """
domain bad_mdp {
  pvariables {
    amount : { state-fluent, KIND, default = DEFAULT };
    on : { state-fluent, bool, default = false };
    go : { action-fluent, bool, default = false };
  };
  cpfs { amount' = NEXT; on' = go; };
  reward = on;
}
"""
BAD_INSTANCE = """
non-fluents nf_bad { domain = bad_mdp; }
instance bad_1 { domain = bad_mdp; non-fluents = nf_bad; max-nondef-actions = 1; horizon = 4;
  discount = 1.0; }
"""


@pytest.mark.parametrize("kind, default, nxt, match", [
    ("real", "0.0", "amount + 1.0", "state fluent amount is real-valued"),
    ("int", "0", "amount + 1", "state fluent amount is an int without finite bounds"),
])
def test_a_fluent_that_cannot_be_grounded_is_named(tmp_path, kind, default, nxt, match):
    text = BAD_FLUENT.replace("KIND", kind).replace("DEFAULT", default).replace("NEXT", nxt)
    with pytest.raises(DataError, match=match):
        write(tmp_path, text, BAD_INSTANCE)


def test_a_distribution_without_finite_support_is_named(tmp_path):
    text = (BAD_FLUENT.replace("KIND", "int").replace("DEFAULT", "0").replace("NEXT", "Poisson(1.0)")
            .replace("reward = on;", "reward = on; state-invariants { amount >= 0; amount <= 3; };"))
    d = write(tmp_path, text, BAD_INSTANCE)
    with pytest.raises(DataError, match="CPF amount'.*Poisson"):
        compile_exact(d)


def test_unknown_domain_and_instance():
    with pytest.raises(DataError, match="did you mean"):
        RDDLDomain("Elevators_MDP_ippc2012")
    with pytest.raises(DataError, match="no instance '99'"):
        RDDLDomain("Elevators_MDP_ippc2011", 99)
    with pytest.raises(DataError, match="POMDP"):
        RDDLDomain("Elevators_POMDP_ippc2011", 1)


def test_validate_columns_names_the_bad_column():
    d = domain("Navigation_MDP_ippc2011")
    logs = log_transitions(d, 30, seed=0)
    bad = dict(logs)
    del bad["robot-at___x6__y12_next"]
    with pytest.raises(DataError, match="'robot-at___x6__y12_next' .* missing"):
        validate_columns(d, bad)
    bad = dict(logs, **{"robot-at___x99__y1": logs["r"]})
    with pytest.raises(DataError, match="'robot-at___x99__y1' is not a fluent"):
        validate_columns(d, bad)
    assert "robot-at___x99__y1" not in validate_columns(d, bad, allow_extra=True)
    bad = dict(logs, **{"move-east": np.full(30, 2)})
    with pytest.raises(DataError, match="'move-east': value .*2.* is not a code"):
        validate_columns(d, bad)
    bad = dict(logs, r=logs["r"][:-1])
    with pytest.raises(DataError, match="column 'r' has 29 rows"):
        validate_columns(d, bad)
    # logs of another instance: other objects, other columns
    other = log_transitions(domain("Navigation_MDP_ippc2011", 2), 5, seed=0)
    with pytest.raises(DataError, match="column '.*' (is missing|is not a fluent)"):
        validate_columns(d, other)


def test_too_many_joint_actions_names_the_limit_and_count(tmp_path):
    d = domain("GameOfLife_MDP_ippc2011")
    with pytest.raises(DataError, match=r"10 joint actions .* max_actions=5"):
        d.joint_actions(max_actions=5)
    wide = write(tmp_path, TINY, TINY_INSTANCE.replace("max-nondef-actions = MAXA;", ""))
    assert wide.n_joint_actions() == 8
    with pytest.raises(DataError, match=r"8 joint actions .* max_actions=7"):
        compile_exact(wide, max_actions=7)


def test_state_limit_is_named():
    with pytest.raises(DataError, match="max_states=100"):
        compile_exact(domain("GameOfLife_MDP_ippc2011"), max_states=100)


def test_an_invalid_action_from_a_policy_is_refused():
    d = domain("Navigation_MDP_ippc2011")
    both = lambda state, t: {"move-north": 1, "move-east": 1}  # noqa: E731
    with pytest.raises(DataError, match="not a valid joint action"):
        log_transitions(d, 5, policy=both, seed=0)
    with pytest.raises(DataError, match="'fly' is not one of the action fluents"):
        d.action_row({"fly": 1})
