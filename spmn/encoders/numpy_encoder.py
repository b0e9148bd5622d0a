"""The numpy fallback encoder: PCA of the pixels, then k-means codes (no torch needed).

It works on clean or noisy frames: PCA keeps the few directions in which frames of different
states differ and drops most of the per-pixel noise, so the states form tight, well separated
clusters. It does not work under random shifts or clutter, where frames of one state are far
apart in pixel space (see the encoder section of benchmarks/README.md). The k-means here (k-means++ seeding,
Lloyd iterations, dead-code resets) keeps its centres, so new frames can be coded; the
learner's k-means in :mod:`spmn.learn.splits` returns labels only and z-scores its columns,
which would blow the noise directions of a PCA up to the scale of the signal.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DataError, NotFittedError
from .base import EncoderSchema, Seed, check_frames, code_usage

BATCH = 8192


def as_rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _sqdist(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """||x - c||² for all pairs, (n, k), clipped at 0 against round-off."""
    d = (X * X).sum(1)[:, None] - 2.0 * X @ C.T + (C * C).sum(1)[None, :]
    return np.maximum(d, 0.0)


class KMeans:
    """k-means with k-means++ seeding, Lloyd iterations and dead-code resets.

    Minimizes Σ_i min_c ||x_i - μ_c||² over ``n_init`` seedings (best kept). A centre left with
    fewer than ``min_count`` rows is reset onto the row that is farthest from its own centre,
    so no code stays dead; ``resets_`` counts these moves.
    """

    def __init__(self, n_codes: int, n_init: int = 4, max_iter: int = 100, tol: float = 1e-7,
                 min_count: int = 1) -> None:
        if int(n_codes) < 1:
            raise DataError(f"n_codes must be >= 1, got {n_codes}")
        self.n_codes, self.n_init, self.max_iter = int(n_codes), int(n_init), int(max_iter)
        self.tol, self.min_count = float(tol), int(min_count)

    def _seed(self, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Greedy k-means++: each new centre is the best of 2 + ln k candidates drawn with
        probability ∝ D² (squared distance to the nearest centre so far)."""
        n, k = X.shape[0], self.n_codes
        trials = 2 + int(np.log(k))
        C = np.empty((k, X.shape[1]))
        C[0] = X[rng.integers(n)]
        d2 = _sqdist(X, C[:1])[:, 0]
        for c in range(1, k):
            tot = d2.sum()
            if tot <= 0:
                cand = rng.integers(n, size=trials)
            else:
                cand = np.minimum(np.searchsorted(np.cumsum(d2), rng.random(trials) * tot), n - 1)
            new = np.minimum(d2[None, :], _sqdist(X, X[cand]).T)
            best = int(new.sum(1).argmin())
            C[c], d2 = X[cand[best]], new[best]
        return C

    def _lloyd(self, X: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, int]:
        k, resets, prev = self.n_codes, 0, np.inf
        for _ in range(self.max_iter):
            D = _sqdist(X, C)
            lab = D.argmin(1)
            dmin = D[np.arange(X.shape[0]), lab]
            cnt = np.bincount(lab, minlength=k)
            for c in np.flatnonzero(cnt < self.min_count):  # dead-code reset
                far = int(dmin.argmax())
                C[c], dmin[far] = X[far], 0.0
                lab[far] = c
                resets += 1
            cnt = np.bincount(lab, minlength=k)
            S = np.zeros_like(C)
            np.add.at(S, lab, X)
            live = cnt > 0
            C[live] = S[live] / cnt[live, None]
            inertia = float(dmin.sum())
            if prev - inertia <= self.tol * max(prev, 1e-300):
                break
            prev = inertia
        D = _sqdist(X, C)
        lab = D.argmin(1)
        return C, lab, float(D[np.arange(X.shape[0]), lab].sum()), resets

    def fit(self, X: np.ndarray, seed: Seed = None) -> "KMeans":
        X = np.asarray(X, np.float64)
        if X.ndim != 2 or X.shape[0] < self.n_codes:
            raise DataError(f"k-means needs a 2-D array with at least {self.n_codes} rows, "
                            f"got shape {X.shape}")
        rng = as_rng(seed)
        best = None
        for _ in range(max(1, self.n_init)):
            C, lab, inertia, resets = self._lloyd(X, self._seed(X, rng))
            if best is None or inertia < best[2]:
                best = (C, lab, inertia, resets)
        self.centers_, self.labels_, self.inertia_, self.resets_ = best
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if not hasattr(self, "centers_"):
            raise NotFittedError("this KMeans is not fitted yet")
        X = np.asarray(X, np.float64)
        out = np.empty(X.shape[0], np.int64)
        for lo in range(0, X.shape[0], BATCH):
            out[lo:lo + BATCH] = _sqdist(X[lo:lo + BATCH], self.centers_).argmin(1)
        return out


