"""Model files: versioned JSON, with an ``.npz`` beside it for large arrays. Never pickle.

Layout of ``model.json`` (format version 1; the payload of every kind in ``docs/format.md``)::

    {"format": "spmn", "version": 1, "kind": "circuit", "spmn_version": "...",
     "arrays": null | {"file": "model.npz", "sha256": "..."},
     "payload": {...the kind's own payload...}}

This module knows the file format alone, not one model kind: each kind registers its class and
its ``to_payload(obj, arrays)`` / ``from_payload(payload, arrays)`` with :func:`register_kind`
(the circuit in :mod:`spmn.circuit.payload`, the world models in :mod:`spmn.worldmodels`). A
kind not registered yet when a file names it is looked for by the discovery hooks the package
above installs (:func:`add_discovery`): ``spmn/__init__.py`` installs one that imports
:mod:`spmn.worldmodels`. A parameter list longer than ``INLINE_MAX`` numbers is stored in the npz
under a key and referenced as ``{"npz": key}``. Saving validates first and writes through
temporary files renamed into place, so a failure, or a process killed at any point of a save,
leaves a model that loads: the old one, or the new one (the old npz is kept under its checksum
until the new JSON is in place). Loading checks the
format, the version, the npz checksum and the model's validity.
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

from ._version import __version__
from .errors import ModelFileError, SpmnError

FORMAT = "spmn"
VERSION = 1
INLINE_MAX = 256

# kind -> (type, to_payload(obj, arrays) -> dict, from_payload(dict, arrays) -> obj)
_KINDS: dict[str, tuple[type, Callable, Callable]] = {}
_DISCOVERY: list[Callable[[], None]] = []


def register_kind(kind: str, cls: type, to_payload: Callable, from_payload: Callable) -> None:
    """Let a model kind store its objects in this file format (one call per kind)."""
    _KINDS[kind] = (cls, to_payload, from_payload)


def add_discovery(hook: Callable[[], None]) -> None:
    """``hook()`` registers more kinds (imports their modules); run once, on the first file
    whose kind is not registered yet. The package above io installs it, io imports nothing."""
    _DISCOVERY.append(hook)


def known_kinds() -> dict[str, type]:
    """Every registered kind (after running the discovery hooks) -> its class."""
    _discover()
    return {k: v[0] for k, v in _KINDS.items()}


def _discover() -> None:
    while _DISCOVERY:
        _DISCOVERY.pop(0)()


class Arrays:
    """Collects large arrays on save; resolves ``{"npz": key}`` references on load.

    Stored losslessly and compactly: integer-valued arrays in the smallest integer dtype that
    holds them, arrays that are mostly zero as their nonzero positions and values
    (``{"npz": key, "sparse": size}``), the npz compressed. ``get`` returns float64 values
    equal to those put, whatever the storage.
    """

    def __init__(self, store: dict[str, np.ndarray] | None = None) -> None:
        self.store: dict[str, np.ndarray] = {} if store is None else store

    def put(self, key: str, values) -> Any:
        arr = np.asarray(values, dtype=np.float64)
        if arr.size <= INLINE_MAX:
            return arr.tolist()
        flat = arr.ravel()
        nz = np.flatnonzero(flat)
        if nz.size * 3 < flat.size:  # mostly zero: positions and values
            self.store[f"{key}.idx"] = _compact(nz.astype(np.float64))
            self.store[f"{key}.val"] = _compact(flat[nz])
            return {"npz": key, "sparse": int(flat.size)}
        self.store[key] = _compact(flat)
        return {"npz": key}

    def get(self, ref: Any) -> np.ndarray:
        if isinstance(ref, dict):
            key = ref.get("npz")
            if "sparse" in ref:
                size = ref["sparse"]
                idx, val = self._stored(f"{key}.idx"), self._stored(f"{key}.val")
                if not isinstance(size, int) or idx.shape != val.shape or idx.ndim != 1 or (
                        idx.size and (idx.min() < 0 or idx.max() >= size)):
                    raise ModelFileError(f"sparse array {key!r} is malformed")
                out = np.zeros(size)
                out[idx.astype(np.int64)] = val
                return out
            return self._stored(key).astype(np.float64)
        return np.asarray(ref, dtype=np.float64)

    def _stored(self, key: Any) -> np.ndarray:
        if key not in self.store:
            raise ModelFileError(f"array {key!r} is missing from the model's npz file")
        return self.store[key]


def _compact(a: np.ndarray) -> np.ndarray:
    """``a`` (float64) in the smallest integer dtype that holds it exactly, else float64."""
    if a.size and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
        lo, hi = float(a.min()), float(a.max())
        for dt in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64):
            info = np.iinfo(dt)
            if info.min <= lo and hi <= info.max and max(abs(lo), abs(hi)) < 2 ** 53:
                return a.astype(dt)
    return a


# ---------------------------------------------------------------------------- files
def _kind_of(obj: Any) -> tuple[str, Callable]:
    for attempt in range(2):
        for kind, (cls, to_payload, _) in _KINDS.items():
            if type(obj) is cls:  # exact class first: a subclass may be a kind of its own
                return kind, to_payload
        for kind, (cls, to_payload, _) in _KINDS.items():
            if isinstance(obj, cls):
                return kind, to_payload
        _discover()
    raise ModelFileError(f"cannot save a {type(obj).__name__}; known kinds: {list(_KINDS)}")


def _npz_path(path: Path) -> Path:
    return path.with_suffix(".npz") if path.suffix == ".json" else Path(str(path) + ".npz")


def save(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` (a Circuit, or any registered kind) to ``path`` (JSON, + npz if large).

    The object is validated first; files appear only when everything succeeded.
    """
    path = Path(path)
    kind, to_payload = _kind_of(obj)
    if hasattr(obj, "validate"):
        obj.validate()
    arrays = Arrays()
    payload = to_payload(obj, arrays)
    doc: dict[str, Any] = {"format": FORMAT, "version": VERSION, "kind": kind,
                           "spmn_version": __version__, "arrays": None, "payload": payload}
    npz_bytes = None
    if arrays.store:
        buf = _io.BytesIO()
        np.savez_compressed(buf, **arrays.store)
        npz_bytes = buf.getvalue()
        doc["arrays"] = {"file": _npz_path(path).name,
                         "sha256": hashlib.sha256(npz_bytes).hexdigest()}
    try:
        text = json.dumps(doc, allow_nan=False, indent=1)
    except ValueError as exc:
        raise ModelFileError(f"cannot write {path}: a parameter is not finite ({exc})") from None
    if not path.parent.exists():
        raise ModelFileError(f"cannot write {path}: folder {path.parent} does not exist")
    backup = None
    if npz_bytes is not None:
        backup = _keep_old_arrays(path, _npz_path(path))
        _atomic_write(_npz_path(path), npz_bytes)
    _atomic_write(path, text.encode("utf-8"))
    if backup is not None:
        backup.unlink(missing_ok=True)
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, flushed to disk, then rename it into place
    (a rename within a folder is atomic: a reader sees the old file or the new one)."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _backup_name(npz: Path, sha: str) -> Path:
    return npz.with_name(f"{npz.name}.{sha[:16]}.old")


