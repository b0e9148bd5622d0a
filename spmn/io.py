"""Model files: versioned JSON, with an ``.npz`` beside it for large arrays. Never pickle.

Layout of ``model.json`` (format version 1; see docs in the README)::

    {"format": "spmn", "version": 1, "kind": "circuit", "spmn_version": "...",
     "arrays": null | {"file": "model.npz", "sha256": "..."},
     "payload": {"schema": {...}, "root": 7,
                 "nodes": [{"id": 0, "type": "categorical", "var": "X", "params": {"p": [...]}},
                           {"id": 5, "type": "sum", "children": [0, 3], "weights": [...]}, ...]}}

Nodes are listed children first; a parameter list longer than ``INLINE_MAX`` numbers is stored
in the npz under a key and referenced as ``{"npz": key}``. Saving validates first and writes
through temporary files renamed into place, so a failure leaves the disk as it was. Loading
checks the format, the version, the npz checksum and the circuit's validity.
"""
from __future__ import annotations

import hashlib
import io as _io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import nodes as N
from .errors import ModelFileError, SpmnError

FORMAT = "spmn"
VERSION = 1
INLINE_MAX = 256

# kind -> (type, to_payload(obj, arrays) -> dict, from_payload(dict, arrays) -> obj)
_KINDS: dict[str, tuple[type, Callable, Callable]] = {}


def register_kind(kind: str, cls: type, to_payload: Callable, from_payload: Callable) -> None:
    """Let another module (e.g. world models) store its objects in the same file format."""
    _KINDS[kind] = (cls, to_payload, from_payload)


class _Arrays:
    """Collects large arrays on save; resolves ``{"npz": key}`` references on load."""

    def __init__(self, store: dict[str, np.ndarray] | None = None) -> None:
        self.store: dict[str, np.ndarray] = {} if store is None else store

    def put(self, key: str, values) -> Any:
        arr = np.asarray(values, dtype=np.float64)
        if arr.size <= INLINE_MAX:
            return arr.tolist()
        self.store[key] = arr
        return {"npz": key}

    def get(self, ref: Any) -> np.ndarray:
        if isinstance(ref, dict):
            key = ref.get("npz")
            if key not in self.store:
                raise ModelFileError(f"array {key!r} is missing from the model's npz file")
            return self.store[key]
        return np.asarray(ref, dtype=np.float64)


# ---------------------------------------------------------------------------- circuits
def circuit_to_payload(circuit, arrays: _Arrays) -> dict[str, Any]:
    out = []
    for i, nd in enumerate(circuit.nodes):
        rec: dict[str, Any] = {"id": i, "type": nd.kind}
        if nd.label is not None:
            rec["label"] = nd.label
        if isinstance(nd, N.Leaf):
            if isinstance(nd, N.MultivariateGaussian):
                rec["vars"] = list(nd.vars)
            elif not isinstance(nd, N.Interface):
                rec["var"] = nd.var
            rec["params"] = {k: arrays.put(f"n{i}_{k}", v) for k, v in nd.params().items()}
        else:
            rec["children"] = [circuit.node_id(c) for c in nd.children]
            if isinstance(nd, N.Sum):
                rec["weights"] = arrays.put(f"n{i}_weights", nd.weights)
            if isinstance(nd, N.Max):
                rec["var"] = nd.var
        out.append(rec)
    return {"schema": circuit.schema.to_dict(), "root": len(out) - 1, "nodes": out}


def _build_node(rec: dict[str, Any], built: list, arrays: _Arrays) -> N.Node:
    t = rec["type"]
    label = rec.get("label")
    if t in ("sum", "product", "max"):
        ids = rec["children"]
        if not isinstance(ids, list) or any(not isinstance(c, int) or not 0 <= c < len(built)
                                            for c in ids):
            raise ModelFileError(f"node {rec.get('id')}: children {ids!r} must be ids of "
                                 "earlier nodes")
        kids = [built[c] for c in ids]
        if t == "sum":
            return N.Sum(kids, arrays.get(rec["weights"]), label=label)
        if t == "product":
            return N.Product(kids, label=label)
        return N.Max(rec["var"], kids, label=label)
    p = {k: arrays.get(v) for k, v in rec["params"].items()}
    if t == "categorical":
        return N.Categorical(rec["var"], p["p"], label=label)
    if t == "gaussian":
        return N.Gaussian(rec["var"], float(p["mean"][0]), float(p["std"][0]), label=label)
    if t == "histogram":
        return N.Histogram(rec["var"], p["breaks"], p["densities"], label=label)
    if t == "utility":
        if "breaks" in p:
            return N.Utility(rec["var"], breaks=p["breaks"], densities=p["densities"], label=label)
        return N.Utility(rec["var"], values=p["values"], probs=p["probs"], label=label)
    if t == "interface":
        return N.Interface(int(p["index"][0]), label=label)
    if t == "mvgaussian":
        names = rec["vars"]
        if not isinstance(names, list) or not all(isinstance(v, str) for v in names):
            raise ModelFileError(f"node {rec.get('id')}: 'vars' must be a list of names")
        d = len(names)
        cov = p["cov"]
        if cov.size != d * d:
            raise ModelFileError(f"node {rec.get('id')}: covariance has {cov.size} entries, "
                                 f"expected {d * d} for {d} variables")
        return N.MultivariateGaussian(names, p["mean"], cov.reshape(d, d), label=label)
    raise ModelFileError(f"node {rec.get('id')}: unknown node type {t!r}")


