"""The compiled decision-diagram store (:class:`spmn.worldmodels.factored.add.Diagrams`) against its
pure-Python twin (:class:`~spmn.worldmodels.factored.add_reference.ReferenceDiagrams`): the same
operations on random small diagrams give the same functions bit for bit, the same reduced sizes,
one id per function, and the same errors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spmn import SolverError
from spmn.worldmodels.factored.add import TERM, Diagrams
from spmn.worldmodels.factored.add_reference import ReferenceDiagrams

SETTINGS = dict(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: Leaves drawn with repeats: equal values must merge; -0.0 is the zero.
LEAVES = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 1e-3, 3.25, -7.0]


def bits(T: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(T, np.float64).view(np.int64)


@st.composite
def problems(draw):
    """Variables at levels 2i (current) and 2i + 1 (its next copy), 2-5 of them, cards 2-3, and
    four random tables over random subsets of the current levels."""
    n = draw(st.integers(2, 5))
    cards = [c for c in draw(st.lists(st.integers(2, 3), min_size=n, max_size=n)) for _ in (0, 1)]
    tables = []
    for _ in range(4):
        levels = draw(st.lists(st.sampled_from(range(0, 2 * n, 2)), max_size=4, unique=True))
        levels = draw(st.permutations(levels))
        size = int(np.prod([cards[lv] for lv in levels]))
        vals = draw(st.lists(st.sampled_from(LEAVES), min_size=size, max_size=size))
        tables.append((list(levels), np.array(vals).reshape([cards[lv] for lv in levels])))
    level = 2 * draw(st.integers(0, n - 1))
    v = draw(st.integers(0, cards[level] - 1))
    ab = (draw(st.sampled_from([1.0, -2.0, 0.5, 0.1])), draw(st.sampled_from([0.0, 3.0, -0.25])))
    return cards, tables, level, v, ab


def run(store, cards, tables, level, v, ab) -> dict:
    """Every operation the solver uses, on one store; the resulting ids by name."""
    f, g, h, p = (store.table(lv, T) for lv, T in tables)
    out = {"f": f, "g": g, "h": h}
    out["add"] = store.add(f, g)
    out["sub"] = store.sub(f, g)
    out["mul"] = store.mul(f, g)
    out["max"] = store.max(f, h)
    out["add3"] = store.add(out["add"], store.mul(h, out["sub"]))
    out["affine"] = store.affine(out["add3"], *ab)
    out["restrict"] = store.restrict(out["add3"], level, v)
    out["max_out"] = store.max_out(out["add3"], level)
    k = cards[level]
    probs = [store.affine(p, 1.0 / k, float(i) / 8) for i in range(k)]
    out["expectation"] = store.expectation(out["add3"], level, probs)
    nxt = {lv: lv + 1 for lv in range(0, len(cards), 2)}
    out["relabel"] = store.relabel(out["add3"], nxt)
    out["regress"] = store.expectation(out["relabel"], level + 1, probs)
    out["split"] = store.split(level, [store.restrict(out["mul"], level, w) if w % 2 else h
                                       for w in range(k)])
    leaves = store.leaves(out["add3"])
    vals = np.floor(np.asarray([store.val[i] for i in leaves]) / 0.75) * 0.75  # rounded down
    out["map_leaves"] = store.map_leaves(out["add3"], leaves, vals)
    out["dense"] = store.from_dense(sorted(set(nxt) - {level}), np.zeros(
        [cards[lv] for lv in sorted(set(nxt) - {level})]) + 1.5)
    store.clear()
    return out


@settings(**SETTINGS)
@given(problems())
def test_every_operation_matches_the_reference(prob):
    cards = prob[0]
    fast, ref = Diagrams(cards), ReferenceDiagrams(cards)
    a, b = run(fast, *prob), run(ref, *prob)
    levels = list(range(len(cards)))
    for name in a:
        Ta, Tb = fast.to_dense(a[name], levels), ref.to_dense(b[name], levels)
        assert np.array_equal(bits(Ta), bits(Tb)), name
        assert fast.size(a[name]) == ref.size(b[name]), name
        assert fast.support(a[name]) == ref.support(b[name]), name
        assert fast.leaf_range(a[name]) == ref.leaf_range(b[name]), name
        # the depth-first order of the walk: the same (level, value) sequence
        wa = [(int(fast.lev[i]), float(fast.val[i])) for i in fast.reachable([a[name]])]
        wb = [(ref.lev[i], ref.val[i]) for i in ref.reachable([b[name]])]
        assert wa == wb, name
        # canonical: the same function built from its dense tensor is the same id
        assert fast.from_dense(levels, Ta) == a[name], name
    # the store holds exactly the reduced diagrams' nodes: the dense tensors make no new ones
    n = len(fast)
    for name in a:
        fast.from_dense(levels, fast.to_dense(a[name], levels))
    assert len(fast) == n
    # commutative operations give one id either way round
    assert fast.add(a["g"], a["f"]) == a["add"] and fast.mul(a["g"], a["f"]) == a["mul"]


@settings(**SETTINGS)
@given(problems())
def test_transfer_evaluate_and_kids_match(prob):
    cards = prob[0]
    fast, ref = Diagrams(cards), ReferenceDiagrams(cards)
    a, b = run(fast, *prob), run(ref, *prob)
    names = list(a)
    fresh, rfresh = Diagrams(cards), ReferenceDiagrams(cards)
    ids = fast.transfer([a[k] for k in names], fresh)
    rids = ref.transfer([b[k] for k in names], rfresh)
    assert len(fresh) == len(rfresh)  # exactly the reachable nodes move (in id order)
    assert len(set(ids)) == len(set(rids))
    assert sorted(bits(fresh.val).tolist()) == sorted(bits(np.array(rfresh.val)).tolist())
    assert sorted(int(x) for x in fresh.lev) == sorted(rfresh.lev)
    for i, r in zip(ids, rids):
        assert fresh.size(i) == rfresh.size(r)
        wa = [(int(fresh.lev[j]), float(fresh.val[j])) for j in fresh.reachable([i])]
        assert wa == [(rfresh.lev[j], rfresh.val[j]) for j in rfresh.reachable([r])]
    rng = np.random.default_rng(0)
    E = np.stack([rng.integers(0, c, 50) for c in cards], axis=1)
    col = np.arange(len(cards))
    for i, r in zip(ids, rids):
        assert np.array_equal(bits(fresh.evaluate(i, E, col)), bits(rfresh.evaluate(r, E, col)))


def test_ops_after_transfer_give_the_reference_ids():
    """Operations on transferred diagrams create nodes in the reference's order (the fused
    expectation makes fewer: its terms are composed here)."""
    rng = np.random.default_rng(3)
    cards = [2, 3, 2, 2, 3, 2]
    ref = ReferenceDiagrams(cards)
    roots = [ref.from_dense(list(range(6)), rng.choice(LEAVES, size=cards).reshape(cards))
             for _ in range(3)]
    fast = Diagrams(cards)
    r2 = ReferenceDiagrams(cards)
    ids, rids = ref.transfer(roots, fast), ref.transfer(roots, r2)
    assert ids == rids
    for st_, (f, g, h) in ((fast, ids), (r2, rids)):
        e = st_.max(st_.add(f, g), st_.mul(g, h))
        t0 = st_.add(st_.zero, st_.mul(st_.affine(h, 0.5, 0.1), st_.restrict(e, 2, 0)))
        st_.add(t0, st_.mul(g, st_.restrict(e, 2, 1)))
        st_.max_out(st_.sub(f, h), 3)  # binary: one max, as the reference
    assert len(fast) == len(r2)
    assert [int(x) for x in fast.lev] == r2.lev
    assert [fast.kids[i] for i in range(len(fast))] == r2.kids
    assert bits(fast.val).tolist() == bits(np.array(r2.val)).tolist()


def test_infinities_and_shortcuts_as_the_reference():
    """The mask's -inf leaves: add keeps them, mul by the zero diagram skips 0 * inf at inner
    nodes (the reference's shortcut), and a NaN leaf (inf - inf) raises in both."""
    cards = [2, 2]
    for cls in (Diagrams, ReferenceDiagrams):
        st_ = cls(cards)
        M = st_.table([0], np.array([0.0, -np.inf]))
        Q = st_.table([1], np.array([1.0, 2.0]))
        assert st_.to_dense(st_.add(Q, M), [0, 1]).tolist() == [[1.0, 2.0], [-np.inf, -np.inf]]
        assert st_.mul(st_.zero, M) == st_.zero
        assert st_.mul(st_.one, M) == M
        with pytest.raises(SolverError, match="NaN leaf"):
            st_.sub(M, M)
        with pytest.raises(SolverError, match="NaN leaf"):
            st_.const(np.nan)
        assert st_.const(-0.0) == st_.zero


@settings(**SETTINGS)
@given(st.lists(st.sampled_from([0.0, 1.0, -np.inf, np.inf, 2.5]), min_size=8, max_size=8),
       st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=4, max_size=4),
       st.sampled_from([[0, 1], [1, 2], [0, 2]]))
