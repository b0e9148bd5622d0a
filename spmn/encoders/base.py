"""The encoder protocol (frames -> state variables), frame checks, a wrapper for any callable,
and the code-quality metrics (purity, code usage) used to judge an encoder against true states.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from ..errors import DataError, NotFittedError

Seed = int | np.random.Generator | None


@dataclass(frozen=True)
class EncoderSchema:
    """What an encoder emits: ``kind`` "discrete" (integer codes, ``cards[j]`` values per
    column) or "continuous" (float features); ``names`` of the emitted columns."""

    kind: str
    names: tuple[str, ...]
    cards: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("discrete", "continuous"):
            raise DataError(f"encoder schema kind must be 'discrete' or 'continuous', got {self.kind!r}")
        if self.kind == "discrete" and (self.cards is None or len(self.cards) != len(self.names)):
            raise DataError("a discrete encoder schema needs one cardinality per column")

    @property
    def width(self) -> int:
        return len(self.names)


@runtime_checkable
class Encoder(Protocol):
    """Maps frames (n, H, W) or (n, H, W, C) to state variables (n, d).

    ``fit`` may use the logged actions and next frames (temporal objectives); ``transform``
    returns int64 codes when ``schema.kind == "discrete"``, float64 features otherwise.
    """

    def fit(self, frames: np.ndarray, actions: np.ndarray | None = None,
            next_frames: np.ndarray | None = None, *, seed: Seed = None) -> "Encoder": ...

    def transform(self, frames: np.ndarray) -> np.ndarray: ...

    @property
    def schema(self) -> EncoderSchema: ...


def check_frames(frames: Any, shape: tuple[int, ...] | None = None,
                 what: str = "frames") -> np.ndarray:
    """Frames as float32 (n, H, W, C) in [0, 1] scale (uint8 divided by 255).

    Raises :class:`DataError` for a wrong rank, a non-numeric dtype, NaN or infinite pixels,
    float pixels far outside [0, 1] (0..255 stored as floats), a frame shape other than
    ``shape`` (the one seen at fit time), or, for a list of frames, a row whose shape or dtype
    differs from row 0's (the error names the row).
    """
    x = stack_rows(frames, what)
    if x.dtype.kind not in "uif" or x.dtype == np.bool_:
        raise DataError(f"{what} must hold numbers (uint8 0..255 or floats in [0, 1]), "
                        f"got dtype {x.dtype}")
    if x.ndim not in (3, 4):
        raise DataError(f"{what} must have shape (n, H, W) or (n, H, W, C), got {x.shape}")
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[1] < 4 or x.shape[2] < 4 or x.shape[3] > 4:
        raise DataError(f"{what} of shape {x.shape}: frames must be at least 4x4 pixels with at "
                        "most 4 channels (channels last)")
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        raise DataError(f"{what} have frame shape {tuple(x.shape[1:])} (H, W, C); this encoder "
                        f"was fitted on {tuple(shape)}")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x).all(axis=(1, 2, 3))
        if bad.any():
            raise DataError(f"{what}: frame {int(np.argmax(bad))} has NaN or infinite pixels "
                            f"({int(bad.sum())} such frames)")
        off = (x.max(axis=(1, 2, 3), initial=0.0) > 1.5) | (x.min(axis=(1, 2, 3), initial=0.0) < -0.5)
        if off.any():
            i = int(np.argmax(off))
            raise DataError(f"{what}: frame {i} has pixels in [{float(x[i].min()):g}, "
                            f"{float(x[i].max()):g}]; float frames must lie in [0, 1] (pass "
                            f"uint8 for 0..255; {int(off.sum())} such frames)")
        return x.astype(np.float32, copy=False)
    return x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)


def stack_rows(frames: Any, what: str = "frames") -> np.ndarray:
    """``frames`` as one array; a list (or object array) of frames must hold one shape and one
    dtype, else a :class:`DataError` names the first row that differs from row 0."""
    if isinstance(frames, np.ndarray) and frames.dtype != object:
        return frames
    if isinstance(frames, (list, tuple)) or (isinstance(frames, np.ndarray) and frames.ndim == 1):
        rows = [np.asarray(f) for f in frames]
        for i, f in enumerate(rows[1:], 1):
            if f.shape != rows[0].shape or f.dtype != rows[0].dtype:
                raise DataError(f"{what}: row {i} is a frame of shape {f.shape} and dtype "
                                f"{f.dtype}, row 0 one of shape {rows[0].shape} and dtype "
                                f"{rows[0].dtype}; every frame of a log must have one shape "
                                "and one dtype")
        return np.stack(rows) if rows else np.asarray(frames)
    return np.asarray(frames)


def check_actions(actions: Any, n: int) -> np.ndarray:
    """Integer action codes (n,), or a :class:`DataError`."""
    a = np.asarray(actions)
    if a.ndim != 1 or a.shape[0] != n:
        raise DataError(f"actions must be a 1-D array of {n} codes (one per frame), got shape {a.shape}")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise DataError("actions must be integer codes")
    elif a.dtype.kind not in "iub":
        raise DataError(f"actions must be integer codes, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if a.size and a.min() < 0:
        raise DataError(f"actions must be codes >= 0, got {int(a.min())}")
    return a


class CallableEncoder:
    """Any function ``frames -> features`` as an encoder (no training).

    The function gets float32 frames in [0, 1] laid out as given ((n, H, W) or (n, H, W, C)).
    Its output (n,) or (n, d) is read as discrete codes when it holds integers (cardinalities
    from ``cards`` or read at ``fit``), else as continuous features. ``fit`` only records the
    frame shape and the schema; the function itself is not stored in model files.
    """

    def __init__(self, fn: Callable[[np.ndarray], Any], cards: tuple[int, ...] | None = None,
                 names: tuple[str, ...] | None = None) -> None:
        if not callable(fn):
            raise DataError(f"CallableEncoder needs a callable, got {type(fn).__name__}")
        self.fn, self.cards, self.names = fn, cards, names

    def _call(self, x: np.ndarray, given: Any) -> np.ndarray:
        out = np.asarray(self.fn(x[..., 0] if np.ndim(given) == 3 else x))
        if out.ndim == 1:
            out = out[:, None]
        if out.ndim != 2 or out.shape[0] != x.shape[0]:
            raise DataError(f"the encoder function returned shape {out.shape} for {x.shape[0]} "
                            "frames; expected (n,) or (n, d)")
        if out.dtype.kind not in "iuf" or (out.dtype.kind == "f" and not np.all(np.isfinite(out))):
            raise DataError("the encoder function must return finite numbers")
        return out

    def fit(self, frames: np.ndarray, actions: np.ndarray | None = None,
            next_frames: np.ndarray | None = None, *, seed: Seed = None) -> "CallableEncoder":
        x = check_frames(frames)
        self.frame_shape_ = tuple(x.shape[1:])
        out = self._call(x, frames)
        if next_frames is not None:
            xn = check_frames(next_frames, self.frame_shape_, "next_frames")
            out = np.concatenate([out, self._call(xn, next_frames)])
        d = out.shape[1]
        names = tuple(self.names) if self.names else (("z",) if d == 1 else
                                                      tuple(f"z{j}" for j in range(d)))
        if len(names) != d:
            raise DataError(f"{len(names)} names given for {d} encoder outputs")
        if out.dtype.kind in "iu":
            cards = tuple(self.cards) if self.cards else tuple(int(c) + 1 for c in out.max(axis=0))
            self._schema = EncoderSchema("discrete", names, cards)
        else:
            self._schema = EncoderSchema("continuous", names)
        return self

    @property
    def schema(self) -> EncoderSchema:
        if not hasattr(self, "_schema"):
            raise NotFittedError("this CallableEncoder is not fitted yet: call fit(frames) first")
        return self._schema

    def transform(self, frames: np.ndarray) -> np.ndarray:
        sch = self.schema
        out = self._call(check_frames(frames, self.frame_shape_), frames)
        if sch.kind == "discrete":
            if out.dtype.kind not in "iu":
                raise DataError("the encoder function returned floats after fit saw codes")
            codes = out.astype(np.int64)
            if (codes < 0).any() or (codes >= np.array(sch.cards)).any():
                raise DataError(f"the encoder function returned codes outside 0..cards-1 {sch.cards}")
            return codes
        return out.astype(np.float64)


# ---------------------------------------------------------------------------- metrics
def _joint(codes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    c = np.asarray(codes).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if c.shape != y.shape:
        raise DataError(f"{c.size} codes but {y.size} labels")
    _, ci = np.unique(c, return_inverse=True)
    _, yi = np.unique(y, return_inverse=True)
    M = np.zeros((ci.max(initial=-1) + 1, yi.max(initial=-1) + 1))
    np.add.at(M, (ci, yi), 1.0)
    return M


def purity(codes: np.ndarray, states: np.ndarray, classes: np.ndarray | None = None) -> float:
    """Share of frames whose code's majority true class is their own: Σ_k max_s n(k, s) / n.

    ``classes`` maps a true state to its class (states with identical clean frames share one,
    see :meth:`spmn.envs.PixelMDP.frame_classes`), so indistinguishable states do not count.
    """
    y = np.asarray(states, np.int64)
    if classes is not None:
        y = np.asarray(classes, np.int64)[y]
    M = _joint(codes, y)
    return float(M.max(axis=1).sum() / max(M.sum(), 1.0))


def inverse_purity(codes: np.ndarray, states: np.ndarray,
                   classes: np.ndarray | None = None) -> float:
    """Share of frames that carry their true class's majority code: Σ_s max_k n(k, s) / n
    (1 when each class has one code; low when noise splits a class across codes)."""
    y = np.asarray(states, np.int64)
    if classes is not None:
        y = np.asarray(classes, np.int64)[y]
    M = _joint(codes, y)
    return float(M.max(axis=0).sum() / max(M.sum(), 1.0))


def code_usage(codes: np.ndarray, n_codes: int) -> dict[str, float]:
    """How many of ``n_codes`` codes are used and the perplexity exp(H(code)) of their
    frequencies; a collapsed encoder has perplexity near 1."""
    c = np.asarray(codes, np.int64).reshape(-1)
    cnt = np.bincount(c, minlength=int(n_codes)).astype(np.float64)
    p = cnt[cnt > 0] / max(cnt.sum(), 1.0)
    return {"used": int((cnt > 0).sum()), "n_codes": int(n_codes),
            "perplexity": float(np.exp(-(p * np.log(p)).sum())) if p.size else 0.0}
