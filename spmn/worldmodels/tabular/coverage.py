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
    """Coverage of a greedy policy: the logged states where it takes an action logged there
    fewer than ``min_count`` times, the (region, action) pairs it uses with fewer samples, the
    fewest samples behind any of them, and the data needed (Hoeffding, module docstring)."""

    min_count: int
    thin_states: int | None
    thin_pairs: int
    thin_regions: tuple[int, ...]
    fewest: int
    unseen_states: int | None
    needed_per_pair: int
    more_data_factor: float

    @property
    def thin(self) -> bool:
        return bool(self.thin_pairs or self.thin_states)

    def message(self, n_transitions: int) -> str:
        parts = []
        if self.thin_states:
            parts.append(f"actions logged fewer than {self.min_count} times in "
                         f"{self.thin_states} of the logged states")
        if self.thin_pairs:
            parts.append(f"{self.thin_pairs} (region, action) pairs seen fewer than "
                         f"{self.min_count} times")
        unseen = "" if not self.unseen_states else (
            f"; {self.unseen_states} states were never logged (their values come from the "
            "region fallback)")
        more = self.more_data_factor * n_transitions
        return (f"the greedy policy relies on {' and on '.join(parts)} (fewest: {self.fewest})"
                f"{unseen}. For every transition probability within ±{EPS} at {1 - DELTA:.0%} "
                f"confidence (Hoeffding) a (state, action) pair needs {self.needed_per_pair} "
                f"samples: about {self.more_data_factor:.0f} times the data ({more:,.0f} "
                f"transitions instead of {n_transitions:,}) with the same logging policy")


def policy_coverage(model, policy: np.ndarray, min_count: int) -> PolicyCoverage:
    """Coverage of the region policy ``policy`` ((regions,) or (H, regions)) of ``model``: per
    logged state (the greedy action of its region, every step) and per (region, action)."""
    counts = model.coverage_
    pol = np.atleast_2d(policy)
    K = counts.shape[0]
    regions = np.tile(np.arange(K), pol.shape[0])
    used = counts[regions, pol.ravel()]
    thin = np.unique(regions[used < min_count])
    fewest = [int(used.min(initial=10 ** 18))]
    thin_states = None
    if model.seen_states_ is not None and model.seen_states_.shape[0]:
        reg = model.tree_.route(model.seen_states_)
        per = np.stack([model.seen_counts_[np.arange(reg.size), p[reg]] for p in pol])
        low = (per < min_count).any(axis=0)
        thin_states = int(low.sum())
        fewest.append(int(per.min()))
    fewest_n = min(fewest) if fewest[0] < 10 ** 18 or len(fewest) > 1 else 0
    need = samples_needed()
    return PolicyCoverage(int(min_count), thin_states, int(thin.size),
                          tuple(int(k) for k in thin), fewest_n, unseen_count(model), need,
                          need / max(fewest_n, 1))


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
    if report.thin:
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