def circuit_from_payload(payload: dict[str, Any], arrays: _Arrays):
    from .circuit import Circuit
    from .schema import Schema

    schema = Schema.from_dict(payload["schema"])
    built: list[N.Node] = []
    for i, rec in enumerate(payload["nodes"]):
        if rec.get("id") != i:
            raise ModelFileError(f"node record {i} has id {rec.get('id')!r}; ids must be 0, 1, 2, ...")
        built.append(_build_node(rec, built, arrays))
    root = payload["root"]
    if not isinstance(root, int) or not 0 <= root < len(built):
        raise ModelFileError(f"root id {root!r} is not a node id")
    return Circuit(built[root], schema)


def _register_builtin() -> None:
    from .circuit import Circuit
    from .worldmodel import WorldModel
    from .worldmodel_build import from_payload, to_payload

    register_kind("circuit", Circuit, circuit_to_payload, circuit_from_payload)
    register_kind("world_model", WorldModel, to_payload, from_payload)
    import spmn.encoders  # noqa: F401  registers "encoded_world_model" (torch stays unimported)
    from .continuous import GaussianWorldModel
    from .continuous import from_payload as gwm_from_payload
    from .continuous import to_payload as gwm_to_payload

    register_kind("gaussian_world_model", GaussianWorldModel, gwm_to_payload, gwm_from_payload)


# ---------------------------------------------------------------------------- files
def _npz_path(path: Path) -> Path:
    return path.with_suffix(".npz") if path.suffix == ".json" else Path(str(path) + ".npz")


def save(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` (a Circuit, or any registered kind) to ``path`` (JSON, + npz if large).

    The object is validated first; files appear only when everything succeeded.
    """
    if "circuit" not in _KINDS:
        _register_builtin()
    path = Path(path)
    for kind, (cls, to_payload, _) in _KINDS.items():
        if isinstance(obj, cls):
            break
    else:
        raise ModelFileError(f"cannot save a {type(obj).__name__}; known kinds: {list(_KINDS)}")
    if hasattr(obj, "validate"):
        obj.validate()
    arrays = _Arrays()
    payload = to_payload(obj, arrays)
    from . import __version__

    doc: dict[str, Any] = {"format": FORMAT, "version": VERSION, "kind": kind,
                           "spmn_version": __version__, "arrays": None, "payload": payload}
    npz_bytes = None
    if arrays.store:
        buf = _io.BytesIO()
        np.savez(buf, **arrays.store)
        npz_bytes = buf.getvalue()
        doc["arrays"] = {"file": _npz_path(path).name,
                         "sha256": hashlib.sha256(npz_bytes).hexdigest()}
    try:
        text = json.dumps(doc, allow_nan=False, indent=1)
    except ValueError as exc:
        raise ModelFileError(f"cannot write {path}: a parameter is not finite ({exc})") from None
    if not path.parent.exists():
        raise ModelFileError(f"cannot write {path}: folder {path.parent} does not exist")
    if npz_bytes is not None:
        _atomic_write(_npz_path(path), npz_bytes)
    _atomic_write(path, text.encode("utf-8"))
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: str | os.PathLike) -> Any:
    """Read a model file written by :func:`save`; errors are :class:`ModelFileError`."""
    if "circuit" not in _KINDS:
        _register_builtin()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelFileError(f"model file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"model file {path} is corrupt (not valid JSON: {exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an spmn model file (format {FORMAT!r} expected)")
    version = doc.get("version")
    if not isinstance(version, int):
        raise ModelFileError(f"{path}: format version {version!r} is not an integer")
    if version > VERSION:
        raise ModelFileError(f"{path} has format version {version}, newer than this spmn "
                             f"understands ({VERSION}); upgrade spmn to read it")
    kind = doc.get("kind")
    if kind not in _KINDS:
        raise ModelFileError(f"{path}: unknown model kind {kind!r}; known: {list(_KINDS)}")
    arrays = _Arrays()
    if doc.get("arrays"):
        arrays = _Arrays(_read_npz(path, doc["arrays"]))
    try:
        return _KINDS[kind][2](doc["payload"], arrays)
    except ModelFileError:
        raise
    except SpmnError as exc:
        raise ModelFileError(f"{path} does not hold a valid model: {exc}") from exc
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelFileError(f"{path} is corrupt: malformed entry ({type(exc).__name__}: {exc})") from None


def _read_npz(path: Path, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    try:
        npz = path.parent / meta["file"]
        data = npz.read_bytes()
    except (KeyError, TypeError):
        raise ModelFileError(f"{path}: malformed 'arrays' entry {meta!r}") from None
    except OSError:
        raise ModelFileError(f"{path}: its array file {meta.get('file')!r} is missing") from None
    if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise ModelFileError(f"{path}: array file {meta['file']!r} does not match its checksum "
                             "(corrupt or from another save)")
    try:
        with np.load(_io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:
        raise ModelFileError(f"{path}: array file {meta['file']!r} is corrupt: {exc}") from None
