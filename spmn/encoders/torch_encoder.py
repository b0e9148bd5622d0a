"""Torch encoder (optional extra ``neural``): a small CNN trained on the logged frames, actions
and next frames, whose embeddings are coded by k-means (or kept continuous).

Objective, per batch of logged transitions (x_t, a_t, x_{t+1}) with unit embeddings e = f(x):

* temporal InfoNCE, both ways: a predictor g(e_t, a_t) must pick e_{t+1} out of the batch's
  next frames and vice versa, ``-log softmax_j(g(e_t, a_t) · e_{j,t+1} / τ)[t]``. Pixel noise,
  shifts and clutter are drawn afresh for every frame, so they cannot help predict the next
  frame: the critic's optimum log p(x'|x, a)/p(x') depends on the states only, and the
  contrast over the batch keeps embeddings apart (no collapse to one point);
* invariance: ``||f(aug(x)) - f(x)||²`` under the encoder's own random shifts and noise.

Rare states (the cells next to the goal, the goal itself) are a few in a thousand frames: every
``rebalance_every`` steps a pool of transitions is coded with the current network and drawn with
weights count(code)^-``balance``, so they are trained on as often as they need. Without next
frames the CNN is a denoising autoencoder instead (weaker: a fallback for clean or noisy frames).
Codes: k-means on the embeddings, with dead-code resets. ``usage_`` reports the codes in use and
their perplexity (``history_["perplexity"]`` during training); a fit whose codes collapse
(perplexity < 2 with more than one code) raises instead of returning a useless encoder.
Training is deterministic given ``seed`` (torch seeded, deterministic CPU algorithms).
"""
from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from ..errors import DataError, NotFittedError, SpmnError
from .base import EncoderSchema, Seed, check_actions, check_frames, code_usage
from .numpy_encoder import (
    BATCH,
    KMeans,
    as_rng,
    auto_map,
    check_max_codes,
    check_n_codes,
    fit_rows,
    saved_map,
    take_rows,
)


def import_torch():
    """torch, or a clear error naming the extra to install."""
    try:
        import torch
    except ImportError:
        raise SpmnError("TorchEncoder needs torch: pip install 'spmn[neural]' "
                        "(torch==2.13.0, CPU wheel)") from None
    return torch


@contextlib.contextmanager
def _torch_settings(torch, threads: int | None):
    """Deterministic algorithms and a thread count for the duration, restored afterwards."""
    old_det, old_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old_det)
        torch.set_num_threads(old_threads)


def _build(torch, channels: int, height: int, width: int, dim: int, width_mult: int):
    nn = torch.nn
    c1, c2 = 16 * width_mult, 32 * width_mult
    conv = nn.Sequential(
        nn.Conv2d(channels, c1, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(c2, c2, 3, padding=1), nn.ReLU(), nn.Flatten())
    h, w = (height + 3) // 4, (width + 3) // 4
    return nn.Sequential(conv, nn.Linear(c2 * h * w, 128), nn.ReLU(), nn.Linear(128, dim))


def _decoder(torch, channels: int, height: int, width: int, dim: int, width_mult: int):
    """Mirror of the encoder for the autoencoder objective (output cropped to the frame)."""
    nn = torch.nn
    c1, c2 = 16 * width_mult, 32 * width_mult
    h, w = (height + 3) // 4, (width + 3) // 4
    return nn.Sequential(nn.Linear(dim, 128), nn.ReLU(), nn.Linear(128, c2 * h * w), nn.ReLU(),
                         nn.Unflatten(1, (c2, h, w)),
                         nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), nn.ReLU(),
                         nn.ConvTranspose2d(c1, channels, 4, stride=2, padding=1))


