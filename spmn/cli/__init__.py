"""The application layer: the ``spmn`` command line (:func:`main`), the demo, ``verify``,
the quick benchmarks, the example circuits and the plots. Nothing below imports it."""
from __future__ import annotations

from .main import build_parser, main

__all__ = ["main", "build_parser"]
