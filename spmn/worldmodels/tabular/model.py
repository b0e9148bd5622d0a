"""WorldModel: learn p(s', r | s, a) from logged transitions as a recurrent SPMN template and
solve it exactly.

The template (see :mod:`spmn.worldmodels.recurrent`)::

    state part:  deterministic sums on state variables (the region tree), whose leaves are
                 Product(remaining state leaves, ir_k), one interface root per region k
    ir_k      =  max over the action(s) of  Σ_o P(o | k, a) · ( U_r(k, a, o) ⊗ S'-leaves(o) ⊗ l_o )

where the outcome ``o`` is the next region (latent interface leaf ``l_o``) or the end of the
episode (no latent leaf: value 0). ``P(o | k, a)`` are transition counts (hard EM on the
region assignment reduces to counts), ``U_r`` is the empirical reward distribution (exact
expectation), ``S'-leaves(o)`` the next-state values observed in outcome ``o`` (a product of
per-variable categoricals). Values are exact for this model: a Bellman update is one pass of
the compiled template.

Documented fallbacks (never NaN): a (region, action) pair absent from the logs uses the region's
outcome distribution pooled over actions; a state never logged lands in the region of its most
frequent sibling values (see :mod:`spmn.learn.regions`); a state logged only as the end of an
episode (a hole or goal of FrozenLake) is terminal: value 0, policy action 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..._progress import progress_bar
from ...circuit.circuit import Circuit
from ...errors import DataError, NotFittedError
from ...io import register_kind
from ...learn.distributed import is_dask
from ...learn.regions import RegionTree, learn_regions, reward_classes
from ...schema import Variable
from ..columns import codes, names_of, read_transitions
from ..recurrent import RecurrentSolution, Template
from ..simulable import Simulable
from ..solution import check_step, state_rows
from . import build, counts, coverage


@dataclass(frozen=True, eq=False)
class Solution:
    """A solved tabular world model: per-region values and policy, and the
    :class:`~spmn.worldmodels.solution.SolutionProtocol` lookups by state (a state's value is
    its region's; terminal states have value 0 and action 0)."""

    model: "WorldModel"
    result: RecurrentSolution

    @property
    def values(self) -> np.ndarray:
        """Per-region values: (regions,), or (H+1, regions) for a finite horizon."""
        return self.result.values

    @property
    def iterations(self) -> int:
        return self.result.iterations

    @property
    def residual(self) -> float:
        return self.result.residual

    @property
    def gamma(self) -> float:
        return self.result.gamma

    @property
    def horizon(self) -> int | None:
        return self.result.horizon

    def _rows(self, states, t) -> tuple[np.ndarray, np.ndarray, bool, int]:
        X, one = state_rows(states, self.model.state_names_)
        S = self.model._state_array(X)
        t = check_step(t, self.horizon)
        coverage.warn_unseen(self.model, S, "the answer")
        return self.model.tree_.route(S), self.model._is_terminal(S), one, t

    def value(self, states, t: int = 0):
        """V_t(s) of each state (its region's value; 0 for terminal states)."""
        reg, term, one, t = self._rows(states, t)
        V = self.result.values[t] if self.horizon is not None else self.result.values
        out = np.where(term, 0.0, V[reg])
        return float(out[0]) if one else out

    def policy(self, states, t: int = 0):
        """Greedy action code per state at step ``t`` (columns when several action variables);
        0 in terminal states."""
        reg, term, one, t = self._rows(states, t)
        pol = self.result.policy[t] if self.horizon is not None else self.result.policy
        joint = np.where(term, 0, pol[reg])
        m = self.model
        out = joint if len(m.action_names_) == 1 else \
            np.stack(np.unravel_index(joint, m.action_cards_), axis=1)
        return (int(out[0]) if out.ndim == 1 else out[0]) if one else out

    def q(self, states, t: int = 0) -> np.ndarray:
        """Q_t(s, a) per state and joint action (rows x joint actions; (A,) for one state)."""
        reg, term, one, t = self._rows(states, t)
        Q = self.result.q[t] if self.horizon is not None else self.result.q
        out = np.where(term[:, None], 0.0, Q[reg])
        return out[0] if one else out


class WorldModel(Simulable):
    """Learn p(s', r | s, a) from logged transitions; solve it exactly.

    ``states``/``actions``: names (discrete codes 0..k-1, k read from the data) or
    :class:`Variable` objects; next-state columns are ``<state>_next``. Hyper-parameters:
    ``structure`` ("learn": split regions by G-tests at ``split_p``; "full": one region per
    observed joint state), ``min_samples_split``, ``max_regions``, ``smoothing`` (added to the
    outcome counts of each region's observed outcomes), ``min_count`` (``solve`` warns with a
    :class:`~spmn.errors.CoverageWarning` when the greedy policy uses a (region, action) pair
    logged fewer times), ``backend`` for the Bellman passes, ``progress`` (a bar on long fits)
    and ``seed`` (the common keyword of every kind; this fit has no random step).

    Fitted attributes: ``coverage_`` (logged transitions per region and joint action),
    ``seen_states_`` / ``seen_counts_`` (the distinct logged states and their transitions per
    joint action), ``terminal_states_`` (states logged only as an episode's end), ``tree_``,
    ``tables_``, ``template_``, ``circuit_``, ``n_transitions_``. A state never logged is
    answered from the region it falls in and reported as unseen (a ``CoverageWarning``).
    """

    def __init__(self, states, actions, reward: str = "r", terminated: str | None = None, *,
                 structure: str = "learn", split_p: float = 1e-3, min_samples_split: int = 20,
                 max_regions: int | None = None, smoothing: float = 0.0, min_count: int = 30,
                 backend: str | None = None, progress: bool = True, seed: Any = None) -> None:
        self.states = names_of(states)
        self.actions = names_of(actions)
        self.reward = reward
        self.terminated = terminated
        self.structure = structure
        self.split_p = split_p
        self.min_samples_split = min_samples_split
        self.max_regions = max_regions
        self.smoothing = smoothing
        self.min_count = min_count
        self.backend = backend
        self.progress = progress
        self.seed = seed

    # ------------------------------------------------------------------ data
    @staticmethod
    def _name(v: str | Variable) -> str:
        return v.name if isinstance(v, Variable) else v

    def _read(self, data: Any):
        return read_transitions(data, self.states, self.actions, self.reward, self.terminated)

    def _state_array(self, states) -> np.ndarray:
        self._check_fitted()
        if isinstance(states, Mapping) or hasattr(states, "columns"):
            S = np.stack([np.asarray(states[n]) for n in self.state_names_], axis=1)
        else:
            S = np.asarray(states)
            if S.ndim == 0 or (S.ndim == 1 and len(self.state_names_) > 1):
                S = S.reshape(-1, len(self.state_names_))
            elif S.ndim == 1:
                S = S[:, None]
        if S.ndim != 2 or S.shape[1] != len(self.state_names_):
            raise DataError(f"states must have {len(self.state_names_)} columns "
                            f"{self.state_names_}, got shape {S.shape}")
        return np.stack([codes(S[:, j], n, k) for j, (n, k) in
                         enumerate(zip(self.state_names_, self.state_cards_))], axis=1)

    def _is_terminal(self, S: np.ndarray) -> np.ndarray:
        """States logged only as the end of an episode (value 0, action 0)."""
        return coverage.find(self.terminal_states_, S) >= 0

    def _check_fitted(self) -> None:
        if not hasattr(self, "template_"):
            raise NotFittedError("this WorldModel is not fitted yet: call fit(transitions) first")

    # ------------------------------------------------------------------ learning
    def fit(self, transitions: Any, *, client: Any = None) -> "WorldModel":
        """Learn the region structure and the template's parameters from logged transitions.

        A dask DataFrame (e.g. ``dask.dataframe.read_parquet``) or a dict of dask arrays is
        counted partition by partition on ``client``'s cluster (default: the active client),
        merged by tree reductions: the same model as in memory (:mod:`.counts`)."""
        if is_dask(transitions):
            return counts.fit_partitions(self, transitions, client=client)
        S, A, r, Sn, term = self._read(transitions)
        if S.shape[0] == 0:
            raise DataError("no transitions to learn from")
        self.state_names_ = [self._name(v) for v in self.states]
        self.action_names_ = [self._name(v) for v in self.actions]
        given = {self._name(v): v.k for v in (*self.states, *self.actions) if isinstance(v, Variable)}
        self.state_cards_ = np.array([given.get(n) or int(max(S[:, j].max(), Sn[:, j].max())) + 1
                                      for j, n in enumerate(self.state_names_)], np.int64)
        self.action_cards_ = np.array([given.get(n) or int(A[:, j].max()) + 1
                                       for j, n in enumerate(self.action_names_)], np.int64)
        a = np.ravel_multi_index(A.T, self.action_cards_)
        with progress_bar(self.progress and S.shape[0] > 20000, desc="refining regions",
                          unit="round") as bar:
            tree = learn_regions(S, a, reward_classes(r), Sn, term, self.state_cards_,
                                 structure=self.structure, split_p=self.split_p,
                                 min_samples_split=self.min_samples_split,
                                 max_regions=self.max_regions,
                                 progress=lambda k: (bar.set_postfix(regions=k, refresh=False),
                                                   bar.update(1)))
        self.tree_ = tree
        n_actions = int(np.prod(self.action_cards_))
        self.seen_states_, self.seen_counts_ = coverage.state_action_counts(S, a, n_actions)
        ends, _ = coverage.state_action_counts(Sn[term], np.zeros(int(term.sum()), np.int64), 1)
        self.terminal_states_ = ends[coverage.find(self.seen_states_, ends) < 0]
        self.tables_ = _count_tables(tree, S, a, r, Sn, term, n_actions)
        self.n_transitions_ = int(S.shape[0])
        self._build()
        return self

    def _build(self) -> None:
        self.template_: Template = build.build_template(self)
        self.circuit_: Circuit = self.template_.circuit

    @property
    def coverage_(self) -> np.ndarray:
        """Logged transitions per (region, joint action): the samples behind each estimate."""
        self._check_fitted()
        return self.tables_["trans"].sum(axis=2).astype(np.int64)

    def state_coverage(self, states: Any) -> np.ndarray:
        """Logged transitions per (state, joint action) for the given states (0: never)."""
        X, one = state_rows(states, self.state_names_)
        S = self._state_array(X)
        if self.seen_states_ is None:
            raise NotFittedError("this model file predates per-state coverage; refit to get it")
        idx = coverage.find(self.seen_states_, S)
        out = np.where(idx[:, None] >= 0, self.seen_counts_[np.maximum(idx, 0)], 0)
        return out[0] if one else out

    @property
    def n_regions_(self) -> int:
        self._check_fitted()
        return self.tree_.n_regions

    # ------------------------------------------------------------------ queries
    def solve(self, gamma: float = 0.95, horizon: int | None = None,
              method: str = "policy_iteration", tol: float = 1e-8) -> Solution:
        """Exact values and greedy policy of the learned model (see :class:`Template`)."""
        self._check_fitted()
        sol = Solution(self, self.template_.solve(gamma, horizon, method, tol))
        coverage.warn_policy(self, sol.result.policy, self.min_count)
        return sol

    def transition_matrix(self) -> np.ndarray:
        """P(o | k, a) of the model, shape (regions, joint actions, regions + 1 [end])."""
        self._check_fitted()
        return build.outcome_probs(self)

    def predict(self, s, a) -> dict[str, np.ndarray]:
        """Exact conditional distribution of (s', r) given one state ``s`` and action ``a``:
        arrays ``next`` (m, d), ``reward`` (m,), ``prob`` (m,) over every outcome."""
        return build.predict(self, s, a)

    def explain(self, tol: float = 0.02):
        """Which state and action variables the next-state variables and the reward depend on,
        read from the learned circuit (see :func:`spmn.worldmodels.tabular.build.explain`)."""
        return build.explain(self, tol)

    def summary(self):
        self._check_fitted()
        return self.circuit_.summary()

    def validate(self) -> "WorldModel":
        self._check_fitted()
        self.template_.check()
        return self

    def __repr__(self) -> str:
        fitted = f", regions={self.tree_.n_regions}" if hasattr(self, "tree_") else ""
        return (f"WorldModel(states={[self._name(v) for v in self.states]}, "
                f"actions={[self._name(v) for v in self.actions]}, reward={self.reward!r}{fitted})")


def _count_tables(tree: RegionTree, S, a, r, Sn, term, n_actions: int) -> dict[str, np.ndarray]:
    """Sufficient statistics of the template: counts by (region, action, outcome), rewards by
    (region, action, outcome, value), next-state values by outcome, state values by tree node."""
    K = tree.n_regions
    k_of = tree.route(S)
    # outcomes: next region 0..K-1, or K + e for the e-th distinct state that ends an episode
    # (rows sorted lexicographically, never a joint code: any number of state variables)
    end_rows, end_id = np.unique(Sn[term].reshape(-1, Sn.shape[1]), axis=0, return_inverse=True)
    n_out = K + end_rows.shape[0]
    o = tree.route(Sn)
    o[term] = K + end_id.ravel()
    key = (k_of * n_actions + a) * n_out + o
    trans = np.bincount(key, minlength=K * n_actions * n_out).reshape(K, n_actions, n_out)
    pair, rinv = np.unique(np.stack([key, r]), axis=1, return_inverse=True)
    rcount = np.bincount(rinv.ravel(), minlength=pair.shape[1])
    d, kmax = S.shape[1], int(tree.cards.max())
    nxt = np.zeros((n_out, d, kmax))
    for j in range(d):
        np.add.at(nxt, (o, j, Sn[:, j]), 1.0)
    # state value counts at every tree node (rows passing through it)
    nodes = len(tree.var)
    state = np.zeros((nodes, d, kmax))
    node = np.zeros(S.shape[0], np.int64)
    active = np.ones(S.shape[0], bool)
    while active.any():
        idx = np.flatnonzero(active)
        for j in range(d):
            np.add.at(state, (node[idx], j, S[idx, j]), 1.0)
        v = tree.var[node[idx]]
        inner = v >= 0
        active[idx[~inner]] = False
        node[idx[inner]] = tree.child[node[idx[inner]], S[idx[inner], v[inner]]]
    return {"trans": trans.astype(np.float64), "reward_key": pair[0].astype(np.int64),
            "reward_value": pair[1], "reward_count": rcount.astype(np.float64),
            "next": nxt, "state": state}


# ---------------------------------------------------------------------------- files
def to_payload(m: "WorldModel", arrays) -> dict[str, Any]:
    m._check_fitted()
    return {
        "hyper": {"reward": m.reward, "terminated": m.terminated, "structure": m.structure,
                  "split_p": m.split_p, "min_samples_split": m.min_samples_split,
                  "max_regions": m.max_regions, "smoothing": m.smoothing,
                  "min_count": m.min_count},
        "states": [[n, int(k)] for n, k in zip(m.state_names_, m.state_cards_)],
        "actions": [[n, int(k)] for n, k in zip(m.action_names_, m.action_cards_)],
        "n_transitions": m.n_transitions_,
        "tree": {k: {"shape": list(v.shape), "data": arrays.put(f"tree_{k}", v.ravel())}
                 for k, v in m.tree_.to_arrays().items()},
        "tables": {k: {"shape": list(v.shape), "data": arrays.put(f"tab_{k}", v.ravel())}
                   for k, v in m.tables_.items()},
        "terminal_states": {"shape": list(m.terminal_states_.shape),
                            "data": arrays.put("terminal", m.terminal_states_.ravel())},
        "seen_states": {"shape": list(m.seen_states_.shape),
                        "data": arrays.put("seen_states", m.seen_states_.ravel())},
        "seen_counts": {"shape": list(m.seen_counts_.shape),
                        "data": arrays.put("seen_counts", m.seen_counts_.ravel())},
    }


def from_payload(doc: dict[str, Any], arrays) -> "WorldModel":
    def arr(entry, dtype=np.float64):
        return arrays.get(entry["data"]).astype(dtype).reshape(entry["shape"])

    h = doc["hyper"]
    m = WorldModel([Variable.discrete(n, k) for n, k in doc["states"]],
                   [Variable.discrete(n, k, role="decision") for n, k in doc["actions"]],
                   h["reward"], h["terminated"], structure=h["structure"], split_p=h["split_p"],
                   min_samples_split=h["min_samples_split"], max_regions=h["max_regions"],
                   smoothing=h["smoothing"], min_count=h.get("min_count", 30))
    m.state_names_ = [n for n, _ in doc["states"]]
    m.action_names_ = [n for n, _ in doc["actions"]]
    m.state_cards_ = np.array([k for _, k in doc["states"]], np.int64)
    m.action_cards_ = np.array([k for _, k in doc["actions"]], np.int64)
    m.n_transitions_ = int(doc["n_transitions"])
    m.tree_ = RegionTree.from_arrays({k: arr(v, np.int64) for k, v in doc["tree"].items()})
    ints = {"reward_key"}
    m.tables_ = {k: arr(v, np.int64 if k in ints else np.float64) for k, v in doc["tables"].items()}
    m.terminal_states_ = arr(doc["terminal_states"], np.int64)
    # files written before per-state coverage have none: unseen states cannot be told then
    m.seen_states_ = arr(doc["seen_states"], np.int64) if "seen_states" in doc else None
    m.seen_counts_ = arr(doc["seen_counts"], np.int64) if "seen_counts" in doc else None
    m._build()
    return m


register_kind("world_model", WorldModel, to_payload, from_payload)