def _keep_old_arrays(path: Path, npz: Path) -> Path | None:
    """Two files cannot be renamed at once: between the npz's rename and the JSON's, the old
    JSON names the new npz. The old npz is kept under its checksum (a hard link, else a copy),
    where :func:`load` finds it, until the new JSON is in place; then it is removed."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8")).get("arrays") or {}
        sha = meta["sha256"]
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None
    if not npz.exists() or not isinstance(sha, str):
        return None
    backup = _backup_name(npz, sha)
    backup.unlink(missing_ok=True)
    try:
        os.link(npz, backup)
    except OSError:
        import shutil

        shutil.copyfile(npz, backup)
    return backup


def load(path: str | os.PathLike) -> Any:
    """Read a model file written by :func:`save`; errors are :class:`ModelFileError`."""
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
        _discover()
    if kind not in _KINDS:
        raise ModelFileError(f"{path}: unknown model kind {kind!r}; known: {list(_KINDS)}")
    arrays = Arrays()
    if doc.get("arrays"):
        arrays = Arrays(_read_npz(path, doc["arrays"]))
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
    sha = meta.get("sha256")
    if hashlib.sha256(data).hexdigest() != sha and isinstance(sha, str):
        kept = _backup_name(npz, sha)  # a save killed between its two renames
        if kept.exists():
            data = kept.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha:
        raise ModelFileError(f"{path}: array file {meta['file']!r} does not match its checksum "
                             "(corrupt or from another save)")
    try:
        with np.load(_io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:
        raise ModelFileError(f"{path}: array file {meta['file']!r} is corrupt: {exc}") from None