def test_expectation_with_infinities_decides_as_the_reference(fv, pv, plevels):
    """The fused expectation falls back to the composed operations where a leaf meets NaN or
    0 · inf, so it raises, or not, exactly where the reference does."""
    cards = [2, 2, 2]
    out = []
    for cls in (Diagrams, ReferenceDiagrams):
        st_ = cls(cards)
        f = st_.table([0, 1, 2], np.array(fv).reshape(2, 2, 2))
        p = st_.table(plevels, np.array(pv).reshape(2, 2))
        q = st_.affine(p, -1.0, 1.0)
        try:
            e = st_.expectation(f, 1, [p, q])
            out.append(bits(st_.to_dense(e, [0, 1, 2])).tolist())
        except SolverError as err:
            out.append(str(err))
    assert out[0] == out[1]


def test_max_nodes_names_the_cap():
    cards = [2] * 8
    T = np.arange(256.0).reshape(cards)
    for cls in (Diagrams, ReferenceDiagrams):
        st_ = cls(cards, max_nodes=100)
        with pytest.raises(SolverError, match=r"exceed max_nodes=100 nodes"):
            st_.from_dense(list(range(8)), T)
        st_.max_nodes = None
        f = st_.from_dense(list(range(8)), T)
        assert st_.size(f) == 256 + 255


def test_large_diagrams_grow_their_tables():
    """Thousands of nodes: every array and table doubles many times; results stay exact."""
    rng = np.random.default_rng(1)
    cards = [2] * 14
    T1, T2 = rng.integers(0, 9, size=cards).astype(float), rng.integers(0, 9, size=cards) * 0.5
    fast, ref = Diagrams(cards), ReferenceDiagrams(cards)
    out = []
    for st_ in (fast, ref):
        f, g = st_.from_dense(list(range(14)), T1), st_.from_dense(list(range(14)), T2)
        h = st_.max_out(st_.mul(st_.add(f, g), st_.affine(g, 0.25, 1.0)), 3)
        out.append((st_.to_dense(h, list(range(14))), st_.size(h)))
    assert np.array_equal(bits(out[0][0]), bits(out[1][0])) and out[0][1] == out[1][1]
    assert fast.lev[fast.reachable([fast.zero])[0]] == TERM
