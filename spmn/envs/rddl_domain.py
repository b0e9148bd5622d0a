"""One grounded RDDL instance: :class:`RDDLDomain` (see :mod:`spmn.envs.rddl` for the overview).

Columns are pyRDDLGym's ground names (``robot-at___x3__y1``) holding integer codes: a boolean is
0/1, an enum or bounded int the index into ``domain.values[name]``. A fluent that cannot be grounded
into finitely many values (real-valued, an int without finite bounds in the instance's invariants or
preconditions) raises a DataError naming it. pyRDDLGym and rddlrepository are imported lazily.
"""
from __future__ import annotations

import difflib
import math
import os
import warnings
from itertools import combinations, product
from typing import Any, Mapping, Sequence

import numpy as np

from spmn.envs.rddl_program import GroundProgram
from spmn.errors import CoverageWarning, DataError, SolverError, SpmnError
from spmn.schema import Variable

MAX_ACTIONS = 10_000  # joint actions enumerated by default
MAX_INT_VALUES = 1_024  # values an int fluent may take


def _import_pyrddlgym() -> Any:
    try:
        import pyRDDLGym  # noqa: F401
        import rddlrepository  # noqa: F401
    except ImportError as exc:
        raise SpmnError("the RDDL adapter needs the optional dependencies pyRDDLGym and "
                        f"rddlrepository (pip install 'spmn[rddl]'): {exc}") from exc
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pyRDDLGym
    return pyRDDLGym


def _parse_model(domain_file: str, instance_file: str) -> Any:
    """pyRDDLGym's lifted model, parsed without ply's table files or warnings."""
    from ply import yacc
    from pyRDDLGym.core.compiler.model import RDDLLiftedModel
    from pyRDDLGym.core.parser.parser import RDDLParser
    from pyRDDLGym.core.parser.reader import RDDLReader

    text = RDDLReader(domain_file, instance_file).rddltxt
    parser = RDDLParser(lexer=None, verbose=False)
    parser.build(debug=False, write_tables=False, errorlog=yacc.NullLogger())
    return RDDLLiftedModel(parser.parse(text))


