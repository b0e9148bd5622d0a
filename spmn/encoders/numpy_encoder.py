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

import warnings
from typing import Any

import numpy as np
import scipy.linalg

from ..errors import AliasingWarning, DataError, NotFittedError
from .base import EncoderSchema, Seed, check_frames, code_usage
from .codebook import merge_close_codes

BATCH = 8192


def as_rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _sqdist(X: np.ndarray, C: np.ndarray, xx: np.ndarray | None = None) -> np.ndarray:
    """||x - c||² for all pairs, (n, k), clipped at 0 against round-off (``xx``: the rows'
    squared norms, when known)."""
    xx = np.einsum("ij,ij->i", X, X) if xx is None else xx
    d = xx[:, None] - 2.0 * X @ C.T + np.einsum("ij,ij->i", C, C)[None, :]
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
        xx = np.einsum("ij,ij->i", X, X)
        d2 = _sqdist(X, C[:1], xx)[:, 0]
        for c in range(1, k):
            tot = d2.sum()
            if tot <= 0:
                cand = rng.integers(n, size=trials)
            else:
                cand = np.minimum(np.searchsorted(np.cumsum(d2), rng.random(trials) * tot), n - 1)
            new = np.minimum(d2[None, :], _sqdist(X, X[cand], xx).T)
            best = int(new.sum(1).argmin())
            C[c], d2 = X[cand[best]], new[best]
        return C

    def _lloyd(self, X: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, int]:
        k, resets, prev = self.n_codes, 0, np.inf
        xx = np.einsum("ij,ij->i", X, X)
        for _ in range(self.max_iter):
            D = _sqdist(X, C, xx)
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
    code each frame by its nearest k-means centre.

    ``n_codes``: an int (a fixed codebook) or "auto" (default): k-means with ``max_codes``
    centres, then codes whose frames cannot be told apart under the noise are merged
    (:mod:`spmn.encoders.codebook`: centres closer than ``merge_threshold`` noise σ along the
    line between them); ``n_codes_`` is the number found. ``max_fit`` frames (from ``frames``
    and ``next_frames``) are used for fitting; transform is batched. The schema is one
    discrete variable ``name`` with ``n_codes_`` values. ``n_init`` k-means seedings (None:
    1 for "auto", whose over-clustered pieces are merged anyway, 4 for a fixed codebook).
    """

    def __init__(self, n_codes: int | str = "auto", n_components: int = 64, max_fit: int = 20000,
                 n_init: int | None = None, name: str = "z", *, max_codes: int = 128,
                 merge_threshold: float = 5.0) -> None:
        if int(n_components) < 1:
            raise DataError(f"n_components must be >= 1, got {n_components}")
        self.n_codes = check_n_codes(n_codes)
        self.max_codes, self.merge_threshold = check_max_codes(max_codes, merge_threshold)
        self.n_components = int(n_components)
        self.max_fit, self.name = int(max_fit), str(name)
        self.n_init = None if n_init is None else int(n_init)

    def fit(self, frames: np.ndarray, actions: np.ndarray | None = None,
            next_frames: np.ndarray | None = None, *, seed: Seed = None) -> "PCAKMeansEncoder":
        """Learn the PCA basis and the codebook (actions are not used)."""
        x = check_frames(frames)
        shape = tuple(x.shape[1:])
        nx = None if next_frames is None else check_frames(next_frames, shape, "next_frames")
        rng = as_rng(seed)
        X = take_rows(x, nx, fit_rows(x, nx, self.max_fit, rng)).reshape(-1, int(np.prod(shape)))
        X = X.astype(np.float64)
        k = self.max_codes if self.n_codes == "auto" else self.n_codes
        if X.shape[0] < k:
            what = f"max_codes={k} (n_codes='auto')" if self.n_codes == "auto" else f"{k} codes"
            raise DataError(f"{X.shape[0]} frames cannot fill {what}: give at least {k} "
                            "frames or fewer codes")
        U, inv, cnt = distinct_rows(X)
        wt = cnt / cnt.sum()                       # PCA on the distinct rows, weighted
        mean = wt @ U
        m = min(self.n_components, X.shape[1])
        V, var = principal_axes((U - mean) * np.sqrt(wt)[:, None], m, rng)
        self.mean_, self.components_, self.explained_variance_ = mean, V, var
        n_init = self.n_init or (1 if self.n_codes == "auto" else 4)
        if self.n_codes == "auto" and U.shape[0] <= k:
            # as few distinct frames as centres (clean frames): each is its own centre
            self.kmeans_ = KMeans(U.shape[0])
            self.kmeans_.centers_ = (U - mean) @ V.T
            self.kmeans_.labels_ = inv
            F = self.kmeans_.centers_[inv]
        else:
            F = (X - mean) @ V.T
            self.kmeans_ = KMeans(k, n_init=n_init).fit(F, rng)
        self.code_map_ = auto_map(self, F, self.kmeans_)
        self.n_codes_ = int(self.code_map_.max()) + 1
        self.frame_shape_ = shape
        self.usage_ = code_usage(self.code_map_[self.kmeans_.labels_], self.n_codes_)
        return self

    def _check(self) -> None:
        if not hasattr(self, "kmeans_"):
            raise NotFittedError("this PCAKMeansEncoder is not fitted yet: call fit(frames) first")

    @property
    def schema(self) -> EncoderSchema:
        self._check()
        return EncoderSchema("discrete", (self.name,), (self.n_codes_,))

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
        return self.code_map_[self.kmeans_.predict(self.features(frames))][:, None]

    # ------------------------------------------------------------------ model files
    def get_config(self) -> dict[str, Any]:
        return {"n_codes": self.n_codes, "n_components": self.n_components,
                "max_fit": self.max_fit, "n_init": self.n_init, "name": self.name,
                "max_codes": self.max_codes, "merge_threshold": self.merge_threshold}

    def get_arrays(self) -> dict[str, np.ndarray]:
        self._check()
        return {"mean": self.mean_, "components": self.components_,
                "centers": self.kmeans_.centers_, "frame_shape": np.array(self.frame_shape_),
                "code_map": self.code_map_}

    @classmethod
    def from_saved(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> "PCAKMeansEncoder":
        enc = cls(**config)
        enc.mean_ = np.asarray(arrays["mean"], np.float64)
        enc.components_ = np.asarray(arrays["components"], np.float64)
        centers = np.asarray(arrays["centers"], np.float64)
        enc.kmeans_ = KMeans(centers.shape[0])
        enc.kmeans_.centers_ = centers
        enc.code_map_, enc.n_codes_ = saved_map(enc, arrays, centers.shape[0])
        enc.frame_shape_ = tuple(int(v) for v in arrays["frame_shape"])
        d = int(np.prod(enc.frame_shape_))
        if enc.mean_.shape != (d,) or enc.components_.shape[1] != d or \
                centers.shape[1] != enc.components_.shape[0]:
            raise DataError("saved PCA/k-means arrays do not fit together")
        return enc


def distinct_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct rows of X, the index of each row's distinct row and the counts (rows hashed
    by two fixed random projections, then checked: a collision keeps every row)."""
    H = X @ np.random.default_rng(12345).normal(size=(X.shape[1], 2))
    _, first, inv = np.unique(H, axis=0, return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    if first.size == X.shape[0] or not np.array_equal(X[first][inv], X):
        return X, np.arange(X.shape[0]), np.ones(X.shape[0], np.int64)
    return X[first], inv, np.bincount(inv, minlength=first.size)


def principal_axes(Xc: np.ndarray, m: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Top ``m`` principal axes (m, d) of the centred (and weighted) rows and their variances
    Σ (rows · axis)²: eigh of the d x d scatter when d <= 512, else a randomized range finder
    (Halko et al.: 4 power iterations on m + 16 Gaussian directions, then an exact SVD in that
    range), which is exact whenever the rows span at most m + 16 directions (clean frames)."""
    d = Xc.shape[1]
    if d <= 512:
        w, V = scipy.linalg.eigh(Xc.T @ Xc, subset_by_index=[d - m, d - 1])
        order = np.argsort(w)[::-1]
        return np.ascontiguousarray(V[:, order].T), np.maximum(w[order], 0.0)
    Q = np.linalg.qr(Xc @ rng.normal(size=(d, min(d, m + 16))))[0]
    for _ in range(4):
        Q = np.linalg.qr(Xc @ np.linalg.qr(Xc.T @ Q)[0])[0]
    _, sv, Vt = np.linalg.svd(Q.T @ Xc, full_matrices=False)
    return np.ascontiguousarray(Vt[:m]), sv[:m] ** 2


# ---------------------------------------------------------------------------- "auto" codebooks
def check_n_codes(n_codes: Any) -> int | str:
    """``n_codes`` as "auto" or an int >= 1."""
    if isinstance(n_codes, str):
        if n_codes != "auto":
            raise DataError(f"n_codes must be 'auto' or an int >= 1, got {n_codes!r}")
        return "auto"
    if isinstance(n_codes, bool) or not float(n_codes).is_integer() or int(n_codes) < 1:
        raise DataError(f"n_codes must be 'auto' or an int >= 1, got {n_codes!r}")
    return int(n_codes)


def check_max_codes(max_codes: Any, threshold: Any) -> tuple[int, float]:
    if isinstance(max_codes, bool) or int(max_codes) < 2:
        raise DataError(f"max_codes must be an int >= 2, got {max_codes!r}")
    if not float(threshold) >= 0:
        raise DataError(f"merge_threshold must be >= 0, got {threshold!r}")
    return int(max_codes), float(threshold)


def auto_map(enc: Any, F: np.ndarray, km: KMeans) -> np.ndarray:
    """The map k-means code -> code: identity for a fixed codebook; for ``n_codes="auto"``
    the merge of :func:`~spmn.encoders.codebook.merge_close_codes`, with an
    :class:`~spmn.errors.AliasingWarning` when more than half of ``max_codes`` stay distinct
    (each state may then not have had several centres to itself)."""
    if enc.n_codes != "auto":
        return np.arange(km.centers_.shape[0], dtype=np.int64)
    k = enc.max_codes
    cmap = merge_close_codes(F, km.labels_, km.centers_, enc.merge_threshold)
    found = int(cmap.max()) + 1
    if found > k // 2:
        warnings.warn(
            f"{type(enc).__name__}(n_codes='auto') found {found} distinct codes with "
            f"max_codes={k}: more than half of the upper limit, so some codes may hold several "
            f"states; raise max_codes (e.g. to {2 * k}); EncodedWorldModel's dynamics test "
            "names the codes that do", AliasingWarning, stacklevel=3)
    return cmap


def saved_map(enc: Any, arrays: dict[str, np.ndarray], k: int) -> tuple[np.ndarray, int]:
    """The code map of a saved encoder (identity in files written before "auto")."""
    cmap = np.asarray(arrays["code_map"], np.int64) if "code_map" in arrays else np.arange(k)
    if cmap.shape != (k,) or cmap.min(initial=0) < 0:
        raise DataError(f"saved code map has shape {cmap.shape}; the codebook has {k} centres")
    n = int(cmap.max()) + 1
    if enc.n_codes != "auto" and n != enc.n_codes:
        raise DataError(f"saved codebook has {n} codes, the config says n_codes={enc.n_codes}")
    return cmap, n