def fit_rows(frames: np.ndarray, next_frames: np.ndarray | None, max_rows: int,
             rng: np.random.Generator) -> np.ndarray:
    """Indices of at most ``max_rows`` training frames drawn from frames (+ next_frames, whose
    rows are numbered after the frames'), so rare end-of-episode frames are seen too."""
    n = frames.shape[0] + (0 if next_frames is None else next_frames.shape[0])
    return np.arange(n) if n <= max_rows else np.sort(rng.choice(n, max_rows, replace=False))


def take_rows(frames: np.ndarray, next_frames: np.ndarray | None, idx: np.ndarray) -> np.ndarray:
    n0 = frames.shape[0]
    a = frames[idx[idx < n0]]
    if next_frames is None:
        return a
    return np.concatenate([a, next_frames[idx[idx >= n0] - n0]])


class PCAKMeansEncoder:
    """Numpy fallback: flatten, project on the top ``n_components`` principal directions, and
    code each frame by its nearest k-means centre (``n_codes`` codes).

    ``max_fit`` frames (from ``frames`` and ``next_frames``) are used for fitting; transform is
    batched. The schema is one discrete variable ``name`` with ``n_codes`` values.
    """

    def __init__(self, n_codes: int = 32, n_components: int = 32, max_fit: int = 20000,
                 n_init: int = 4, name: str = "z") -> None:
        if int(n_components) < 1:
            raise DataError(f"n_components must be >= 1, got {n_components}")
        self.n_codes, self.n_components = int(n_codes), int(n_components)
        self.max_fit, self.n_init, self.name = int(max_fit), int(n_init), str(name)

    def fit(self, frames: np.ndarray, actions: np.ndarray | None = None,
            next_frames: np.ndarray | None = None, *, seed: Seed = None) -> "PCAKMeansEncoder":
        """Learn the PCA basis and the codebook (actions are not used)."""
        x = check_frames(frames)
        shape = tuple(x.shape[1:])
        nx = None if next_frames is None else check_frames(next_frames, shape, "next_frames")
        rng = as_rng(seed)
        X = take_rows(x, nx, fit_rows(x, nx, self.max_fit, rng)).reshape(-1, int(np.prod(shape)))
        X = X.astype(np.float64)
        if X.shape[0] < self.n_codes:
            raise DataError(f"{X.shape[0]} frames cannot fill {self.n_codes} codes")
        mean = X.mean(0)
        Xc = X - mean
        w, V = np.linalg.eigh(Xc.T @ Xc / X.shape[0])
        m = min(self.n_components, X.shape[1])
        order = np.argsort(w)[::-1][:m]
        self.mean_, self.components_ = mean, np.ascontiguousarray(V[:, order].T)
        self.explained_variance_ = w[order]
        self.kmeans_ = KMeans(self.n_codes, n_init=self.n_init).fit(Xc @ self.components_.T, rng)
        self.frame_shape_ = shape
        self.usage_ = code_usage(self.kmeans_.labels_, self.n_codes)
        return self

    def _check(self) -> None:
        if not hasattr(self, "kmeans_"):
            raise NotFittedError("this PCAKMeansEncoder is not fitted yet: call fit(frames) first")

    @property
    def schema(self) -> EncoderSchema:
        self._check()
        return EncoderSchema("discrete", (self.name,), (self.n_codes,))

    def features(self, frames: np.ndarray) -> np.ndarray:
        """PCA coordinates (n, n_components) of the frames."""
        self._check()
        x = check_frames(frames, self.frame_shape_)
        flat = x.reshape(x.shape[0], -1)
        out = np.empty((x.shape[0], self.components_.shape[0]))
        for lo in range(0, x.shape[0], BATCH):
            out[lo:lo + BATCH] = (flat[lo:lo + BATCH] - self.mean_) @ self.components_.T
        return out

    def transform(self, frames: np.ndarray) -> np.ndarray:
        """Codes (n, 1), int64."""
        self._check()
        return self.kmeans_.predict(self.features(frames))[:, None]

    # ------------------------------------------------------------------ model files
    def get_config(self) -> dict[str, Any]:
        return {"n_codes": self.n_codes, "n_components": self.n_components,
                "max_fit": self.max_fit, "n_init": self.n_init, "name": self.name}

    def get_arrays(self) -> dict[str, np.ndarray]:
        self._check()
        return {"mean": self.mean_, "components": self.components_,
                "centers": self.kmeans_.centers_, "frame_shape": np.array(self.frame_shape_)}

    @classmethod
    def from_saved(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> "PCAKMeansEncoder":
        enc = cls(**config)
        enc.mean_ = np.asarray(arrays["mean"], np.float64)
        enc.components_ = np.asarray(arrays["components"], np.float64)
        enc.kmeans_ = KMeans(enc.n_codes)
        enc.kmeans_.centers_ = np.asarray(arrays["centers"], np.float64)
        enc.frame_shape_ = tuple(int(v) for v in arrays["frame_shape"])
        d = int(np.prod(enc.frame_shape_))
        if enc.mean_.shape != (d,) or enc.components_.shape[1] != d or \
                enc.kmeans_.centers_.shape != (enc.n_codes, enc.components_.shape[0]):
            raise DataError("saved PCA/k-means arrays do not fit together")
        return enc
