"""How many logged samples stand behind each answer of a tabular world model, and warnings
when an answer rests on thin data (never silent: :class:`~spmn.errors.CoverageWarning`).

Data needed is stated with Hoeffding's inequality: an outcome probability estimated from
``n`` samples of a (state, action) pair is within ``±ε`` of the truth with probability at least
``1 - δ`` once ``n >= ln(2/δ) / (2 ε²)`` (185 samples for ε = 0.1, δ = 0.05). States are
matched by their rows (lexicographic search), never by a joint code over all variables.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ...errors import CoverageWarning

#: Accuracy and confidence of the Hoeffding statement in the warnings.
EPS, DELTA = 0.1, 0.05


def samples_needed(eps: float = EPS, delta: float = DELTA) -> int:
    """Samples per (state, action) pair for every outcome probability within ±eps, w.p. 1-δ."""
    return math.ceil(math.log(2.0 / delta) / (2.0 * eps * eps))


def _rows(S: np.ndarray) -> np.ndarray:
    """Rows as one comparable void scalar each (exact; any number of variables)."""
    S = np.ascontiguousarray(S, dtype=np.int64)
    return S.view(np.dtype((np.void, S.dtype.itemsize * S.shape[1]))).ravel()


def state_action_counts(S: np.ndarray, a: np.ndarray, n_actions: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """``(states, counts)``: the distinct logged states (sorted rows) and, per state and joint
    action, the number of logged transitions out of it."""
    keys = _rows(S)
    uniq, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    counts = np.zeros((uniq.size, n_actions), np.int64)
    np.add.at(counts, (inv.ravel(), a), 1)
    return S[first], counts


def find(table: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Index of each row of ``S`` among the rows of ``table``; -1 where absent."""
    if table.shape[0] == 0 or S.shape[0] == 0:
        return np.full(S.shape[0], -1, np.int64)
    tk, sk = _rows(table), _rows(S)
    order = np.argsort(tk, kind="stable")
    pos = np.minimum(np.searchsorted(tk[order], sk), tk.size - 1)
    return np.where(tk[order[pos]] == sk, order[pos], -1)


@dataclass(frozen=True)
class PolicyCoverage:
    """Coverage of a greedy policy: the (region, action) pairs it uses with fewer than
    ``min_count`` samples, the fewest samples behind any of them, and the data needed."""

    min_count: int
    thin_pairs: int
    thin_regions: tuple[int, ...]
    fewest: int
    logged_states_in_thin: int | None
    unseen_states: int | None
    needed_per_pair: int
    more_data_factor: float

    def message(self, n_transitions: int) -> str:
        unseen = "" if not self.unseen_states else (
            f"; {self.unseen_states} states were never logged (their values come from the "
            "region fallback)")
        states = "" if self.logged_states_in_thin is None else \
            f", covering {self.logged_states_in_thin} logged states"
        more = self.more_data_factor * n_transitions
        return (f"the greedy policy relies on {self.thin_pairs} (region, action) pairs seen "
                f"fewer than {self.min_count} times (fewest: {self.fewest}){states}{unseen}. "
                f"For every transition probability within ±{EPS} at {1 - DELTA:.0%} confidence "
                f"(Hoeffding) a pair needs {self.needed_per_pair} samples: about "
                f"{self.more_data_factor:.0f} times the data ({more:,.0f} transitions instead "
                f"of {n_transitions:,}) with the same logging policy")


def policy_coverage(model, policy: np.ndarray, min_count: int) -> PolicyCoverage:
    """Coverage of the region policy ``policy`` ((regions,) or (H, regions)) of ``model``."""
    counts = model.coverage_
    pol = np.atleast_2d(policy)
    K = counts.shape[0]
    regions = np.tile(np.arange(K), pol.shape[0])
    used = counts[regions, pol.ravel()]
    thin = np.unique(regions[used < min_count])
    fewest = int(counts[thin, pol[0, thin]].min()) if thin.size else int(used.min(initial=0))
    in_thin = None
    if model.seen_states_ is not None:
        in_thin = int(np.isin(model.tree_.route(model.seen_states_), thin).sum()) \
            if thin.size and model.seen_states_.shape[0] else 0
    need = samples_needed()
    return PolicyCoverage(int(min_count), int(thin.size), tuple(int(k) for k in thin), fewest,
                          in_thin, unseen_count(model), need, need / max(fewest, 1))


def unseen_count(model) -> int | None:
    """States of the schema never logged (neither as a source nor as an episode end); None
    when the state space is too large to count (over 10**7 states) or the file predates it."""
    if model.seen_states_ is None:
        return None
    total = 1
    for k in model.state_cards_:
        total *= int(k)
        if total > 10 ** 7:
            return None
    return total - model.seen_states_.shape[0] - int(model.terminal_states_.shape[0])


def warn_policy(model, policy: np.ndarray, min_count: int) -> PolicyCoverage:
    report = policy_coverage(model, policy, min_count)
    if report.thin_pairs:
        warnings.warn(report.message(model.n_transitions_), CoverageWarning, stacklevel=3)
    return report


def unseen(model, S: np.ndarray) -> np.ndarray:
    """Mask of the rows of ``S`` that were never logged (as a source or an episode end)."""
    if model.seen_states_ is None:
        return np.zeros(S.shape[0], bool)
    return (find(model.seen_states_, S) < 0) & ~model._is_terminal(S)


def warn_unseen(model, S: np.ndarray, what: str) -> None:
    mask = unseen(model, S)
    if mask.any():
        ex = ", ".join(str(s.tolist()) for s in S[mask][:3])
        warnings.warn(f"{int(mask.sum())} of {S.shape[0]} states asked for were never logged "
                      f"(e.g. {ex}): {what} comes from the region they fall in (the documented "
                      "fallback), not from data about them", CoverageWarning, stacklevel=4)
