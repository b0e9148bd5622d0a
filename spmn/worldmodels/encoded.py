"""EncodedWorldModel: frames -> encoder -> discrete state variables -> WorldModel -> exact solve.

The encoder maps each frame to codes; the :class:`~spmn.worldmodels.tabular.model.WorldModel` learns
p(z', r | z, a) over them and solves it exactly; ``policy(frames)`` and ``value(frames)`` encode
the frames and read the solution. An encoder that emits continuous features is followed by a
k-means quantizer (``n_codes``); codes that split one state by nuisance are merged back by a
test on their logged dynamics (:func:`merge_codes`). Model files store the encoder's weights as arrays in the npz
beside the JSON (torch ``state_dict`` tensors converted to arrays), never a pickled object.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import chdtrc

from ..encoders.base import Encoder, EncoderSchema, Seed, check_actions, check_frames
from ..encoders.numpy_encoder import BATCH, KMeans, PCAKMeansEncoder, as_rng
from ..errors import DataError, ModelFileError, NotFittedError
from ..io import register_kind
from ..learn.regions import reward_classes
from ..schema import Variable
from .tabular.model import Solution, WorldModel
from .tabular.model import from_payload as wm_from
from .tabular.model import to_payload as wm_payload


def _encoder_types() -> dict[str, type]:
    from ..encoders.torch_encoder import TorchEncoder

    return {"pca_kmeans": PCAKMeansEncoder, "torch_cnn": TorchEncoder}


class EncodedWorldModel:
    """World model learned from image observations.

    ``encoder``: any :class:`~spmn.encoders.Encoder` (default :class:`PCAKMeansEncoder`);
    ``fit_encoder``: train it in :meth:`fit` (False keeps an already fitted encoder as is);
    ``n_codes``: size of the k-means quantizer used when the encoder emits continuous
    features; ``merge``: merge codes whose logged dynamics do not differ (see
    :func:`merge_codes`; one code column only); ``world_model_args`` go to
    :class:`~spmn.worldmodels.tabular.model.WorldModel` (``structure``, ``split_p``, ``min_samples_split``,
    ``smoothing``, ...). The action variable is "a", the reward "r".

    Common keywords of every kind: ``progress`` (bars on the inner world model's long steps),
    ``seed`` (encoder training and the k-means quantizer; ``fit(seed=)`` overrides it for one
    fit), ``backend`` (the inner world model's Bellman passes).
    """

    def __init__(self, encoder: Encoder | None = None, *, fit_encoder: bool = True,
                 n_codes: int = 32, merge: bool = True, progress: bool = True,
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
        x = check_frames(frames, shape, what)
        return x[..., 0] if np.ndim(frames) == 3 else x

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
        return z if self.code_map_ is None else self.code_map_[z]

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
        self.frame_shape_ = shape
        self.solve_args_: dict[str, Any] | None = None
        self.diagnostics_ = _diagnostics(z, zn, t.astype(bool), cards)
        return self

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

    def to_env(self, num_envs: int | None = None, **kwargs: Any):
        """The learned model as a Gymnasium env drawing from p(s', r | s, a) (``num_envs``: a
        vector env of that many copies); see :func:`spmn.worldmodels.simulate.to_env`."""
        from .simulate import to_env

        return to_env(self, num_envs, **kwargs)

    def rollout(self, policy: Any = "random", n_episodes: int = 100, horizon: int = 100,
                seed: Any = None, **kwargs: Any):
        """Batched episodes of ``policy`` (a solution, a callable or "random") in the model, as
        columns with their returns; see :func:`spmn.worldmodels.simulate.rollout`."""
        from .simulate import rollout

        return rollout(self, policy, n_episodes, horizon, seed, **kwargs)

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
    of the world model's region splits. Blocks with fewer than ``min_count`` rows, and codes
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
    m.code_map_ = None if doc["code_map"] is None else np.asarray(doc["code_map"], np.int64)
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
