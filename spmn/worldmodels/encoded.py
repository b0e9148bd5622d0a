"""EncodedWorldModel: frames -> encoder -> discrete state variables -> WorldModel -> exact solve.

The encoder maps each frame to codes; the :class:`~spmn.worldmodels.tabular.model.WorldModel` learns
p(z', r | z, a) over them and solves it exactly; ``policy(frames)`` and ``value(frames)`` encode
the frames and read the solution. An encoder that emits continuous features is followed by a
k-means quantizer (``n_codes``); codes that split one state by nuisance are merged back by a
test on their logged dynamics (:func:`merge_codes`). Codes that merge states are found the other
way round: a G-test per code and action on a split of its frames by their next-code and reward
distributions (:mod:`spmn.encoders.aliasing`); such codes are split by dynamics (``refine``)
and an :class:`~spmn.errors.AliasingWarning` names them. Model files store the encoder's
weights as arrays in the npz beside the JSON (torch ``state_dict`` tensors converted to
arrays), never a pickled object.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.special import chdtrc

from ..encoders.aliasing import Splits, apply_splits, find_aliasing, outcomes, refine
from ..encoders.base import Encoder, EncoderSchema, Seed, check_actions, check_frames, stack_rows
from ..encoders.numpy_encoder import BATCH, KMeans, PCAKMeansEncoder, as_rng
from ..errors import AliasingWarning, DataError, ModelFileError, NotFittedError
from ..io import register_kind
from ..learn.regions import reward_classes
from ..schema import Variable
from .simulable import Simulable
from .tabular.model import Solution, WorldModel
from .tabular.model import from_payload as wm_from
from .tabular.model import to_payload as wm_payload


def _encoder_types() -> dict[str, type]:
    from ..encoders.torch_encoder import TorchEncoder

    return {"pca_kmeans": PCAKMeansEncoder, "torch_cnn": TorchEncoder}


class EncodedWorldModel(Simulable):
    """World model learned from image observations.

    ``encoder``: any :class:`~spmn.encoders.Encoder` (default :class:`PCAKMeansEncoder`);
    ``fit_encoder``: train it in :meth:`fit` (False keeps an already fitted encoder as is);
    ``n_codes``: size of the k-means quantizer used when the encoder emits continuous
    features; ``merge``: merge codes whose logged dynamics do not differ (see
    :func:`merge_codes`; one code column only); ``world_model_args`` go to
    :class:`~spmn.worldmodels.tabular.model.WorldModel` (``structure``, ``split_p``, ``min_samples_split``,
    ``smoothing``, ...). The action variable is "a", the reward "r".

    Aliasing (one code column only): after the encoder, every code is tested for frames with
    different futures (:func:`~spmn.encoders.aliasing.find_aliasing`, level ``split_p``);
    ``refine=True`` (default) splits the codes where the test fires until it no longer does,
    ``refine=False`` leaves them; either way an :class:`~spmn.errors.AliasingWarning` names
    them. ``diagnostics_`` holds the figures (codes found, frames per code, the test's
    findings before and after).

    Common keywords of every kind: ``progress`` (bars on the inner world model's long steps),
    ``seed`` (encoder training and the k-means quantizer; ``fit(seed=)`` overrides it for one
    fit), ``backend`` (the inner world model's Bellman passes).
    """

    def __init__(self, encoder: Encoder | None = None, *, fit_encoder: bool = True,
                 n_codes: int = 32, merge: bool = True, refine: bool = True,
                 progress: bool = True,
                 seed: Seed = None, backend: str | None = None,
                 **world_model_args: Any) -> None:
        self.encoder = PCAKMeansEncoder() if encoder is None else encoder
        for meth in ("fit", "transform"):
            if not callable(getattr(self.encoder, meth, None)):
                raise DataError(f"encoder {type(self.encoder).__name__} has no {meth}() method; "
                                "wrap a plain function in CallableEncoder")
        bad = {"states", "actions", "reward", "terminated"} & set(world_model_args)
        if bad:
            raise DataError(f"{sorted(bad)} are set by EncodedWorldModel (codes, 'a', 'r', "
                            "'terminated'); pass only WorldModel hyper-parameters")
        self.fit_encoder = bool(fit_encoder)
        self.n_codes = int(n_codes)
        self.merge = bool(merge)
        self.refine = bool(refine)
        self.world_model_args = dict(world_model_args)
        self.progress, self.seed, self.backend = bool(progress), seed, backend

    # ------------------------------------------------------------------ encoding
    def _check_fitted(self) -> None:
        if not hasattr(self, "world_model_"):
            raise NotFittedError("this EncodedWorldModel is not fitted yet: call "
                                 "fit(frames, actions, rewards, next_frames, terminated) first")

    @staticmethod
    def _frames(frames: Any, shape: tuple[int, ...] | None = None, what: str = "frames") -> np.ndarray:
        """Checked float32 frames, in the caller's layout (grey frames may drop the channel)."""
        raw = stack_rows(frames, what)
        x = check_frames(raw, shape, what)
        return x[..., 0] if np.ndim(raw) == 3 else x

    def _raw(self, x: np.ndarray) -> np.ndarray:
        out = [np.asarray(self.encoder.transform(x[lo:lo + BATCH]))
               for lo in range(0, x.shape[0], BATCH)]
        z = np.concatenate(out) if out else np.zeros((0, self.encoder.schema.width))
        return z[:, None] if z.ndim == 1 else z

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """Discrete state codes (n, d) of the frames, as the world model sees them."""
        self._check_fitted()
        z = self._raw(self._frames(frames, self.frame_shape_))
        if self.quantizer_ is not None:
            z = self.quantizer_.predict(z)[:, None]
        z = z.astype(np.int64)
        if len(getattr(self, "splits_", ())):
            z = apply_splits(z[:, 0], self._features(frames), self.splits_)[:, None]
        return z if self.code_map_ is None else self.code_map_[z]

    def _features(self, frames: Any) -> np.ndarray:
        """The feature space in which codes are split: the encoder's own (PCA coordinates,
        CNN embeddings, continuous outputs), else a fixed random projection of the pixels."""
        kind = self.feature_kind_
        if kind == "features":
            return self.encoder.features(frames)
        if kind == "embed":
            return self.encoder.embed(frames)
        x = self._frames(frames, getattr(self, "frame_shape_", None))
        if kind == "continuous":
            return self._raw(x).astype(np.float64)
        flat = x.reshape(x.shape[0], -1)
        out = np.empty((flat.shape[0], self.projection_.shape[1]))
        for lo in range(0, flat.shape[0], BATCH):
            out[lo:lo + BATCH] = flat[lo:lo + BATCH] @ self.projection_
        return out

    def _feature_kind(self, schema: EncoderSchema, shape: tuple[int, ...],
                      rng: np.random.Generator) -> str:
        self.projection_ = None
        if callable(getattr(self.encoder, "features", None)):
            return "features"
        if callable(getattr(self.encoder, "embed", None)):
            return "embed"
        if schema.kind == "continuous":
            return "continuous"
        d = int(np.prod(shape))
        self.projection_ = rng.normal(size=(d, 64)) / np.sqrt(64.0)
        return "pixels"

    @property
    def state_names(self) -> list[str]:
        self._check_fitted()
        return list(self.world_model_.state_names_)

    # ------------------------------------------------------------------ learning
    def fit(self, frames: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
            next_frames: np.ndarray, terminated: np.ndarray | None = None, *,
            seed: Seed = None) -> "EncodedWorldModel":
        """Fit the encoder (on frames, actions and next frames), code both frame sets and learn
        the world model over the codes; ``terminated`` (bool, default all False) ends episodes;
        ``seed`` (default: the model's ``seed``) drives the encoder and the quantizer."""
        x = self._frames(frames)
        shape = tuple(check_frames(x[:1]).shape[1:])
        xn = self._frames(next_frames, shape, "next_frames")
        n = x.shape[0]
        if n == 0:
            raise DataError("no transitions to learn from")
        if xn.shape[0] != n:
            raise DataError(f"{n} frames but {xn.shape[0]} next_frames; one of each per transition")
        a = check_actions(actions, n)
        r = np.asarray(rewards)
        if r.ndim != 1 or r.shape[0] != n or r.dtype.kind not in "biuf":
            raise DataError(f"rewards must be {n} numbers (one per frame), got shape {r.shape}")
        if not np.all(np.isfinite(r)):
            raise DataError("rewards have NaN or infinite values")
        t = np.zeros(n, bool) if terminated is None else np.asarray(terminated)
        if t.shape != (n,) or not np.isin(t, (0, 1)).all():
            raise DataError(f"terminated must be {n} booleans (one per frame), got shape {t.shape}")
        rng = as_rng(self.seed if seed is None else seed)
        if self.fit_encoder or not _is_fitted(self.encoder):
            self.encoder.fit(x, a, xn, seed=rng)
        schema: EncoderSchema = self.encoder.schema
        z, zn = self._raw(x), self._raw(xn)
        self.quantizer_ = None
        if schema.kind == "continuous":
            self.quantizer_ = KMeans(self.n_codes).fit(np.concatenate([z, zn]), rng)
            z, zn = self.quantizer_.predict(z)[:, None], self.quantizer_.predict(zn)[:, None]
            names, cards = ("z",), (self.n_codes,)
        else:
            names, cards = schema.names, schema.cards
        self.feature_kind_ = self._feature_kind(schema, shape, rng)
        self.frame_shape_ = shape
        p_alias = float(self.world_model_args.get("split_p", 1e-3))
        min_count = int(self.world_model_args.get("min_samples_split", 20))
        rclass = reward_classes(r)
        enc_codes = int(np.prod(cards))
        self.splits_, first, F = Splits.empty(0), [], None
        if len(names) == 1:
            F, Fn = self._features(x), self._features(xn)
            if self.refine:
                self.splits_, first = refine(F, Fn, z[:, 0], zn[:, 0], a, t.astype(bool), rclass,
                                             int(cards[0]), p_alias, min_count, seed=rng)
            else:
                self.splits_ = Splits.empty(F.shape[1])
                first = find_aliasing(F, z[:, 0], a, outcomes(zn[:, 0], t, rclass), p_alias,
                                      min_count, rng)
            if len(self.splits_):
                z = apply_splits(z[:, 0], F, self.splits_)[:, None]
                zn = apply_splits(zn[:, 0], Fn, self.splits_)[:, None]
                cards = (int(cards[0]) + len(self.splits_),)
        self.code_map_ = None
        if self.merge and len(names) == 1:
            self.code_map_ = merge_codes(
                z[:, 0], a, reward_classes(r), zn[:, 0], t.astype(bool), int(cards[0]),
                p=float(self.world_model_args.get("split_p", 1e-3)),
                min_count=int(self.world_model_args.get("min_samples_split", 20)))
            z, zn = self.code_map_[z], self.code_map_[zn]
            cards = (int(self.code_map_.max()) + 1,)
        cols: dict[str, np.ndarray] = {"a": a, "r": r.astype(np.float64),
                                       "terminated": t.astype(bool)}
        for j, nm in enumerate(names):
            cols[nm], cols[f"{nm}_next"] = z[:, j].astype(np.int64), zn[:, j].astype(np.int64)
        states = [Variable.discrete(nm, int(k)) for nm, k in zip(names, cards)]
        self.world_model_ = WorldModel(states, "a", "r", "terminated", progress=self.progress,
                                       seed=self.seed, backend=self.backend,
                                       **self.world_model_args).fit(cols)
        self.solve_args_: dict[str, Any] | None = None
        self.diagnostics_ = _diagnostics(z, zn, t.astype(bool), cards)
        self.diagnostics_.update(self._alias_figures(enc_codes, first, F, z, zn, a, t, rclass,
                                                     p_alias, min_count, rng))
        mix = self.diagnostics_["end_code_mixing"]
        if mix > 0.5:
            warnings.warn(
                f"end_code_mixing = {mix:.2f}: the codes of episode-end frames also code frames "
                "that episodes go on from, so the encoder merged end states with live ones (the "
                "logged 'terminated' flag still ends those episodes). Remedy: a larger codebook "
                "or an encoder that separates these frames; see EncodedWorldModel.diagnostics_",
                AliasingWarning, stacklevel=2)
        return self

    def _alias_figures(self, enc_codes, first, F, z, zn, a, t, rclass, p_alias, min_count,
                       rng) -> dict[str, Any]:
        """The aliasing figures of a fit (and the AliasingWarning when the test fired)."""
        out: dict[str, Any] = {
            "encoder_codes": enc_codes,
            "encoder_max_codes": getattr(self.encoder, "max_codes", None)
            if getattr(self.encoder, "n_codes", None) == "auto" else None,
            "frames_per_code": np.bincount(np.concatenate([z[:, 0], zn[:, 0]]),
                                           minlength=int(z.max(initial=0)) + 1).tolist()
            if z.shape[1] == 1 else None,
            "aliased_codes": [f.to_dict() for f in first],
            "refine_splits": len(self.splits_), "residual_aliasing": [],
            "aliasing_test": "G-test per code and action, level split_p, Bonferroni"
            if F is not None else "skipped: several code columns"}
        if F is None or not first:
            return out
        final = find_aliasing(F, z[:, 0], a, outcomes(zn[:, 0], t, rclass), p_alias, min_count,
                              rng)
        out["residual_aliasing"] = [f.to_dict() for f in final]
        codes = [f.code for f in first]
        worst = first[0]
        enc = type(self.encoder).__name__
        auto = getattr(self.encoder, "n_codes", None) == "auto"
        limit = getattr(self.encoder, "max_codes" if auto else "n_codes", None)
        comps = getattr(self.encoder, "n_components", None)
        done = (f"split by dynamics into {len(self.splits_)} more codes (refine=True)"
                if self.refine else "left as they are (refine=False)")
        left = (f"; codes {[f.code for f in final]} of the final model still alias" if final
                else "; no aliasing is left after the splits" if self.refine else "")
        warnings.warn(
            f"{enc} codes {codes} hold frames with different futures (G-test of a split of "
            f"their frames by next code and reward, per action: code {worst.code} G={worst.G:.1f}"
            f", df={worst.df}, adjusted p={worst.p_adjusted:.2g}): the encoder merged states. "
            f"They were {done}{left}. Remedy: a larger codebook (the encoder's "
            f"{'max_codes' if auto else 'n_codes'}{'' if limit is None else ' = ' + str(limit)}"
            f"{'' if comps is None else ', n_components = ' + str(comps)}), an encoder that "
            "separates these frames, or more transitions; see EncodedWorldModel.diagnostics_",
            AliasingWarning, stacklevel=3)
        return out

    # ------------------------------------------------------------------ solving and queries
    def solve(self, gamma: float = 0.95, horizon: int | None = None,
              method: str = "policy_iteration", tol: float = 1e-8) -> Solution:
        """Exact values and greedy policy of the learned model over the codes (kept for
        :meth:`policy`, :meth:`value` and :meth:`q`)."""
        self._check_fitted()
        self.solution_ = self.world_model_.solve(gamma, horizon, method, tol)
        self.solve_args_ = {"gamma": float(gamma), "horizon": horizon, "method": method,
                            "tol": float(tol)}
        return self.solution_

    def _solution(self) -> Solution:
        self._check_fitted()
        if getattr(self, "solution_", None) is None:
            raise NotFittedError("this EncodedWorldModel is not solved yet: call solve(gamma) first")
        return self.solution_

    def policy(self, frames: np.ndarray) -> np.ndarray:
        """Greedy action per frame (0 in codes the model holds terminal)."""
        sol = self._solution()
        return sol.policy(self.encode(frames))

    def value(self, frames: np.ndarray) -> np.ndarray:
        """Model value V(z(frame)) per frame."""
        sol = self._solution()
        return sol.value(self.encode(frames))

    def q(self, frames: np.ndarray) -> np.ndarray:
        """Q(z(frame), a) per frame and action."""
        sol = self._solution()
        return sol.q(self.encode(frames))

    @property
    def coverage_(self) -> np.ndarray:
        """Logged transitions per (region of codes, joint action): the inner model's."""
        self._check_fitted()
        return self.world_model_.coverage_

    def state_coverage(self, frames: np.ndarray) -> np.ndarray:
        """Logged transitions per (frame's code, action), 0 for codes never logged."""
        return self.world_model_.state_coverage(self.encode(frames))

    @property
    def world_model(self) -> WorldModel:
        self._check_fitted()
        return self.world_model_

    def validate(self) -> "EncodedWorldModel":
        self._check_fitted()
        self.world_model_.validate()
        return self

    def __repr__(self) -> str:
        wm = f", {self.world_model_!r}" if hasattr(self, "world_model_") else ""
        return f"EncodedWorldModel(encoder={type(self.encoder).__name__}{wm})"


def merge_codes(z: np.ndarray, a: np.ndarray, rclass: np.ndarray, zn: np.ndarray,
                term: np.ndarray, k: int, p: float = 1e-3, min_count: int = 20) -> np.ndarray:
    """Map of the k codes onto blocks of codes with the same logged dynamics.

    An encoder with more codes than states splits a state's frames over several codes by their
    nuisance; each code then holds a share of the state's data and its estimated Q-values are
    noisier. Starting from one block per code, the two live blocks whose distributions of
    (next block, episode end, reward class) given the action differ least are merged, while a
    G-test, stratified by action, cannot tell them apart at level ``p``
    (G = 2 Σ O ln(O / E), χ² with Σ_a (outcomes_a - 1) degrees of freedom): a bottom-up mirror
    of the world model's region splits. Each round merges every disjoint such pair, most alike
    first, then the outcomes are recounted. Blocks with fewer than ``min_count`` rows, and codes
    seen only as episode ends, are left alone. Returns block ids (k,), numbered 0, 1, ...
    """
    block = np.arange(k)
    n_a, n_r = int(a.max()) + 1, int(rclass.max()) + 1
    while True:
        ids, blk = np.unique(block, return_inverse=True)
        nb = ids.size
        y = ((blk[zn] + nb * term) * n_r + rclass).astype(np.int64)
        Y = 2 * nb * n_r
        N = np.bincount((blk[z] * n_a + a) * Y + y, minlength=nb * n_a * Y).reshape(nb, n_a, Y)
        N = N.astype(np.float64)
        n = N.sum(2)
        ok = n.sum(1) >= max(int(min_count), 1)
        Ni, Nj = N[:, None], N[None, :]
        T = Ni + Nj
        tot = n[:, None] + n[None, :]
        both = (n[:, None] > 0) & (n[None, :] > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            Ei = n[:, None, :, None] * T / tot[..., None]
            Ej = n[None, :, :, None] * T / tot[..., None]
            g = np.where(Ni > 0, Ni * np.log(Ni / Ei), 0.0) + np.where(Nj > 0, Nj * np.log(Nj / Ej), 0.0)
        G = 2.0 * np.where(both[..., None], g, 0.0).sum((2, 3))
        df = (np.clip((T > 0).sum(3) - 1, 0, None) * both).sum(2)
        pv = np.where(df > 0, chdtrc(np.maximum(df, 1), G), -1.0)
        pv[~(ok[:, None] & ok[None, :])] = -1.0
        pv[np.tril_indices(nb)] = -1.0
        i, j = np.unravel_index(int(np.argmax(pv)), pv.shape)
        if pv[i, j] <= p:
            return np.unique(block, return_inverse=True)[1].astype(np.int64)
        # every disjoint pair that the test cannot tell apart is merged in this round, most
        # alike first (one pair per round costs O(k) rounds of O(k^3) each on large codebooks)
        order = np.argsort(-pv, axis=None, kind="stable")
        used = np.zeros(nb, bool)
        for flat in order:
            i, j = divmod(int(flat), nb)
            if pv[i, j] <= p:
                break
            if used[i] or used[j]:
                continue
            used[i] = used[j] = True
            block[block == ids[j]] = ids[i]


def _diagnostics(z: np.ndarray, zn: np.ndarray, term: np.ndarray, cards) -> dict[str, float]:
    """Code health without true states: codes used, and ``end_code_mixing``, the mean over
    episode ends of the share of live frames (frames a step starts from) among the frames that
    carry the end frame's code. A logged episode never goes on from its end state, so pure
    codes give 0; an encoder that codes end frames like live ones gives values near 1."""
    key = np.ravel_multi_index(z.T, cards)
    key_n = np.ravel_multi_index(zn.T, cards)
    size = int(np.prod(cards))
    live = np.bincount(key, minlength=size).astype(np.float64)
    ends = np.bincount(key_n[term], minlength=size).astype(np.float64)
    k = key_n[term]
    mixing = float((live[k] / (live[k] + ends[k])).mean()) if k.size else 0.0
    return {"codes_used": int(np.unique(np.concatenate([key, key_n])).size),
            "end_code_mixing": mixing}


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    """Diagnostics as plain JSON values (numpy scalars to Python numbers)."""
    def conv(v):
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, np.generic):
            return v.item()
        return v
    return conv(d)


def _is_fitted(encoder: Any) -> bool:
    try:
        encoder.schema
    except NotFittedError:
        return False
    return True


# ---------------------------------------------------------------------------- model files
def _put(arrays, key: str, value: Any) -> dict[str, Any]:
    arr = np.asarray(value)
    return {"shape": list(arr.shape), "dtype": str(arr.dtype),
            "data": arrays.put(key, arr.ravel().astype(np.float64))}


def _get(arrays, entry: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(entry["dtype"])
    if dtype.kind not in "biuf":
        raise ModelFileError(f"array dtype {dtype} is not numeric")
    return arrays.get(entry["data"]).astype(dtype).reshape(entry["shape"])


def to_payload(m: EncodedWorldModel, arrays) -> dict[str, Any]:
    m._check_fitted()
    enc = m.encoder
    kind = next((k for k, cls in _encoder_types().items() if type(enc) is cls), None)
    if kind is None or not hasattr(enc, "get_arrays"):
        raise ModelFileError(f"cannot save an encoder of type {type(enc).__name__}: only "
                             f"{sorted(_encoder_types())} store their weights (a CallableEncoder "
                             "wraps arbitrary code, which is never written to a model file)")
    return {
        "encoder": {"type": kind, "config": enc.get_config(),
                    "arrays": {k: _put(arrays, f"enc_{k}", v) for k, v in enc.get_arrays().items()}},
        "quantizer": None if m.quantizer_ is None else _put(arrays, "quant_centers",
                                                            m.quantizer_.centers_),
        "n_codes": m.n_codes,
        "merge": m.merge,
        "code_map": None if m.code_map_ is None else [int(v) for v in m.code_map_],
        "frame_shape": list(m.frame_shape_),
        "world_model_args": dict(m.world_model_args),
        "seed": int(m.seed) if isinstance(m.seed, (int, np.integer)) else None,
        "world_model": wm_payload(m.world_model_, arrays),
        "solve": m.solve_args_,
        "refine": m.refine,
        "feature_kind": m.feature_kind_,
        "projection": None if m.projection_ is None else _put(arrays, "projection", m.projection_),
        "splits": {"parent": _put(arrays, "split_parent", m.splits_.parent),
                   "child": _put(arrays, "split_child", m.splits_.child),
                   "threshold": _put(arrays, "split_threshold", m.splits_.threshold),
                   "direction": _put(arrays, "split_direction", m.splits_.direction)},
        "diagnostics": _jsonable(m.diagnostics_),
    }


def from_payload(doc: dict[str, Any], arrays) -> EncodedWorldModel:

    e = doc["encoder"]
    types = _encoder_types()
    if e["type"] not in types:
        raise ModelFileError(f"unknown encoder type {e['type']!r}; known: {sorted(types)}")
    enc = types[e["type"]].from_saved(e["config"], {k: _get(arrays, v) for k, v in e["arrays"].items()})
    args = {k: v for k, v in doc["world_model_args"].items() if k != "progress"}
    m = EncodedWorldModel(enc, fit_encoder=False, n_codes=int(doc["n_codes"]),
                          merge=bool(doc["merge"]), seed=doc.get("seed"), **args)
    m.refine = bool(doc.get("refine", True))
    m.code_map_ = None if doc["code_map"] is None else np.asarray(doc["code_map"], np.int64)
    m.feature_kind_ = doc.get("feature_kind", "pixels")
    m.projection_ = None if doc.get("projection") is None else _get(arrays, doc["projection"])
    sp = doc.get("splits")
    m.splits_ = Splits.empty(0) if sp is None else Splits(
        _get(arrays, sp["parent"]).astype(np.int64), _get(arrays, sp["child"]).astype(np.int64),
        _get(arrays, sp["threshold"]).astype(np.float64),
        _get(arrays, sp["direction"]).astype(np.float64))
    if len(m.splits_) and m.splits_.direction.shape[0] != len(m.splits_):
        raise ModelFileError("saved refinement splits do not fit together")
    m.diagnostics_ = dict(doc.get("diagnostics") or {})
    m.frame_shape_ = tuple(int(v) for v in doc["frame_shape"])
    m.quantizer_ = None
    if doc["quantizer"] is not None:
        m.quantizer_ = KMeans(m.n_codes)
        m.quantizer_.centers_ = _get(arrays, doc["quantizer"]).astype(np.float64)
    m.world_model_ = wm_from(doc["world_model"], arrays)
    wm = m.world_model_
    wm.progress, wm.backend = m.progress, m.backend
    if getattr(wm, "template_", None) is not None:  # the Bellman passes read the template's
        wm.template_.backend = m.backend
    m.solve_args_ = None
    if doc.get("solve"):
        m.solve(**doc["solve"])
    return m


register_kind("encoded_world_model", EncodedWorldModel, to_payload, from_payload)