class RDDLDomain:
    """One grounded instance of an RDDL domain.

    ``domain``: a rddlrepository name (``"CrossingTraffic_MDP_ippc2011"``) with ``instance`` its
    number, or the path of a domain ``.rddl`` file with ``instance`` the path of an instance file.
    ``max_actions`` bounds the joint actions :meth:`joint_actions` enumerates.

    Attributes: ``horizon``, ``discount``, ``max_nondef_actions`` (the instance's),
    ``state_fluents`` / ``action_fluents`` (ground names, column order), ``values`` (name -> the
    values the codes index), ``k`` / ``action_k`` (values per column), ``initial_row`` and
    ``initial_state`` (codes), ``action_defaults`` (the no-op's codes), ``model`` (pyRDDLGym's
    lifted model).
    """

    def __init__(self, domain: str, instance: int | str = 1, *, max_actions: int = MAX_ACTIONS) -> None:
        _import_pyrddlgym()
        domain, instance = str(domain), str(instance)
        if os.path.isfile(domain):
            if not os.path.isfile(instance):
                raise DataError(f"domain {domain!r} is a file, so instance must be an instance file; "
                                f"got {instance!r}")
            dfile, ifile = domain, instance
        else:
            from rddlrepository import RDDLRepoManager

            manager = RDDLRepoManager()
            if domain not in manager.list_problems():
                close = difflib.get_close_matches(domain, manager.list_problems(), n=6, cutoff=0.6)
                raise DataError(f"unknown RDDL domain {domain!r}"
                                + (f"; did you mean one of {close[:8]}?" if close else
                                   " (rddlrepository names look like 'Elevators_MDP_ippc2011')"))
            info = manager.get_problem(domain)
            if instance not in info.list_instances():
                raise DataError(f"{domain} has no instance {instance!r}; it has "
                                f"{sorted(info.list_instances(), key=lambda x: (len(x), x))}")
            dfile, ifile = info.get_domain(), info.get_instance(instance)
        self.name, self.instance = domain, instance
        self.domain_file, self.instance_file = dfile, ifile
        self.max_actions = int(max_actions)
        self.model = _parse_model(dfile, ifile)
        self._ground()

    # ------------------------------------------------------------------ grounding
    def _ground(self) -> None:
        from pyRDDLGym.core.constraints import RDDLConstraints
        from pyRDDLGym.core.simulator import RDDLSimulator

        m = self.model
        if m.observ_fluents:
            raise DataError(f"{self.name}: observation fluents {sorted(m.observ_fluents)} make it a "
                            "POMDP; the adapter reads fully observed MDPs (use the _MDP_ variant)")
        sim = RDDLSimulator(m, keep_tensors=True, objects_as_strings=False)
        self.init_values = sim.init_values
        self.cpf_order = [c for cpfs in sim.levels.values() for c in cpfs]
        bounds = RDDLConstraints(sim, vectorized=True).bounds
        self.domain_name, self.instance_name = m.domain_name, m.instance_name
        self.horizon = int(m.horizon)
        self.discount = float(m.discount)
        self.max_nondef_actions = int(m.max_allowed_actions)
        self.hidden_fluents = tuple(g for v in (*m.interm_fluents, *m.derived_fluents)
                                    for g in m.variable_groundings[v])
        self.values: dict[str, tuple] = {}
        s_layout, s_cols = self._layout(m.state_ranges, bounds, "state")
        a_layout, a_cols = self._layout(m.action_ranges, bounds, "action")
        self._s_layout, self._a_layout = s_layout, a_layout
        self.state_fluents = tuple(c[0] for c in s_cols)
        self.action_fluents = tuple(c[0] for c in a_cols)
        self.kinds = [c[1] for c in s_cols]
        self.lo = np.array([c[2] for c in s_cols], dtype=np.int64)
        self.k = np.array([c[3] for c in s_cols], dtype=np.int64)
        self.action_kinds = [c[1] for c in a_cols]
        self.action_lo = np.array([c[2] for c in a_cols], dtype=np.int64)
        self.action_k = np.array([c[3] for c in a_cols], dtype=np.int64)
        self.initial_row = self.tensors_to_row({v: self.init_values[v] for v in m.state_fluents})
        self.action_defaults = self.tensors_to_row({v: self.init_values[v] for v in m.action_fluents},
                                                   actions=True)
        bad = np.flatnonzero((self.initial_row < 0) | (self.initial_row >= self.k))
        if bad.size:
            f = self.state_fluents[bad[0]]
            raise DataError(f"initial value of {f} is outside its values {self.values[f]}")
        self.initial_state = dict(zip(self.state_fluents, self.initial_row.tolist()))
        self.next_fluents = tuple(f"{f}_next" for f in self.state_fluents)
        self.columns = (*self.state_fluents, *self.next_fluents, *self.action_fluents,
                        "r", "terminated", "truncated")
        self._program: GroundProgram | None = None
        self._actions: np.ndarray | None = None
        self._action_index: dict[bytes, int] | None = None

    def _layout(self, ranges: Mapping[str, str], bounds: Mapping[str, Any], what: str
                ) -> tuple[list[tuple], list[tuple]]:
        """Per lifted fluent (name, shape, start, stop, kind, lo); per ground column
        (name, kind, lo, k)."""
        m = self.model
        layout, cols = [], []
        for var, prange in ranges.items():
            grounds = list(m.variable_groundings[var])
            shape = np.shape(self.init_values[var])
            start = len(cols)
            if prange == "bool":
                kind, per = "bool", [(0, (False, True))] * len(grounds)
            elif prange in m.type_to_objects:
                kind, per = "enum", [(0, tuple(m.type_to_objects[prange]))] * len(grounds)
            elif prange == "int":
                kind = "int"
                low, high = (np.broadcast_to(np.asarray(b, dtype=np.float64), shape).ravel()
                             for b in bounds[var])
                per = []
                for g, lo_, hi_ in zip(grounds, low, high):
                    if not (np.isfinite(lo_) and np.isfinite(hi_)):
                        raise DataError(
                            f"{what} fluent {g} is an int without finite bounds in the instance "
                            "(state-invariants / action-preconditions such as x >= 0 ^ x <= 9); "
                            "the adapter cannot ground it into finitely many values")
                    lo_i, hi_i = int(math.ceil(lo_)), int(math.floor(hi_))
                    if hi_i - lo_i + 1 > MAX_INT_VALUES or hi_i < lo_i:
                        raise DataError(f"{what} fluent {g} ranges over [{lo_i}, {hi_i}]: more than "
                                        f"{MAX_INT_VALUES} values (or none); cannot ground it")
                    per.append((lo_i, tuple(range(lo_i, hi_i + 1))))
            else:
                bad = grounds[0] if grounds else var
                raise DataError(f"{what} fluent {bad} is {prange}-valued; the adapter grounds "
                                "only bool, enum and bounded int fluents")
            for g, (lo_, vals) in zip(grounds, per):
                self.values[g] = vals
                cols.append((g, kind, lo_, len(vals)))
            layout.append((var, shape, start, len(cols), kind, np.array([p[0] for p in per])))
        return layout, cols

    def tensors_to_row(self, tensors: Mapping[str, Any], actions: bool = False) -> np.ndarray:
        """pyRDDLGym's value tensors (lifted name -> array, enum values as indices) -> code row."""
        layout = self._a_layout if actions else self._s_layout
        row = np.zeros(layout[-1][3] if layout else 0, dtype=np.int64)
        for var, _, a, b, kind, lo in layout:
            v = np.ravel(np.asarray(tensors[var]), order="C")
            codes = v.astype(np.int64) - lo
            row[a:b] = codes
        return row

    # ------------------------------------------------------------------ conversions
    def rows_to_tensors(self, rows: np.ndarray, actions: bool = True) -> dict[str, np.ndarray]:
        """Code rows -> pyRDDLGym's value tensors (one row: the tensors themselves)."""
        layout = self._a_layout if actions else self._s_layout
        out = {}
        for var, shape, a, b, kind, lo in layout:
            v = np.asarray(rows)[..., a:b] + lo
            v = v.astype(bool) if kind == "bool" else v.astype(np.int64)
            out[var] = v.reshape(np.shape(rows)[:-1] + shape)
        return out

    def env_from_rows(self, S: np.ndarray | None, A: np.ndarray | None) -> dict[str, np.ndarray]:
        """Batch env of RDDL values (ground name -> (B,)) from state and action code rows."""
        env: dict[str, np.ndarray] = {}
        for rows, names, kinds, lo in ((S, self.state_fluents, self.kinds, self.lo),
                                       (A, self.action_fluents, self.action_kinds, self.action_lo)):
            if rows is None:
                continue
            rows = np.asarray(rows)
            for j, name in enumerate(names):
                col = rows[:, j]
                env[name] = col.astype(bool) if kinds[j] == "bool" else col.astype(np.int64) + lo[j]
        return env

    def state_dict(self, row: Sequence[int]) -> dict[str, int]:
        """A state code row -> {state fluent: code}."""
        return dict(zip(self.state_fluents, (int(x) for x in row)))

    def action_dict(self, row: Sequence[int]) -> dict[str, int]:
        """A joint-action code row -> {action fluent: code}."""
        return dict(zip(self.action_fluents, (int(x) for x in row)))

    def _codes(self, given: Mapping[str, Any] | Sequence[Any] | np.ndarray, names: Sequence[str],
               default: np.ndarray | None, what: str) -> np.ndarray:
        if isinstance(given, Mapping):
            unknown = [n for n in given if n not in self.values or n not in names]
            if unknown:
                raise DataError(f"{what}: {unknown[0]!r} is not one of the {what} fluents of "
                                f"{self.instance_name} ({', '.join(list(names)[:6])}, ...)")
            if default is None:
                missing = [n for n in names if n not in given]
                if missing:
                    raise DataError(f"{what}: no value for {missing[0]!r}")
            row = np.array(default if default is not None else np.zeros(len(names)), dtype=np.int64)
            index = {n: j for j, n in enumerate(names)}
            for n, v in given.items():
                row[index[n]] = self._code(n, v, what)
            return row
        arr = np.asarray(given)
        if arr.shape != (len(names),):
            raise DataError(f"{what}: a row needs {len(names)} codes (one per fluent), got shape {arr.shape}")
        return np.array([self._code(n, v, what) for n, v in zip(names, arr.tolist())], dtype=np.int64)

    def _code(self, name: str, v: Any, what: str) -> int:
        vals = self.values[name]
        if isinstance(v, str):
            if v.lstrip("@") not in vals:
                raise DataError(f"{what}: {name} = {v!r} is not one of {vals}")
            return vals.index(v.lstrip("@"))
        if isinstance(v, (bool, np.bool_)):
            v = int(v)
        if not float(v) == int(v) or not 0 <= int(v) < len(vals):
            raise DataError(f"{what}: {name} = {v!r} is not a code in [0, {len(vals)})")
        return int(v)

    def state_row(self, state: Mapping[str, Any] | Sequence[Any]) -> np.ndarray:
        """{fluent: code or value} (every state fluent) or a code row -> code row."""
        return self._codes(state, self.state_fluents, None, "state")

    def action_row(self, action: Mapping[str, Any] | Sequence[Any]) -> np.ndarray:
        """{fluent: code} (missing fluents take their default) or a code row -> code row."""
        return self._codes(action, self.action_fluents, self.action_defaults, "action")

    # ------------------------------------------------------------------ compiled expressions
    @property
    def program(self) -> GroundProgram:
        """Every CPF, the reward and the constraints, grounded and compiled (lazily, once)."""
        if self._program is None:
            self._program = GroundProgram(self)
        return self._program

    def n_joint_actions(self) -> int:
        """Joint actions with at most ``max_nondef_actions`` non-default fluents (before preconditions)."""
        n = len(self.action_fluents)
        kmax = min(self.max_nondef_actions, n)
        poly = [1] + [0] * kmax  # coefficients of Π_i (1 + (k_i - 1) x), truncated at x^kmax
        for ki in self.action_k.tolist():
            for d in range(kmax, 0, -1):
                poly[d] += poly[d - 1] * (ki - 1)
        return int(sum(poly))

    def joint_actions(self, max_actions: int | None = None) -> np.ndarray:
        """The valid joint actions (A, n_action_fluents) of codes, the no-op first.

        Valid: at most ``max_nondef_actions`` fluents off their default (pyRDDLGym counts every
        type) and every action precondition that reads no state holds. Preconditions that read the
        state are applied per state by :meth:`valid_actions`. Raises DataError naming the limit and
        the count when more than ``max_actions`` (default the domain's) would be enumerated.
        """
        limit = self.max_actions if max_actions is None else int(max_actions)
        if self._actions is not None and len(self._actions) <= limit:
            return self._actions
        count = self.n_joint_actions()
        if count > limit:
            raise DataError(f"{self.instance_name}: {count} joint actions (at most "
                            f"{self.max_nondef_actions} of {len(self.action_fluents)} action fluents "
                            f"off their default) exceed the limit max_actions={limit}")
        n = len(self.action_fluents)
        rows = []
        for d in range(min(self.max_nondef_actions, n) + 1):
            for subset in combinations(range(n), d):
                choices = [[c for c in range(int(self.action_k[i])) if c != self.action_defaults[i]]
                           for i in subset]
                for vals in product(*choices):
                    row = self.action_defaults.copy()
                    row[list(subset)] = vals
                    rows.append(row)
        acts = np.array(rows, dtype=np.int64).reshape(len(rows), n)
        prog = self.program
        if prog.action_preconditions:
            ok = prog.holds(prog.action_preconditions, self.env_from_rows(None, acts), len(acts)).all(axis=0)
            acts = acts[ok]
            if not len(acts):
                raise DataError(f"{self.instance_name}: no joint action satisfies the action preconditions")
        self._actions = acts
        self._action_index = {r.tobytes(): i for i, r in enumerate(acts)}
        return acts

    def action_index(self, action: Mapping[str, Any] | Sequence[Any]) -> int:
        """Index of a joint action in :meth:`joint_actions`; DataError if it is not a valid one."""
        row = self.action_row(action)
        self.joint_actions()
        i = self._action_index.get(row.tobytes())  # type: ignore[union-attr]
        if i is None:
            on = {f: c for f, c, d in zip(self.action_fluents, row, self.action_defaults) if c != d}
            raise DataError(f"{self.instance_name}: action {on} is not a valid joint action "
                            f"(max-nondef-actions = {self.max_nondef_actions}, action preconditions)")
        return i

    def policy_indices(self, solution: Any, states: np.ndarray, t: int) -> np.ndarray:
        """Indices into :meth:`joint_actions` of a solved model's greedy actions at step ``t``
        for every row of ``states``: ``solution.policy(rows, t)`` (the Solution protocol) of a
        model whose state and action variables are this domain's fluents in its order (as
        :func:`~spmn.envs.rddl.log_transitions` writes them); a finite-horizon solution's last
        step serves later steps. DataError names an action that is not a valid joint action.
        States a solution does not cover at step ``t`` (a layered flat solve answers only the
        (state, step) pairs reachable from its start states) take the no-op, with a
        CoverageWarning giving the count."""
        self.joint_actions()  # builds the action index
        H = getattr(solution, "horizon", None)
        tt = int(t) if H is None else min(int(t), int(H) - 1)
        S = np.asarray(states, np.int64)
        covers = getattr(solution, "covers", None)
        if covers is not None:  # e.g. a layered flat solve: which (state, step) it answers
            ok = np.asarray(covers(S, tt), bool)
            got = [(int(ok.sum()), solution.policy(S[ok], tt))] if ok.any() else []
        else:  # otherwise a whole batch, then row by row when some row is refused
            try:
                ok, got = np.ones(len(S), bool), [(len(S), solution.policy(S, tt))]
            except SolverError:
                ok, got = np.zeros(len(S), bool), []
                for i in range(len(S)):
                    try:
                        got.append((1, solution.policy(S[i:i + 1], tt)))
                        ok[i] = True
                    except SolverError:
                        pass
        rows = np.tile(self.action_defaults, (len(S), 1))
        if got:
            block = np.concatenate([np.asarray(g, np.int64).reshape(k, -1) for k, g in got])
            if block.shape[1] != len(self.action_fluents):
                raise DataError(f"{self.instance_name}: the solution gives {block.shape[1]} action "
                                f"columns per state, the domain has {len(self.action_fluents)} "
                                f"action fluents {self.action_fluents}")
            rows[ok] = block
        if not ok.all():
            warnings.warn(f"{self.instance_name}: the solution does not cover {int((~ok).sum())} "
                          f"of {len(S)} states at step {tt} (not reachable by then from its start "
                          "states); they take the no-op", CoverageWarning, stacklevel=2)
        out = np.fromiter((self._action_index.get(np.ascontiguousarray(r).tobytes(), -1)  # type: ignore[union-attr]
                           for r in rows), np.int64, len(rows))
        if (out < 0).any():
            self.action_index(rows[int(np.argmax(out < 0))])  # raises, naming the action
        return out

    def valid_actions(self, states: np.ndarray) -> np.ndarray:
        """(n_states, A) bool: joint action a is allowed in state s (state-reading preconditions)."""
        acts = self.joint_actions()
        states = np.atleast_2d(np.asarray(states, dtype=np.int64))
        prog = self.program
        if not prog.state_preconditions:
            return np.ones((len(states), len(acts)), dtype=bool)
        S = np.repeat(states, len(acts), axis=0)
        Aa = np.tile(acts, (len(states), 1))
        ok = prog.holds(prog.state_preconditions, self.env_from_rows(S, Aa), len(S)).all(axis=0)
        return ok.reshape(len(states), len(acts))

    # ------------------------------------------------------------------ schema and columns
    def state_variables(self) -> list[Variable]:
        return [Variable.discrete(f, len(self.values[f]), [str(v) for v in self.values[f]])
                for f in self.state_fluents]

    def action_variables(self) -> list[Variable]:
        return [Variable.decision(f, len(self.values[f]), [str(v) for v in self.values[f]])
                for f in self.action_fluents]

    def make_env(self) -> Any:
        """A fresh pyRDDLGym environment of this instance (vectorized, enum values as indices)."""
        from pyRDDLGym.core.env import RDDLEnv

        return RDDLEnv(domain=self.model, instance=None, vectorized=True,
                       backend_kwargs={"objects_as_strings": False})

    def __repr__(self) -> str:
        return (f"RDDLDomain({self.name!r}, instance={self.instance!r}: {len(self.state_fluents)} state "
                f"fluents, {len(self.action_fluents)} action fluents, horizon={self.horizon}, "
                f"discount={self.discount}, max_nondef_actions={self.max_nondef_actions})")