class TorchEncoder:
    """CNN encoder: frames (n, H, W[, C]) -> ``dim``-d unit embeddings -> codes.

    ``n_codes``: an int, or "auto" (default): k-means with ``max_codes`` centres on the
    embeddings, then codes closer than ``merge_threshold`` noise σ merged, as in
    :class:`~spmn.encoders.PCAKMeansEncoder` (``n_codes_`` found).

    ``output``: "codes" (one discrete variable ``name``) or "features" (the embedding, for a
    quantizer downstream). Training: ``steps`` Adam steps (``lr``) on batches of
    ``batch_size`` transitions, InfoNCE temperature ``temperature``, invariance weight
    ``invariance`` under random shifts of up to ``shift`` px and noise ``aug_noise``; k-means
    on the embeddings of at most ``max_fit`` frames. ``threads`` sets torch's CPU threads
    while fitting and encoding (None: torch's default).
    """

    def __init__(self, n_codes: int | str = "auto", dim: int = 32, output: str = "codes",
                 steps: int = 800,
                 batch_size: int = 128, lr: float = 1e-3, temperature: float = 0.1,
                 invariance: float = 1.0, shift: int = 2, aug_noise: float = 0.05,
                 width: int = 1, balance: float = 0.5, rebalance_every: int = 50,
                 max_fit: int = 20000, threads: int | None = None, name: str = "z", *,
                 max_codes: int = 128, merge_threshold: float = 5.0) -> None:
        if output not in ("codes", "features"):
            raise DataError(f"output must be 'codes' or 'features', got {output!r}")
        self.n_codes = check_n_codes(n_codes)
        self.max_codes, self.merge_threshold = check_max_codes(max_codes, merge_threshold)
        if int(dim) < 1 or int(steps) < 0 or int(batch_size) < 2:
            raise DataError("dim >= 1, steps >= 0 and batch_size >= 2 are required")
        if not temperature > 0:
            raise DataError(f"temperature must be > 0, got {temperature!r}")
        self.dim, self.output, self.steps = int(dim), output, int(steps)
        self.batch_size, self.lr, self.temperature = int(batch_size), float(lr), float(temperature)
        self.invariance, self.shift, self.aug_noise = float(invariance), int(shift), float(aug_noise)
        self.width, self.max_fit, self.threads, self.name = int(width), int(max_fit), threads, str(name)
        if not 0.0 <= float(balance) <= 1.0 or int(rebalance_every) < 1:
            raise DataError("balance must lie in [0, 1] and rebalance_every be >= 1")
        self.balance, self.rebalance_every = float(balance), int(rebalance_every)

    # ------------------------------------------------------------------ training
    def _augment(self, torch, x, gen):
        """Random integer shift (edge pixels fill the border) plus Gaussian noise."""
        k, n, (H, W) = self.shift, x.shape[0], x.shape[2:]
        if k:
            p = torch.nn.functional.pad(x, (k, k, k, k), mode="replicate")
            dy = torch.randint(0, 2 * k + 1, (n,), generator=gen)
            dx = torch.randint(0, 2 * k + 1, (n,), generator=gen)
            iy = (dy[:, None] + torch.arange(H))[:, None, :, None]
            ix = (dx[:, None] + torch.arange(W))[:, None, None, :]
            x = p[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None],
                  iy, ix]
        if self.aug_noise:
            x = x + self.aug_noise * torch.randn(x.shape, generator=gen)
        return x

    def fit(self, frames: np.ndarray, actions: np.ndarray | None = None,
            next_frames: np.ndarray | None = None, *, seed: Seed = None) -> "TorchEncoder":
        """Train the CNN (temporal objective when next frames are given) and the codebook."""
        torch = import_torch()
        x = check_frames(frames)
        shape = tuple(x.shape[1:])
        n = x.shape[0]
        xn = None if next_frames is None else check_frames(next_frames, shape, "next_frames")
        if xn is not None and xn.shape[0] != n:
            raise DataError(f"{n} frames but {xn.shape[0]} next_frames")
        a = None if actions is None else check_actions(actions, n)
        if n < self.batch_size or n < self._k:
            what = f"max_codes={self._k} (n_codes='auto')" if self.n_codes == "auto" \
                else f"{self._k} codes"
            raise DataError(f"{n} frames are too few for batch_size {self.batch_size} and "
                            f"{what}")
        rng = as_rng(seed)
        with _torch_settings(torch, self.threads):
            torch.manual_seed(int(rng.integers(2**62)))
            gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
            net, hist = self._train(torch, x, xn, a, rng, gen)
            net.eval()
            self.net_, self.frame_shape_, self.history_ = net, shape, hist
            rows = fit_rows(x, xn, self.max_fit, rng)
            E = self._embed(torch, take_rows(x, xn, rows))
        self.kmeans_ = KMeans(self._k).fit(E, rng)
        raw = code_usage(self.kmeans_.labels_, self._k)
        if self._k > 1 and raw["perplexity"] < 2.0:
            raise SpmnError(f"the encoder collapsed: code perplexity {raw['perplexity']:.2f}"
                            f" over {self._k} codes; train longer or lower the temperature")
        self.code_map_ = auto_map(self, E, self.kmeans_)
        self.n_codes_ = int(self.code_map_.max()) + 1
        self.usage_ = code_usage(self.code_map_[self.kmeans_.labels_], self.n_codes_)
        return self

    @property
    def _k(self) -> int:
        """k-means centres: ``n_codes``, or ``max_codes`` for "auto"."""
        return self.max_codes if self.n_codes == "auto" else self.n_codes

    def _train(self, torch, x, xn, a, rng, gen):
        """Adam on the temporal objective (or the autoencoder one without next frames)."""
        nn, F = torch.nn, torch.nn.functional
        n, (H, W, C) = x.shape[0], x.shape[1:]
        net = _build(torch, C, H, W, self.dim, self.width)
        n_act = int(a.max()) + 1 if a is not None and xn is not None else 0
        head = nn.Sequential(nn.Linear(self.dim + n_act, 128), nn.ReLU(), nn.Linear(128, self.dim)) \
            if xn is not None else _decoder(torch, C, H, W, self.dim, self.width)
        opt = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=self.lr)
        X = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        Xn = None if xn is None else torch.from_numpy(np.ascontiguousarray(xn.transpose(0, 3, 1, 2)))
        A = F.one_hot(torch.from_numpy(a), n_act).float() if n_act else None
        B, lab = self.batch_size, torch.arange(self.batch_size)
        hist: dict[str, list] = {"objective": [], "invariance": [], "perplexity": []}
        pool, w = None, None
        for step in range(self.steps):
            if self.balance and step and step % self.rebalance_every == 0:
                pool, w, usage = self._rebalance(torch, net, x, xn, rng)
                net.train()
                hist["perplexity"].append(usage["perplexity"])
            idx = torch.from_numpy(rng.integers(0, n, B) if pool is None else
                                   pool[rng.choice(pool.size, B, p=w)])
            xb = X[idx]
            if Xn is None:  # denoising autoencoder: the code must rebuild the frame
                e = F.normalize(net(torch.cat([xb, self._augment(torch, xb, gen)])), dim=1)
                e0, e2 = e[:B], e[B:]
                obj = ((head(e0)[:, :, :H, :W] - xb) ** 2).sum((1, 2, 3)).mean()
            else:  # temporal InfoNCE, both ways
                e = F.normalize(net(torch.cat([xb, Xn[idx], self._augment(torch, xb, gen)])), dim=1)
                e0, e1, e2 = e[:B], e[B:2 * B], e[2 * B:]
                h = torch.cat([e0, A[idx]], 1) if A is not None else e0
                logits = F.normalize(head(h), dim=1) @ e1.T / self.temperature
                obj = 0.5 * (F.cross_entropy(logits, lab) + F.cross_entropy(logits.T, lab))
            inv = ((e2 - e0) ** 2).sum(1).mean()
            opt.zero_grad()
            (obj + self.invariance * inv).backward()
            opt.step()
            hist["objective"].append(float(obj.detach()))
            hist["invariance"].append(float(inv.detach()))
        return net, hist

    def _rebalance(self, torch, net, x: np.ndarray, xn: np.ndarray | None,
                   rng: np.random.Generator):
        """Code a pool of transitions with the current network; weight each by the mean of
        count^-balance over the codes of its two frames, so transitions from or into rare
        states (by current codes: episode ends included) are drawn more often."""
        pool = np.sort(rng.choice(x.shape[0], min(x.shape[0], 4096), replace=False))
        self.net_ = net
        net.eval()
        E = self._embed(torch, x[pool] if xn is None else np.concatenate([x[pool], xn[pool]]))
        k = min(self._k, E.shape[0])
        lab = KMeans(k, n_init=1, max_iter=20).fit(E, rng).labels_
        cnt = np.bincount(lab, minlength=k).astype(np.float64)
        w = (cnt[lab] ** -self.balance).reshape(-1, pool.size).mean(0)
        return pool, w / w.sum(), code_usage(lab, k)

    def _embed(self, torch, x: np.ndarray) -> np.ndarray:
        out = np.empty((x.shape[0], self.dim))
        with torch.no_grad():
            for lo in range(0, x.shape[0], BATCH):
                xb = torch.from_numpy(np.ascontiguousarray(x[lo:lo + BATCH].transpose(0, 3, 1, 2)))
                out[lo:lo + BATCH] = torch.nn.functional.normalize(self.net_(xb), dim=1).numpy()
        return out

    # ------------------------------------------------------------------ encoding
    def _check(self) -> None:
        if not hasattr(self, "kmeans_"):
            raise NotFittedError("this TorchEncoder is not fitted yet: call fit(frames) first")

    @property
    def schema(self) -> EncoderSchema:
        self._check()
        if self.output == "codes":
            return EncoderSchema("discrete", (self.name,), (self.n_codes_,))
        return EncoderSchema("continuous", tuple(f"{self.name}{j}" for j in range(self.dim)))

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """Unit embeddings (n, dim) of the frames."""
        self._check()
        torch = import_torch()
        x = check_frames(frames, self.frame_shape_)
        with _torch_settings(torch, self.threads):
            return self._embed(torch, x)

    def transform(self, frames: np.ndarray) -> np.ndarray:
        """Codes (n, 1) int64, or embeddings (n, dim) when ``output="features"``."""
        E = self.embed(frames)
        return self.code_map_[self.kmeans_.predict(E)][:, None] if self.output == "codes" else E

    # ------------------------------------------------------------------ model files
    def get_config(self) -> dict[str, Any]:
        return {"n_codes": self.n_codes, "dim": self.dim, "output": self.output,
                "steps": self.steps, "batch_size": self.batch_size, "lr": self.lr,
                "temperature": self.temperature, "invariance": self.invariance,
                "shift": self.shift, "aug_noise": self.aug_noise, "width": self.width,
                "balance": self.balance, "rebalance_every": self.rebalance_every,
                "max_fit": self.max_fit, "threads": self.threads, "name": self.name,
                "max_codes": self.max_codes, "merge_threshold": self.merge_threshold}

    def get_arrays(self) -> dict[str, np.ndarray]:
        """The CNN's ``state_dict`` tensors as arrays, the codebook and the frame shape."""
        self._check()
        out = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}
        out["centers"] = self.kmeans_.centers_
        out["frame_shape"] = np.array(self.frame_shape_)
        out["code_map"] = self.code_map_
        return out

    @classmethod
    def from_saved(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> "TorchEncoder":
        torch = import_torch()
        enc = cls(**config)
        enc.frame_shape_ = tuple(int(v) for v in arrays["frame_shape"])
        H, W, C = enc.frame_shape_
        enc.net_ = _build(torch, C, H, W, enc.dim, enc.width)
        state = {k[4:]: torch.from_numpy(np.ascontiguousarray(v, np.float32))
                 for k, v in arrays.items() if k.startswith("net.")}
        try:
            enc.net_.load_state_dict(state)
        except RuntimeError as exc:
            raise DataError(f"saved CNN weights do not fit the network: {exc}") from None
        enc.net_.eval()
        centers = np.asarray(arrays["centers"], np.float64)
        if centers.ndim != 2 or centers.shape[1] != enc.dim:
            raise DataError(f"saved codebook of shape {centers.shape} does not match dim={enc.dim}")
        enc.kmeans_ = KMeans(centers.shape[0])
        enc.kmeans_.centers_ = centers
        enc.code_map_, enc.n_codes_ = saved_map(enc, arrays, centers.shape[0])
        return enc
