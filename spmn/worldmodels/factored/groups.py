"""One-hot groups: boolean state columns of which at most one is true, modelled as one
categorical state variable.

A position logged as one boolean per cell (RDDL's ``robot-at(x, y)``, an elevator's
``elevator-at-floor(e, f)``) is one variable in truth. As independent boolean factors the learned
model can put mass on a robot in two cells at once, wherever a factor's tree misses a parent in a
rarely logged context; the states reachable in the model then grow as the product of the cells.
As one categorical variable (code 0: none true, i + 1: member i true) those states have no code,
the factor's tree splits on the position directly, and the reachable set stays the true one.

Found from the logs (``groups="auto"``), greedily within blocks of columns that share a name
(the part before pyRDDLGym's ``___``; all columns one block when names have none): a boolean
column true in some logged state (current or next) joins the first group none of whose members
is ever true with it. A group is kept when it has two members or more and the logs are evidence
that it is exclusive: under independence its members would be true together in
``E = Σ_{i<j} n_i n_j / n >= MIN_EVIDENCE`` rows, and they never are. Or given: a list of lists
of column names, checked on the logs. A state in which two members of a group are true has no
code: lookups raise a DataError naming the group, the columns and the row.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ...errors import DataError

#: Expected co-occurrences under independence (rows) a found group's exclusivity rests on.
MIN_EVIDENCE = 10.0


def _block(name: str) -> str:
    return name.split("___")[0] if "___" in name else ""


def _group_name(members: Sequence[str], taken: set[str]) -> str:
    """The members' common prefix with ``*`` (``robot-at___x*``), unique among ``taken``."""
    base = os.path.commonprefix(list(members)).rstrip("_") or members[0]
    name = base + "*"
    i = 1
    while name in taken:
        name, i = f"{base}*{i}", i + 1
    return name


