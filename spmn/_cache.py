"""Where spmn keeps what it writes at run time: a user cache folder, never the package folder.

Numba's ``cache=True`` kernels would otherwise write their cache (``*.nbi``, ``*.nbc``) and
spmn's stamp next to the sources, that is inside site-packages: files pip does not know, which
stay behind when the package is uninstalled and then shadow the next install. So
:func:`configure_numba` (run when this module is imported, which ``spmn/__init__.py`` does
first, before any module imports numba) points ``NUMBA_CACHE_DIR`` at :func:`cache_dir`
``/ "numba"``, unless the user set ``NUMBA_CACHE_DIR`` already (then theirs is used, stamps
included).

:func:`cache_dir`: ``SPMN_CACHE_DIR`` when set; else ``%LOCALAPPDATA%\\spmn\\Cache`` on Windows,
``~/Library/Caches/spmn`` on macOS, ``$XDG_CACHE_HOME/spmn`` or ``~/.cache/spmn`` elsewhere;
when that folder cannot be created or written, a per-user folder under the temporary directory.
Only the standard library (no platformdirs); this module imports nothing of spmn.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

__all__ = ["cache_dir", "configure_numba", "numba_cache_dir"]


def _default_dir() -> Path:
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(Path.home(), "AppData", "Local")
        return Path(base) / "spmn" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "spmn"
    base = os.environ.get("XDG_CACHE_HOME")
    if not base or not os.path.isabs(base):  # the XDG spec ignores relative paths
        base = os.path.join(Path.home(), ".cache")
    return Path(base) / "spmn"


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def cache_dir() -> Path:
    """spmn's user cache folder (created if missing); ``SPMN_CACHE_DIR`` overrides it."""
    override = os.environ.get("SPMN_CACHE_DIR")
    path = Path(override).expanduser().absolute() if override else _default_dir()
    if _writable(path):
        return path
    user = os.environ.get("USER") or os.environ.get("USERNAME") or (
        str(os.getuid()) if hasattr(os, "getuid") else "user")
    fallback = Path(tempfile.gettempdir()) / f"spmn-cache-{user}"
    _writable(fallback)
    return fallback


def numba_cache_dir() -> Path:
    """Where Numba's cache of spmn's kernels lives: ``NUMBA_CACHE_DIR`` when set, else
    :func:`cache_dir` ``/ "numba"``."""
    user = os.environ.get("NUMBA_CACHE_DIR")
    return Path(user) if user else cache_dir() / "numba"


def configure_numba() -> None:
    """Set ``NUMBA_CACHE_DIR`` (unless the user did) so that no cache file is written into
    the package folder. Numba reads it when first imported, so this runs before any spmn
    module imports numba; if numba was imported already, its configuration is reloaded."""
    if not os.environ.get("NUMBA_CACHE_DIR"):
        os.environ["NUMBA_CACHE_DIR"] = str(cache_dir() / "numba")
    config = sys.modules.get("numba.core.config")
    if config is not None and getattr(config, "CACHE_DIR", None) != os.environ["NUMBA_CACHE_DIR"]:
        reload = getattr(config, "reload_config", None)
        if reload is not None:
            reload()


configure_numba()
