"""FactoredWorldModel: a dynamic Bayesian network learned from logged transitions,

    p(s', r | s, a) = Π_i p(s'_i | pa_i) · p(r | pa_r),   E[r | s, a] = c + Σ_T f_T(x_T),

and solved exactly for the learned model, by structured value iteration on decision diagrams
or flat value iteration over the reachable states.

Learned (the approximation): each factor's parents and conditional distribution (a G-test
tree, :mod:`.trees`), and the additive expected reward (:mod:`.reward`). Exact (for that
model): every Bellman update, expectation and maximization (:mod:`.structured`,
:mod:`.flat`, which agree to 1e-10). Synchronic arcs (s'_i depending on s'_j) are left out:
next-state variables are independent given (s, a). Unseen (state, action) combinations are
answered by the factors' generalization: each factor reads only its parents, a parent value
a tree node never saw follows the node's most frequent value, and the reward adds its terms.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..._progress import progress_bar
from ...circuit.circuit import Circuit
from ...errors import DataError, NotFittedError, SolverError
from ...io import register_kind
from ...schema import Variable
from ..columns import names_of, read_transitions
from ..simulable import Simulable
from ..tabular.coverage import _rows
from . import build, explain
from . import flat as _flat
from .flat import reachable, solve_flat
from .groups import StateGroups
from .mdp import FactoredMDP
from .reward import AdditiveReward, fit_additive_reward
from .coverage import warn_thin_paths
from .solved import FactoredSolution, check_solver, state_codes, warn_thin
from .structured import solve_structured
from .trees import ConditionalTree, fit_trees


class FactoredWorldModel(Simulable):
    """Learn a factored world model from logged transitions; solve it exactly.

    ``states`` / ``actions``: names (integer codes 0..k-1, k read from the data) or
    :class:`Variable` objects; one or several action variables; next-state columns are
    ``<state>_next``; ``reward`` and the optional boolean ``terminated`` (the episode ended after
    the step) are columns too.

    ``joint_actions``: the combinations of action values the solver maximizes over. "logged"
    (default): those seen in the data at least once, since a combination never tried has
    nothing behind it (RDDL's max-nondef-actions makes most combinations illegal); "all": every
    combination; or an array of rows (one column per action variable). At most
    ``max_joint_actions`` of them, else an error with the limit and the count.

    ``groups``: boolean state columns of which at most one is true (a position logged one-hot)
    modelled as one categorical state variable (:mod:`.groups`): None (default, every column
    its own variable), "auto" (found from the logs) or lists of column names. Then the model's
    state variables (``state_names_``) are the ungrouped columns and one variable per group
    (code 0: none true, i + 1: member i); every lookup also takes states in the logged layout.

    Hyper-parameters: ``split_p`` (α of the split rule of :mod:`.trees`; None: chosen by
    held-out log-likelihood), ``min_samples_leaf`` (rows per branch of a split on a state
    variable), ``min_samples_action`` (the same for a split on an action variable; 1 by
    default: the logging policy chose the actions, so a thin node may still tell two actions
    apart when the G-test says so, rather than pool a no-op with the move into the goal and
    make the max over actions optimistic),
    ``max_depth``, ``smoothing`` (added to every leaf's counts; 0 keeps unseen outcomes
    impossible, so the reachable set stays small), ``min_count`` (``solve`` warns with a
    :class:`~spmn.errors.CoverageWarning` when the greedy policy rests on leaves logged fewer
    times), ``progress``, ``seed`` (the hold-out split; None: a fixed one) and ``backend``
    (accepted like every kind's; these solvers run on numpy/scipy).

    Fitted: ``trees_`` (one :class:`~.trees.ConditionalTree` per next-state variable),
    ``groups_`` (the :class:`~.groups.StateGroups` map from the logged columns, or None),
    ``joint_actions_`` (the allowed joint actions, rows in lexicographic order: joint code j),
    ``end_tree_`` (p(end | s, a), when ``terminated`` is given; the next-state trees learn from
    the steps that did not end), ``parents_``, ``reward_`` (:class:`~.reward.AdditiveReward`),
    ``split_p_`` and ``split_scores_`` (held-out log-likelihood per α), ``coverage_``,
    ``seen_states_``, ``n_transitions_``, ``mdp_`` (what the solvers read), ``circuit_``.
    """

    def __init__(self, states: str | Variable | Sequence[str | Variable],
                 actions: str | Variable | Sequence[str | Variable], reward: str = "r",
                 terminated: str | None = None, *, split_p: float | None = None,
                 min_samples_leaf: int = 5, min_samples_action: int = 1,
                 max_depth: int | None = None, smoothing: float = 0.0, min_count: int = 30, joint_actions: Any = "logged",
                 max_joint_actions: int = 4096, groups: Any = None,
                 progress: bool = True, seed: Any = None, backend: str | None = None) -> None:
        self.states = names_of(states)
        self.actions = names_of(actions)
        self.reward = reward
        self.terminated = terminated
        self.split_p = split_p
        self.min_samples_leaf = min_samples_leaf
        self.min_samples_action = min_samples_action
        self.max_depth = max_depth
        self.smoothing = smoothing
        self.min_count = min_count
        self.joint_actions = joint_actions
        self.max_joint_actions = max_joint_actions
        self.groups = groups
        self.progress = progress
        self.seed = seed
        self.backend = backend

    # ------------------------------------------------------------------ data
    @staticmethod
    def _name(v: str | Variable) -> str:
        return v.name if isinstance(v, Variable) else v

    def _read(self, data: Any):
        if not self.actions:
            raise DataError("a factored world model needs at least one action variable")
        return read_transitions(data, self.states, self.actions, self.reward, self.terminated,
                                kind="FactoredWorldModel")

    def _check_fitted(self) -> None:
        if not hasattr(self, "mdp_"):
            raise NotFittedError("this FactoredWorldModel is not fitted yet: call "
                                 "fit(transitions) first")

    # ------------------------------------------------------------------ learning
    def fit(self, transitions: Any, *, client: Any = None,
            columns: Sequence[str] | None = None) -> "FactoredWorldModel":
        """Learn every factor's tree, the additive reward and (if logged) the episode end.

        A dask DataFrame (e.g. ``dask.dataframe.read_parquet``), a dict of dask arrays or a 2-D
        dask array (``columns=`` names its columns) is counted partition by partition on
        ``client``'s cluster (default: the active client) and gives the same model
        (:mod:`.dask_fit`)."""
        from ...learn.distributed import is_dask
        if is_dask(transitions):
            from .dask_fit import fit_partitions
            return fit_partitions(self, transitions, client=client, columns=columns)
        S, A, r, Sn, term = self._read(transitions)
        n = S.shape[0]
        if n == 0:
            raise DataError("no transitions to learn from")
        snames = [self._name(v) for v in self.states]
        anames = [self._name(v) for v in self.actions]
        given = {self._name(v): v.k for v in (*self.states, *self.actions)
                 if isinstance(v, Variable)}
        scards = np.array([given.get(x) or int(max(S[:, j].max(), Sn[:, j].max())) + 1
                           for j, x in enumerate(snames)], np.int64)
        acards = np.array([given.get(x) or int(A[:, j].max()) + 1
                           for j, x in enumerate(anames)], np.int64)
        allowed = self._allowed(A, anames, acards)
        groups = None if self.groups is None else \
            StateGroups.find(np.concatenate([S, Sn]), snames, scards, self.groups)
        if groups is not None:
            S, Sn = groups.encode(S), groups.encode(Sn, "next-state")
            snames, scards = list(groups.names), groups.cards
        X = np.concatenate([S, A], axis=1)
        cards = np.r_[scards, acards]
        cont = np.flatnonzero(~term) if (~term).any() else np.arange(n)
        targets = [(Sn[:, j], int(scards[j]), cont) for j in range(len(snames))]
        if self.terminated is not None:
            targets.append((term.astype(np.int64), 2, np.arange(n)))
        with progress_bar(self.progress and n * len(targets) > 2_000_000,
                          desc="growing factor trees", total=len(targets), unit="tree") as bar:
            trees, alpha, scores = fit_trees(
                X, targets, cards, split_p=self.split_p,
                min_samples_leaf=self.leaf_minimums(len(scards), len(acards)),
                max_depth=self.max_depth, seed=self.seed, progress=lambda: bar.update(1))
        reward = fit_additive_reward(X, r, cards)
        self.state_names_, self.action_names_ = snames, anames
        self.state_cards_, self.action_cards_ = scards, acards
        self.trees_ = trees[:len(snames)]
        self.end_tree_ = trees[len(snames)] if self.terminated is not None else None
        self.reward_ = reward
        self.split_p_, self.split_scores_ = alpha, scores
        self.n_transitions_ = n
        self.joint_actions_ = allowed
        self.groups_ = groups
        _, first = np.unique(_rows(S), return_index=True)
        self.seen_states_ = S[np.sort(first)]
        self._build()
        return self

    def leaf_minimums(self, d: int, m: int) -> np.ndarray:
        """Rows per branch of a split on each column of ``[s, a]`` (d state, m action)."""
        for name in ("min_samples_leaf", "min_samples_action"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise DataError(f"{name} must be an integer >= 1, got {v!r}")
        return np.r_[np.full(d, self.min_samples_leaf), np.full(m, self.min_samples_action)]

    def _allowed(self, A: np.ndarray, anames: list[str], acards: np.ndarray) -> np.ndarray:
        """The joint actions (rows) the solver maximizes over (class docstring)."""
        spec = self.joint_actions
        total = 1
        for k in acards.tolist():
            total *= int(k)
        if isinstance(spec, str) and spec == "all":
            what = f"the product of the action cardinalities {dict(zip(anames, acards.tolist()))}"
            count = total
            rows = None
        elif isinstance(spec, str) and spec == "logged":
            rows = np.unique(A, axis=0)
            what, count = "distinct logged joint actions", rows.shape[0]
        elif isinstance(spec, str):
            raise DataError(f"joint_actions must be 'logged', 'all' or an array of rows, "
                            f"got {spec!r}")
        else:
            rows = np.asarray(spec)
            if rows.ndim == 1 and len(anames) == 1:
                rows = rows[:, None]
            if rows.ndim != 2 or rows.shape[1] != len(anames) or not len(rows) or \
                    not np.issubdtype(rows.dtype, np.integer):
                raise DataError(f"joint_actions must be integer rows with one column per action "
                                f"variable {anames}, got shape {rows.shape}")
            bad = np.flatnonzero(((rows < 0) | (rows >= acards)).any(axis=1))
            if len(bad):
                raise DataError(f"joint_actions row {int(bad[0])} ({rows[bad[0]].tolist()}) lies "
                                f"outside the action values {dict(zip(anames, acards.tolist()))}")
            rows = np.unique(rows.astype(np.int64), axis=0)
            what, count = "given joint actions", rows.shape[0]
        if count > self.max_joint_actions:
            raise DataError(f"{count:,} joint actions ({what}) exceed "
                            f"max_joint_actions={self.max_joint_actions:,} by "
                            f"{count - self.max_joint_actions:,}; raise max_joint_actions or "
                            "log fewer concurrent action variables")
        if rows is None:
            rows = np.stack(np.unravel_index(np.arange(total), acards), axis=1).astype(np.int64)
        return rows.astype(np.int64)

    def _build(self) -> None:
        allowed = self.joint_actions_
        every = allowed.shape[0] == int(np.prod(self.action_cards_, dtype=np.float64))
        self.mdp_ = FactoredMDP(self.state_names_, self.action_names_, self.state_cards_,
                                self.action_cards_, self.trees_, self.reward_, self.end_tree_,
                                float(self.smoothing), None if every else allowed,
                                getattr(self, "groups_", None))
        self._circuit: Circuit | None = None

    @property
    def parents_(self) -> dict[str, list[str]]:
        """Parents of every next-state variable (and the end): the columns its tree splits on."""
        self._check_fitted()
        names = [*self.state_names_, *self.action_names_]
        out = {f"{n}_next": [names[j] for j in t.parents]
               for n, t in zip(self.state_names_, self.trees_)}
        if self.end_tree_ is not None:
            out[self.terminated] = [names[j] for j in self.end_tree_.parents]
        return out

    @property
    def coverage_(self) -> dict[str, np.ndarray]:
        """Logged samples behind every leaf, per target: ``<s>_next`` (and the end column) ->
        counts per leaf of its tree; ``reward term <vars>`` -> counts per cell of the term."""
        self._check_fitted()
        out = {f"{n}_next": t.counts[t.leaves].sum(axis=1).astype(np.int64)
               for n, t in zip(self.state_names_, self.trees_)}
        if self.end_tree_ is not None:
            t = self.end_tree_
            out[self.terminated] = t.counts[t.leaves].sum(axis=1).astype(np.int64)
        for c, cells in zip(self.reward_.cols, self.reward_.cells):
            out[f"reward term {self.mdp_.term_name(c)}"] = cells
        return out

    def leaf_coverage(self, states: Any, actions: Any) -> dict[str, np.ndarray]:
        """Logged samples behind the leaf (or reward cell) each (state, joint action) uses."""
        S, one = state_codes(self.mdp_, states)
        joint = np.broadcast_to(np.asarray(actions, np.int64), (S.shape[0],))
        return self.mdp_.leaf_counts(self.mdp_.with_actions(S, joint))

    # ------------------------------------------------------------------ solving
    def solve(self, gamma: float = 0.95, horizon: int | None = None, method: str = "auto",
              tol: float = 1e-8, *, start: Any = None, max_states: int = 50_000,
              max_nodes: int | None = 5_000_000) -> FactoredSolution:
        """Exact values and greedy policy of the learned model.

        ``method``: "structured" (value diagrams, :mod:`.structured`), "flat" (value iteration
        over the states reachable from ``start``, default the logged states: :mod:`.flat`; for a
        finite horizon H, when that set is too large, the states within H - 1 steps, whose
        values are exact at every step t they can be reached by: other (state, t) lookups
        raise), or "auto" (flat when that set has at most ``max_states`` states, structured
        otherwise).
        Finite ``horizon``: backward induction from V_H = 0, a policy per step; else value
        iteration to ``tol`` with a proven bound. Warns (CoverageWarning) when the greedy
        policy at ``start`` (or the reachable / logged states) uses thin leaves, else when it
        does at the states it reaches in seeded rollouts of the learned model
        (:func:`.coverage.warn_thin_paths`).
        """
        self._check_fitted()
        method = check_solver(method)
        S0 = self.seen_states_ if start is None else state_codes(self.mdp_, start)[0]
        states = steps = None
        if method in ("auto", "flat"):
            limit = max_states if method == "auto" else 1 << 62
            layered = horizon is not None and int(horizon) >= 1
            # closed (answers every (state, step)); past the limits, for a finite horizon, the
            # states within H - 1 steps of the start (layered) from the same search
            got = reachable(self.mdp_, S0, limit, layered=int(horizon) - 1 if layered else None)
            states, steps = got if isinstance(got, tuple) else (got, None)
            if states is None and method == "flat":
                raise SolverError(f"the states reachable from the start states need more than "
                                  f"{flat_limit():,} (s, a, s') transitions, the flat solver's "
                                  "limit; use method='structured' or fewer start states")
        if states is not None:
            res = solve_flat(self.mdp_, states.astype(np.int64), gamma, horizon, tol,
                             steps=steps)
            sol = FactoredSolution(self.mdp_, res, "flat", states.astype(np.int64), res.V, tol,
                                   max_nodes)
            where = "reachable states" if start is None else "start states"
            check = (sol.states if steps is None else S0) if start is None else S0
        else:
            res = solve_structured(self.mdp_, gamma, horizon, tol, max_nodes=max_nodes)
            if horizon is None:
                vals = res.v_rows(self.mdp_, S0, 0)
            else:
                vals = np.stack([res.v_rows(self.mdp_, S0, t) for t in range(int(horizon) + 1)])
            sol = FactoredSolution(self.mdp_, res, "structured", S0, vals, tol, max_nodes)
            where, check = ("logged states" if start is None else "start states"), S0
        if not warn_thin(sol, check, where, self.min_count):  # then along the policy's paths
            warn_thin_paths(sol, S0, self.min_count, 0 if self.seed is None else self.seed)
        return sol

    # ------------------------------------------------------------------ reading
    def predict(self, s: Any, a: Any) -> dict[str, Any]:
        """p(s'_i | s, a) for every next-state variable, E[r | s, a] and p(end | s, a) for one
        state ``s`` and action ``a`` (a code per action variable)."""
        self._check_fitted()
        S, _ = state_codes(self.mdp_, s)
        if S.shape[0] != 1:
            raise DataError("predict takes one state")
        acts = np.atleast_1d(np.asarray(a, np.int64))
        if acts.shape != (len(self.action_names_),) or (acts < 0).any() or \
                (acts >= self.action_cards_).any():
            raise DataError(f"action {a!r} must give one code per action variable "
                            f"{self.action_names_} within {self.action_cards_.tolist()}")
        X = np.concatenate([S, acts[None, :]], axis=1)
        out: dict[str, Any] = {f"{n}_next": self.mdp_.factor(i, X)[0]
                               for i, n in enumerate(self.state_names_)}
        out["reward"] = float(self.reward_.predict(X)[0])
        out["end_probability"] = float(1.0 - self.mdp_.continuation(X)[0])
        return out

    def explain(self) -> explain.FactoredExplanation:
        """Each next variable's parents and leaves, the reward's terms and fit (print it)."""
        self._check_fitted()
        return explain.explain(self.mdp_, self.n_transitions_, self.split_p_,
                               self.split_p is None, self.terminated)

    def to_networkx(self):
        """The learned dynamic Bayesian network (parents -> next variables, terms -> reward)."""
        self._check_fitted()
        return explain.dbn_graph(self.mdp_, self.reward, self.terminated)

    def to_dot(self, path: str | None = None) -> str:
        """Graphviz DOT text of :meth:`to_networkx`."""
        return explain.to_dot(self.to_networkx(), path)

    def to_circuit(self) -> Circuit:
        """The model as one validated SPMN over a step (layout in :mod:`.build`)."""
        self._check_fitted()
        return build.build_circuit(self.mdp_, self.reward, self.terminated)

    @property
    def circuit_(self) -> Circuit:
        self._check_fitted()
        if self._circuit is None:
            self._circuit = self.to_circuit()
        return self._circuit

    def circuit_evidence(self, states: Any, actions: Any = None, next_states: Any = None
                         ) -> np.ndarray:
        """Evidence rows for ``circuit_``: the state copied onto every ``<parent>|<target>``,
        the joint action codes and next states when given."""
        S, _ = state_codes(self.mdp_, states)
        Sn = None if next_states is None else state_codes(self.mdp_, next_states)[0]
        joint = None if actions is None else np.broadcast_to(np.asarray(actions, np.int64),
                                                             (S.shape[0],))
        return build.circuit_evidence(self.circuit_, self.mdp_, S, joint, Sn)

    def summary(self):
        return self.circuit_.summary()

    def __repr__(self) -> str:
        fitted = ""
        if hasattr(self, "mdp_"):
            fitted = f", parents={sum(len(p) for p in self.parents_.values())} arcs"
        return (f"FactoredWorldModel(states={[self._name(v) for v in self.states]}, "
                f"actions={[self._name(v) for v in self.actions]}, reward={self.reward!r}{fitted})")


# ---------------------------------------------------------------------------- files
def _tree_payload(t: ConditionalTree, key: str, arrays) -> dict[str, Any]:
    return {"k": t.k, **{n: {"shape": list(v.shape), "data": arrays.put(f"{key}_{n}", v.ravel())}
                         for n, v in t.to_arrays().items()}}


def flat_limit() -> int:
    return int(_flat.MAX_TRANSITIONS)


def _tree_from(doc: dict[str, Any], arrays) -> ConditionalTree:
    arr = {n: arrays.get(doc[n]["data"]).reshape(doc[n]["shape"])
           for n in ("var", "child", "counts", "crit")}
    return ConditionalTree.from_arrays(arr, doc["k"])


def to_payload(m: FactoredWorldModel, arrays) -> dict[str, Any]:
    m._check_fitted()
    rew = m.reward_
    return {
        "hyper": {"reward": m.reward, "terminated": m.terminated, "split_p": m.split_p,
                  "min_samples_leaf": m.min_samples_leaf,
                  "min_samples_action": m.min_samples_action, "max_depth": m.max_depth,
                  "smoothing": m.smoothing, "min_count": m.min_count,
                  "max_joint_actions": m.max_joint_actions,
                  "joint_actions": m.joint_actions if isinstance(m.joint_actions, str) else "given",
                  "groups": m.groups if m.groups is None or isinstance(m.groups, str) else "given"},
        "groups": None if m.groups_ is None else m.groups_.to_payload(),
        "joint_actions": {"shape": list(m.joint_actions_.shape),
                          "data": arrays.put("joint_actions", m.joint_actions_.ravel())},
        "states": [[n, int(k)] for n, k in zip(m.state_names_, m.state_cards_)],
        "actions": [[n, int(k)] for n, k in zip(m.action_names_, m.action_cards_)],
        "n_transitions": m.n_transitions_, "split_p_": m.split_p_,
        "split_scores": [[a, s] for a, s in m.split_scores_.items()],
        "trees": [_tree_payload(t, f"tree{i}", arrays) for i, t in enumerate(m.trees_)],
        "end_tree": None if m.end_tree_ is None else _tree_payload(m.end_tree_, "end", arrays),
        "reward_model": {
            "intercept": rew.intercept, "n": rew.n, "rss": rew.rss,
            "residual_max": rew.residual_max, "r2": rew.r2, "bic": rew.bic,
            "dropped": rew.dropped,
            "terms": [{"cols": list(c), "shape": list(t.shape),
                       "table": arrays.put(f"term{i}", t.ravel()),
                       "cells": arrays.put(f"cells{i}", cl.ravel())}
                      for i, (c, t, cl) in enumerate(zip(rew.cols, rew.tables, rew.cells))]},
        "seen_states": {"shape": list(m.seen_states_.shape),
                        "data": arrays.put("seen_states", m.seen_states_.ravel())},
    }


def from_payload(doc: dict[str, Any], arrays) -> FactoredWorldModel:
    h = doc["hyper"]
    m = FactoredWorldModel([Variable.discrete(n, k) for n, k in doc["states"]],
                           [Variable.decision(n, k) for n, k in doc["actions"]],
                           h["reward"], h["terminated"], split_p=h["split_p"],
                           min_samples_leaf=h["min_samples_leaf"],
                           # files before this option split actions like states
                           min_samples_action=h.get("min_samples_action", h["min_samples_leaf"]),
                           max_depth=h["max_depth"],
                           smoothing=h["smoothing"], min_count=h["min_count"],
                           max_joint_actions=h["max_joint_actions"], progress=False,
                           joint_actions=h.get("joint_actions", "all"))
    m.state_names_ = [n for n, _ in doc["states"]]
    m.action_names_ = [n for n, _ in doc["actions"]]
    m.state_cards_ = np.array([k for _, k in doc["states"]], np.int64)
    m.action_cards_ = np.array([k for _, k in doc["actions"]], np.int64)
    m.n_transitions_ = int(doc["n_transitions"])
    m.split_p_ = float(doc["split_p_"])
    m.split_scores_ = {float(a): float(s) for a, s in doc["split_scores"]}
    m.trees_ = [_tree_from(t, arrays) for t in doc["trees"]]
    m.end_tree_ = None if doc["end_tree"] is None else _tree_from(doc["end_tree"], arrays)
    rm = doc["reward_model"]
    cols, tables, cells = [], [], []
    for t in rm["terms"]:
        cols.append(tuple(int(j) for j in t["cols"]))
        tables.append(arrays.get(t["table"]).reshape(t["shape"]))
        cells.append(arrays.get(t["cells"]).reshape(t["shape"]).astype(np.int64))
    m.reward_ = AdditiveReward(float(rm["intercept"]), cols, tables, cells, int(rm["n"]),
                               float(rm["rss"]), float(rm["residual_max"]), float(rm["r2"]),
                               float(rm["bic"]), int(rm["dropped"]))
    ja = doc.get("joint_actions")  # files before 2026-12-03 (2nd session): every combination
    if ja is None:
        m.joint_actions_ = np.stack(np.unravel_index(np.arange(int(np.prod(m.action_cards_))),
                                                     m.action_cards_), axis=1).astype(np.int64)
    else:
        m.joint_actions_ = arrays.get(ja["data"]).astype(np.int64).reshape(ja["shape"])
    if m.joint_actions == "given":
        m.joint_actions = m.joint_actions_.copy()
    ss = doc["seen_states"]
    m.seen_states_ = arrays.get(ss["data"]).astype(np.int64).reshape(ss["shape"])
    m.groups_ = StateGroups.from_payload(doc.get("groups"))  # files before 2026-12-03 (3rd): none
    if h.get("groups") == "given" and m.groups_ is not None:
        m.groups = [[m.groups_.input_names[j] for j in g] for g in m.groups_.groups]
    else:
        m.groups = h.get("groups")
    m._build()
    return m


register_kind("factored_world_model", FactoredWorldModel, to_payload, from_payload)
