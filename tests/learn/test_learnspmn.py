"""LearnSPMN (spmn.learn_spmn) on decision problems whose exact MEU is known."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from scipy.stats import norm
from strategies import random_spmn, seeds

from spmn import (
    Categorical,
    Circuit,
    DataError,
    Histogram,
    Max,
    Product,
    Schema,
    SchemaError,
    Sum,
    Utility,
    ValidationError,
    Variable,
)
from spmn.cli.examples import EXPORT_ECONOMY_P, EXPORT_PROFIT, export_textiles
from spmn.learn import empirical_meu, learn_spmn

PAYOFF = np.array([[10.0, 6.0, 0.0],     # payoff[h, d]: h hidden state, d decision
                   [-20.0, 2.0, 8.0]])
P_H1 = 0.3
P_OBS = 0.85                             # P(O = H)


def hidden_problem(n, seed, continuous=False):
    """H ~ Bern(0.3); O = noisy view of H, seen before D; U = PAYOFF[H, D]; D uniform."""
    rng = np.random.default_rng(seed)
    h = (rng.random(n) < P_H1).astype(float)
    if continuous:
        o = h * 2.0 + rng.normal(size=n)
    else:
        o = np.where(rng.random(n) < P_OBS, h, 1 - h)
    d = rng.integers(0, 3, n).astype(float)
    u = PAYOFF[h.astype(int), d.astype(int)]
    return {"O": o, "D": d, "H": h, "U": u}


def exact_hidden_meu():
    ph = np.array([1 - P_H1, P_H1])
    meu = 0.0
    best = []
    for o in (0, 1):
        joint = ph * np.where(np.arange(2) == o, P_OBS, 1 - P_OBS)     # p(h, o)
        eu = joint @ PAYOFF                                            # Σ_h p(h, o) u(h, d)
        meu += eu.max()
        best.append(int(np.argmax(eu)))
    return meu, best


def exact_hidden_meu_continuous():
    o = np.linspace(-8, 10, 20001)
    ph = np.array([1 - P_H1, P_H1])
    joint = ph[:, None] * norm.pdf(o[None, :] - 2.0 * np.arange(2)[:, None])   # p(h, o)
    eu = PAYOFF.T @ joint                                                       # (d, o)
    return float(np.trapezoid(eu.max(axis=0), o))


ORDER = [["O"], ["D"], ["H", "U"]]
LEAKY = [["O", "H"], ["D"], ["U"]]


@pytest.fixture(scope="module")
def hidden():
    return hidden_problem(20000, 0)


def test_hidden_state_meu_and_policy(hidden):
    c = learn_spmn(hidden, ORDER, "D", "U", seed=0)
    meu, best = exact_hidden_meu()
    # sampling noise of the plug-in MEU with 20,000 rows is about 0.1 here
    assert c.meu() == pytest.approx(meu, abs=0.4)
    assert c.policy({"O": np.array([0.0, 1.0])}).tolist() == best
    assert c.policy() == -1                   # D waits for O
    schema = c.schema
    assert c.meu() == pytest.approx(empirical_meu(hidden, schema), rel=1e-12)


def test_the_published_kind_of_order_leaks_the_hidden_state(hidden):
    """Observing H before D (a wrong partial order) lets the policy use it: MEU jumps to the
    perfect-information value Σ_h p(h) max_d u(h, d)."""
    c = learn_spmn(hidden, LEAKY, "D", "U", seed=0)
    perfect = (1 - P_H1) * PAYOFF[0].max() + P_H1 * PAYOFF[1].max()
    assert c.meu() == pytest.approx(perfect, abs=0.3)
    assert c.meu() > exact_hidden_meu()[0] + 1.0


def test_sums_above_decisions_split_on_observed_values(hidden):
    c = learn_spmn(hidden, ORDER, "D", "U", seed=0)
    maxes = [nd for nd in c.nodes if isinstance(nd, Max)]
    assert maxes
    above = [nd for nd in c.nodes if isinstance(nd, Sum) and _reaches(nd, maxes)]
    assert above
    for s in above:                                 # each child: a one-hot leaf of O
        onehots = [next(ch for ch in kid.children if isinstance(ch, Categorical)
                        and ch.var == "O") for kid in s.children]
        assert all(sorted(o.p.tolist()) == [0.0, 1.0] for o in onehots)
        np.testing.assert_allclose(s.weights, [np.mean(hidden["O"] == v) for v in (0, 1)])


def _reaches(node, targets):
    stack, seen = [node], set()
    while stack:
        nd = stack.pop()
        if any(nd is t for t in targets):
            return True
        if id(nd) not in seen:
            seen.add(id(nd))
            stack.extend(nd.children)
    return False


def test_a_latent_cluster_above_a_decision_is_rejected_and_would_overstate_the_meu():
    """Why determinism matters: a latent sum over 'which H' above the max node lets the
    decision see H. Validation refuses it; unvalidated, its MEU is the leaky one."""
    schema = Schema([Variable.decision("D", 3), Variable.discrete("H", 2), Variable.utility("U")],
                    [["D"], ["H", "U"]])
    kids = [Max("D", [Product([Categorical("H", np.eye(2)[h]),
                               Utility.constant("U", PAYOFF[h, d])]) for d in range(3)])
            for h in range(2)]
    root = Sum(kids, [1 - P_H1, P_H1])
    with pytest.raises(ValidationError) as err:
        Circuit(root, schema)
    assert err.value.rule in ("sum-deterministic", "partial-order")
    leaky = Circuit(root, schema, validate=False).meu(backend="reference")
    honest = max((1 - P_H1) * PAYOFF[0, d] + P_H1 * PAYOFF[1, d] for d in range(3))
    assert leaky > honest + 1.0


def test_export_textiles_from_samples_of_the_exact_circuit():
    exact = export_textiles()
    rng = np.random.default_rng(1)
    n = 30000
    ev = np.full((n, 3), np.nan)
    ev[:, 0] = rng.integers(0, 3, n)
    X = exact.sample(evidence=ev, seed=2)
    c = learn_spmn(X, schema=exact.schema, seed=0)
    eus = [sum(p * EXPORT_PROFIT[e][d] for e, p in enumerate(EXPORT_ECONOMY_P)) for d in range(3)]
    assert exact.meu() == pytest.approx(max(eus))
    assert c.meu() == pytest.approx(max(eus), rel=0.02)
    assert c.policy() == int(np.argmax(eus))
    assert isinstance(c.root, Max) and len(c.root.children) == 3


def test_continuous_information_is_split_into_disjoint_intervals():
    data = hidden_problem(20000, 3, continuous=True)
    exact = exact_hidden_meu_continuous()
    coarse = learn_spmn(data, ORDER, "D", "U", seed=0, continuous_bins=2)
    fine = learn_spmn(data, ORDER, "D", "U", seed=0, continuous_bins=8)
    hists = [nd for nd in fine.nodes if isinstance(nd, Histogram) and nd.var == "O"]
    assert len(hists) >= 6
    assert fine.meu() == pytest.approx(exact, abs=0.35)
    assert coarse.meu() < fine.meu() + 0.1        # coarser information is worth less
    o = np.array([-3.0, 0.0, 1.0, 2.0, 5.0])
    ll = fine.log_likelihood({"O": o, "D": np.zeros(5), "H": np.zeros(5), "U": np.full(5, 10.0)})
    assert np.all(np.isfinite(ll))
    pol = fine.policy({"O": o})
    assert pol[0] == 0 and pol[-1] == 2


def test_unseen_decision_values_are_pessimistic_finite_and_never_chosen():
    data = hidden_problem(5000, 4)
    keep = data["D"] != 2
    data = {k: v[keep] for k, v in data.items()}
    schema = Schema([Variable.discrete("O", 2), Variable.decision("D", 3),
                     Variable.discrete("H", 2), Variable.utility("U")], ORDER)
    c = learn_spmn(data, schema=schema, seed=0)
    assert all(len(m.children) == 3 for m in c.nodes if isinstance(m, Max))
    assert np.isfinite(c.meu())
    assert set(c.policy({"O": np.array([0.0, 1.0])}).tolist()) <= {0, 1}
    batch = {"O": np.array([0.0, 1.0, 0.0]), "D": np.array([2.0, 0.0, 1.0])}
    u = c.meu(batch)
    assert np.all(np.isfinite(u))
    lo, hi = data["U"].min(), data["U"].max()
    assert u[0] == pytest.approx(lo - (hi - lo))        # a payoff range below the worst seen
    assert u[1:] == pytest.approx(c.meu({"O": np.array([1.0, 0.0]), "D": np.array([0.0, 1.0])}))
    ll = c.log_likelihood(batch)
    assert np.all(np.isfinite(ll))
    pooled = learn_spmn(data, schema=schema, seed=0, unseen="pooled")
    assert pooled.meu(batch)[0] == pytest.approx(data["U"][data["O"] == 0].mean(), rel=1e-9)
    with pytest.raises(DataError, match="'D' never takes value 2"):
        learn_spmn(data, schema=schema, unseen="error")


def test_two_decisions_and_a_simultaneous_pair():
    rng = np.random.default_rng(0)
    n = 20000
    d1 = rng.integers(0, 2, n)
    y = np.where(rng.random(n) < 0.8, d1, 1 - d1)          # D1 influences what is seen
    d2 = rng.integers(0, 2, n)
    z = rng.integers(0, 2, n)
    u = 5.0 * (d2 == y) + 1.0 * d1 + z
    data = {"D1": d1, "Y": y, "D2": d2, "Z": z, "U": u}
    c = learn_spmn(data, [["D1"], ["Y"], ["D2"], ["Z", "U"]], ["D1", "D2"], "U", seed=0)
    assert c.meu() == pytest.approx(5.0 + 1.0 + 0.5, abs=0.05)
    assert c.policy() == 1
    assert c.policy({"D1": np.array([1.0, 1.0]), "Y": np.array([0.0, 1.0])},
                    decision="D2").tolist() == [0, 1]
    same = learn_spmn(data, [["D1", "D2"], ["Y", "Z", "U"]], ["D1", "D2"], "U", seed=0)
    assert same.meu() == pytest.approx(1.0 + 0.8 * 5 + 0.5, abs=0.05)    # D2 blind to Y


def test_inputs_as_dict_dataframe_and_array_agree(hidden):
    small = {k: v[:3000] for k, v in hidden.items()}
    a = learn_spmn(small, ORDER, "D", "U", seed=3)
    names = list(small)
    arr = np.column_stack([small[k] for k in names])
    b = learn_spmn(arr, ORDER, "D", "U", columns=names, seed=3)
    assert a.meu() == b.meu() and len(a.nodes) == len(b.nodes)
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({k: v.astype(int) if k != "U" else v for k, v in small.items()})
    c = learn_spmn(df, ORDER, "D", "U", seed=3)
    assert c.meu() == a.meu()
    with pytest.raises(DataError, match="columns="):
        learn_spmn(arr, ORDER, "D", "U")


def test_same_seed_same_circuit(hidden):
    small = {k: v[:4000] for k, v in hidden.items()}
    a = learn_spmn(small, ORDER, "D", "U", seed=7, clustering="em", min_instances_slice=50)
    b = learn_spmn(small, ORDER, "D", "U", seed=7, clustering="em", min_instances_slice=50)
    assert [nd.params() if hasattr(nd, "params") else len(nd.children) for nd in a.nodes] == \
           [nd.params() if hasattr(nd, "params") else len(nd.children) for nd in b.nodes]


def test_bad_input_raises_spmn_errors_naming_the_variable(hidden):
    small = {k: v[:500].copy() for k, v in hidden.items()}
    with pytest.raises(SchemaError, match="misses variables \\['H'\\]"):
        learn_spmn(small, [["O"], ["D"], ["U"]], "D", "U")
    with pytest.raises(SchemaError, match="'O' appears twice"):
        learn_spmn(small, [["O"], ["D"], ["O", "H", "U"]], "D", "U")
    with pytest.raises(DataError, match="decision 'D2' is absent"):
        learn_spmn(small, [["O"], ["D2"], ["H", "U"]], "D2", "U")
    bad = dict(small, U=small["U"].copy())
    bad["U"][10] = np.nan
    with pytest.raises(DataError, match="utility column 'U' is NaN in row 10"):
        learn_spmn(bad, ORDER, "D", "U")
    with pytest.raises(DataError, match="'H' is constant"):
        learn_spmn(dict(small, H=np.zeros(500)), ORDER, "D", "U")
    with pytest.raises(DataError, match="'O' holds text"):
        learn_spmn(dict(small, O=np.array(["a", "b"] * 250)), ORDER, "D", "U")
    with pytest.raises(SchemaError, match="before decision"):
        learn_spmn(small, [["O", "U"], ["D"], ["H"]], "D", "U")
    with pytest.raises(SchemaError, match="utility"):
        learn_spmn({k: v for k, v in small.items() if k != "U"}, [["O"], ["D"], ["H"]], "D")
    with pytest.raises(SchemaError, match="partial_order"):
        learn_spmn(small, None, "D", "U")
    with pytest.raises(DataError, match="'D'.*value 7"):
        learn_spmn(dict(small, D=np.r_[small["D"][:-1], 7.0]), ORDER, "D", "U",
                   kinds={"D": 3})
    with pytest.raises(ValueError, match="unseen"):
        learn_spmn(small, ORDER, "D", "U", unseen="optimistic")


def test_progress_bar_and_summary(capsys, hidden):
    pytest.importorskip("tqdm")
    small = {k: v[:2000] for k, v in hidden.items()}
    learn_spmn(small, ORDER, "D", "U", seed=0, progress=True)
    err = capsys.readouterr().err
    assert "learn_spmn" in err and "decisions (in order): D" in err


def test_empirical_meu_by_hand_and_with_bootstrap_weights():
    schema = Schema([Variable.discrete("O", 2), Variable.decision("D", 2), Variable.utility("U")],
                    [["O"], ["D"], ["U"]])
    X = np.array([[0, 0, 1.0], [0, 1, 3.0], [0, 1, 5.0], [1, 0, 2.0], [1, 1, 0.0], [1, 1, 1.0]])
    # O=0: max(1, 4) = 4 (3 rows); O=1: max(2, 0.5) = 2 (3 rows) -> 3
    meu, names, values = empirical_meu(X, schema, return_values=True)
    assert meu == pytest.approx(3.0) and names == ["O", "D"]
    assert values[(0, 1)] == pytest.approx(4.0) and values[(1,)] == pytest.approx(2.0)
    W = np.array([np.ones(6), [0, 1, 1, 1, 1, 1.0]])
    both = empirical_meu(X, schema, W)
    assert both[0] == pytest.approx(3.0) and both[1] == pytest.approx((2 * 4 + 3 * 2) / 5)


@settings(max_examples=6, deadline=None)
@given(seeds)
def test_learned_circuits_from_random_spmns_validate(seed):
    """Data drawn from random valid SPMNs (decisions uniform): the learned circuit passes every
    rule (determinism above decisions included) and its MEU and policy are well defined."""
    rng = np.random.default_rng(seed)
    truth = random_spmn(rng)
    n = 1500
    ev = np.full((n, len(truth.schema)), np.nan)
    for v in truth.schema.decisions:
        ev[:, truth.schema.index(v.name)] = rng.integers(0, v.k, n)
    X = truth.sample(evidence=ev, seed=rng, backend="reference")
    c = learn_spmn(X, schema=truth.schema, seed=seed, allow_constant=True,
                   min_instances_slice=100)
    c.validate()
    assert np.isfinite(c.meu())
    assert -1 <= c.policy() < truth.schema[truth.decisions[0]].k