def true_counts(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows where each column is 1, rows where both of each pair are 1) of the state rows
    ``S``, as floats holding integers (what :meth:`StateGroups.from_counts` reads)."""
    B = (np.asarray(S) == 1).astype(np.float64)
    return B.sum(axis=0), B.T @ B


@dataclass(eq=False)
class StateGroups:
    """The map from the logged (input) state columns to the model's state variables: the
    columns in no group, in their order, then one categorical variable per group.

    ``input_names`` / ``input_cards``: the logged columns; ``groups``: member column indices
    per group; ``names`` / ``cards``: the model's variables (a group's card is members + 1)."""

    input_names: list[str]
    input_cards: np.ndarray
    groups: list[list[int]]

    def __post_init__(self) -> None:
        self.input_cards = np.asarray(self.input_cards, np.int64)
        inside = {j for g in self.groups for j in g}
        self.kept = [j for j in range(len(self.input_names)) if j not in inside]
        taken = {self.input_names[j] for j in self.kept}
        self.group_names: list[str] = []
        for g in self.groups:
            nm = _group_name([self.input_names[j] for j in g], taken)
            taken.add(nm)
            self.group_names.append(nm)
        self.names = [self.input_names[j] for j in self.kept] + self.group_names
        self.cards = np.array([int(self.input_cards[j]) for j in self.kept] +
                              [len(g) + 1 for g in self.groups], np.int64)

    # ------------------------------------------------------------------ finding
    @classmethod
    def find(cls, S: np.ndarray, names: Sequence[str], cards: np.ndarray, spec: Any
             ) -> "StateGroups | None":
        """Groups from ``spec`` ("auto" or lists of column names) checked on the logged state
        rows ``S`` (current and next stacked); None when no group is found."""
        counts, co = true_counts(S)
        return cls.from_counts(counts, co, S.shape[0], names, cards, spec)

    @classmethod
    def from_counts(cls, counts: np.ndarray, co: np.ndarray, n: int, names: Sequence[str],
                    cards: np.ndarray, spec: Any) -> "StateGroups | None":
        """:meth:`find` from :func:`true_counts` of the ``n`` rows (summed over partitions of
        them: the counts are integers, so any order of the sums gives the same groups)."""
        names = list(names)
        cards = np.asarray(cards, np.int64)
        binary = (cards == 2).astype(np.float64)
        counts = np.asarray(counts, np.float64) * binary
        co = np.asarray(co, np.float64) * np.outer(binary, binary)  # rows with both true
        if isinstance(spec, str):
            if spec != "auto":
                raise DataError(f"groups must be None, 'auto' or lists of state column names, "
                                f"got {spec!r}")
            groups = cls._auto(names, cards, counts, co, int(n))
        else:
            groups = cls._given(spec, names, cards, co)
        return cls(names, cards, groups) if groups else None

    @staticmethod
    def _auto(names, cards, counts, co, n) -> list[list[int]]:
        blocks: dict[str, list[list[int]]] = {}
        for j, nm in enumerate(names):
            if cards[j] != 2 or counts[j] == 0:
                continue
            cur = blocks.setdefault(_block(nm), [])
            for g in cur:
                if not co[j, g].any():
                    g.append(j)
                    break
            else:
                cur.append([j])
        out = []
        for cur in blocks.values():
            for g in cur:
                c = counts[g]
                if len(g) >= 2 and (c.sum() ** 2 - (c ** 2).sum()) / 2.0 / max(n, 1) >= \
                        MIN_EVIDENCE:
                    out.append(sorted(g))
        return sorted(out)

    @staticmethod
    def _given(spec, names, cards, co) -> list[list[int]]:
        try:
            groups = [list(g) for g in spec]
        except TypeError:
            raise DataError("groups must be None, 'auto' or lists of state column names") from None
        col = {n: j for j, n in enumerate(names)}
        seen: set[int] = set()
        out = []
        for gi, g in enumerate(groups):
            if len(g) < 2:
                raise DataError(f"group {gi} ({g}) needs two state columns or more")
            idx = []
            for nm in g:
                if nm not in col:
                    raise DataError(f"group {gi}: {nm!r} is not a state column; the state "
                                    f"columns are {names}")
                j = col[nm]
                if cards[j] != 2:
                    raise DataError(f"group {gi}: state column {nm!r} has {cards[j]} values; "
                                    "a group's columns are boolean (0/1)")
                if j in seen:
                    raise DataError(f"state column {nm!r} is in two groups")
                seen.add(j)
                idx.append(j)
            sub = co[np.ix_(idx, idx)]
            np.fill_diagonal(sub, 0)
            if sub.any():
                a, b = np.argwhere(sub)[0]
                raise DataError(f"group {gi}: state columns {names[idx[a]]!r} and "
                                f"{names[idx[b]]!r} are both true in {int(sub[a, b])} logged "
                                "states; a group's columns are never true together")
            out.append(sorted(idx))
        return sorted(out)

    # ------------------------------------------------------------------ codes
    def encode(self, S: np.ndarray, what: str = "state") -> np.ndarray:
        """Input rows -> model rows (a group's code: 0 none true, i + 1 member i true)."""
        S = np.asarray(S, np.int64)
        out = np.empty((S.shape[0], len(self.names)), np.int64)
        out[:, :len(self.kept)] = S[:, self.kept]
        for gi, g in enumerate(self.groups):
            sub = S[:, g]
            many = sub.sum(axis=1) > 1
            if many.any():
                i = int(np.flatnonzero(many)[0])
                on = [self.input_names[g[k]] for k in np.flatnonzero(sub[i])]
                raise DataError(f"{what} row {i} has {len(on)} columns of the one-hot group "
                                f"{self.group_names[gi]!r} true ({', '.join(on)}); at most one "
                                "may be (fit with groups=None to model them apart)")
            out[:, len(self.kept) + gi] = np.where(sub.any(axis=1), sub.argmax(axis=1) + 1, 0)
        return out

    def decode(self, E: np.ndarray) -> np.ndarray:
        """Model rows -> input rows (the inverse of :meth:`encode`)."""
        E = np.asarray(E, np.int64)
        out = np.zeros((E.shape[0], len(self.input_names)), np.int64)
        out[:, self.kept] = E[:, :len(self.kept)]
        rows = np.arange(E.shape[0])
        for gi, g in enumerate(self.groups):
            c = E[:, len(self.kept) + gi]
            on = c > 0
            out[rows[on], np.asarray(g)[c[on] - 1]] = 1
        return out

    def is_input(self, states: Any) -> bool:
        """Whether ``states`` are in the input layout (columns named or counted as logged)."""
        if isinstance(states, Mapping) or hasattr(states, "columns"):
            keys = set(states.keys()) if hasattr(states, "keys") else set(states.columns)
            return not set(self.names) <= keys and set(self.input_names) <= keys
        X = np.asarray(states)
        return X.ndim >= 1 and X.shape[-1] == len(self.input_names) != len(self.names)

    def values(self, name: str) -> list[str]:
        """What the codes of a group variable mean: "none", then the member columns."""
        gi = self.group_names.index(name)
        return ["none", *(self.input_names[j] for j in self.groups[gi])]

    def describe(self) -> list[str]:
        return [f"{nm} = one of {len(g)} columns ({self.input_names[g[0]]} ... "
                f"{self.input_names[g[-1]]}) or none" for nm, g in zip(self.group_names, self.groups)]

    # ------------------------------------------------------------------ files
    def to_payload(self) -> dict[str, Any]:
        return {"input": [[n, int(k)] for n, k in zip(self.input_names, self.input_cards)],
                "groups": [list(map(int, g)) for g in self.groups]}

    @classmethod
    def from_payload(cls, doc: dict[str, Any] | None) -> "StateGroups | None":
        if doc is None:
            return None
        return cls([n for n, _ in doc["input"]], np.array([k for _, k in doc["input"]], np.int64),
                   [list(map(int, g)) for g in doc["groups"]])
