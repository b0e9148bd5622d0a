"""Exceptions raised by spmn: every user-facing failure is a :class:`SpmnError` subclass.

Messages name the variable, node or file concerned and what was expected, so a user can fix
the input without reading the source.
"""
from __future__ import annotations


class SpmnError(Exception):
    """Base class of every error that spmn raises on purpose."""


class SchemaError(SpmnError, ValueError):
    """A variable, role or partial order is malformed or unknown."""


class DataError(SpmnError, ValueError):
    """Evidence or training data do not match the schema (shape, codes, NaN, dtype)."""


class ValidationError(SpmnError, ValueError):
    """A circuit breaks a structural rule; ``node`` and ``rule`` say which and where."""

    def __init__(self, message: str, node: str | None = None, rule: str | None = None):
        super().__init__(message)
        self.node = node
        self.rule = rule


class ModelFileError(SpmnError, OSError):
    """A model file is missing, corrupt, of a future format version, or fails validation."""


class BackendError(SpmnError, RuntimeError):
    """An inference backend is unknown or not built on this machine."""


class SolverError(SpmnError, ValueError):
    """A solver got invalid input (e.g. a discount outside [0, 1)) or cannot converge."""


class NotFittedError(SpmnError, RuntimeError):
    """A model or encoder was used before ``fit``."""


class DistributedError(SpmnError, RuntimeError):
    """A fit over a dask cluster failed (a worker lost beyond the scheduler's retries, the
    cluster gone, statistics missing a partition): no model was made, none is partial."""


class SpmnWarning(UserWarning):
    """Base class of every warning spmn issues: a documented fallback changed an answer."""


class CoverageWarning(SpmnWarning):
    """An answer rests on thin data: states never logged, or (state, action) pairs seen fewer
    times than a threshold. The message says how many and how much more data would help."""


class InMemoryWarning(SpmnWarning):
    """A learner whose statistics are not all counts got a dask collection (``learn_spn`` /
    ``learn_spmn`` with continuous columns, ``independence="rdc"`` or ``cluster_sample=None``):
    it is gathered into memory (the documented fallback); the message says why and how many
    rows."""


class BuildWarning(SpmnWarning):
    """A compiled part is missing where spmn is imported from (e.g. the Cython extension in a
    source checkout that was never built): a slower backend stands in. The message says how
    to build it."""


class AliasingWarning(SpmnWarning):
    """Codes of an image encoder may hold more than one state: frames of one code lead to
    different next codes or rewards (a G-test on a split of its frames), or an automatic
    codebook kept every code of its upper limit. The message names the codes, what was done
    (split by dynamics, or left) and the remedy."""
