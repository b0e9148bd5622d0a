"""The learned factored MDP as both solvers read it: p(s', r | s, a) = Π_i p(s'_i | pa_i) ·
p(r | pa_r), the episode's end p(end | pa_end) when logged, and the joint actions.

Columns of ``X`` are the state variables then the action variables (integer codes). The joint
actions are the allowed combinations of the action variables' values (``allowed``; None: every
combination), in lexicographic order (first action variable most significant): joint action
``j`` is the row ``joint[j]``. With every combination allowed, ``j`` is
``ravel_multi_index(joint[j], action_cards)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .reward import AdditiveReward
from .trees import ConditionalTree


@dataclass(eq=False)
class FactoredMDP:
    """Factors (``trees[i]``: p(s'_i | pa_i)), the additive reward, and the optional end tree
    (p(end = 1 | pa)); ``smoothing`` is added to every leaf's counts."""

    state_names: list[str]
    action_names: list[str]
    state_cards: np.ndarray
    action_cards: np.ndarray
    trees: list[ConditionalTree]
    reward: AdditiveReward
    end: ConditionalTree | None = None
    smoothing: float = 0.0
    allowed: np.ndarray | None = None
    groups: Any = None  # a StateGroups: lookups also take the logged (input) layout

    def __post_init__(self) -> None:
        self.state_cards = np.asarray(self.state_cards, np.int64)
        self.action_cards = np.asarray(self.action_cards, np.int64)
        self.probs = [t.probs(self.smoothing) for t in self.trees]
        self.end_probs = None if self.end is None else self.end.probs(self.smoothing)[:, 1]
        self.n_combinations = int(np.prod(self.action_cards, dtype=np.float64))
        if self.allowed is None:
            self.joint = np.stack(np.unravel_index(np.arange(self.n_combinations),
                                                   self.action_cards), axis=1).astype(np.int64)
        else:
            rows = np.asarray(self.allowed, np.int64).reshape(-1, len(self.action_cards))
            self.joint = np.unique(rows, axis=0) if len(rows) else rows
        self.n_actions = int(self.joint.shape[0])
        self.restricted = self.n_actions < self.n_combinations

    @property
    def d(self) -> int:
        return len(self.state_names)

    @property
    def m(self) -> int:
        return len(self.action_names)

    @property
    def cards(self) -> np.ndarray:
        """Cardinalities of the columns of ``X`` (state variables, then action variables)."""
        return np.r_[self.state_cards, self.action_cards]

    def all_actions(self, S: np.ndarray) -> np.ndarray:
        """``X`` rows for every state of ``S`` with every joint action (state-major)."""
        n, A = S.shape[0], self.n_actions
        return np.concatenate([np.repeat(S, A, axis=0), np.tile(self.joint, (n, 1))], axis=1)

    def with_actions(self, S: np.ndarray, joint: np.ndarray) -> np.ndarray:
        return np.concatenate([S, self.joint[np.asarray(joint, np.int64)]], axis=1)

    def factor(self, i: int, X: np.ndarray) -> np.ndarray:
        """p(s'_i = v | x) for every row (rows x k_i)."""
        return self.probs[i][self.trees[i].route(X)]

    def continuation(self, X: np.ndarray) -> np.ndarray:
        """1 - p(end | x): the chance that the episode goes on."""
        if self.end is None:
            return np.ones(X.shape[0])
        return 1.0 - self.end_probs[self.end.route(X)]

    def leaf_counts(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Logged samples behind each row's leaf of every factor and reward term."""
        out = {f"{n}_next": t.counts[t.route(X)].sum(axis=1)
               for n, t in zip(self.state_names, self.trees)}
        if self.end is not None:
            out["end"] = self.end.counts[self.end.route(X)].sum(axis=1)
        cells = self.reward.cell_counts(X)
        for j, c in enumerate(self.reward.cols):
            out[f"reward term {self.term_name(c)}"] = cells[:, j].astype(np.float64)
        return out

    def term_name(self, cols) -> str:
        """A reward term's variables, e.g. ``x1*a0``."""
        names = [*self.state_names, *self.action_names]
        return "*".join(names[j] for j in cols)
