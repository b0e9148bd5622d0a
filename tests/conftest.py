"""Shared fixtures: ``backend`` runs a test on every inference backend."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests/strategies.py

from spmn import kernels  # noqa: E402

REQUIRE_COMPILED = os.environ.get("SPMN_REQUIRE_CYTHON", "") == "1"


@pytest.fixture(params=list(kernels.BACKENDS))
def backend(request) -> str:
    """Each backend in turn; a compiled one that is not built is skipped, or fails when
    ``SPMN_REQUIRE_CYTHON=1`` (CI), so a broken build cannot pass unnoticed."""
    name = request.param
    if name not in kernels.available():
        if REQUIRE_COMPILED:
            pytest.fail(f"backend {name!r} is not built but SPMN_REQUIRE_CYTHON=1")
        pytest.skip(f"backend {name!r} not built")
    return name


def pytest_collection_modifyitems(config, items):
    """Tests on the Numba backend share one xdist worker (``--dist loadgroup``): the first
    of them compiles the kernels (minutes on a cold cache) once, while the other worker runs
    everything else, instead of both workers compiling the same kernels side by side."""
    for item in items:
        spec = getattr(item, "callspec", None)
        if spec is not None and spec.params.get("backend") == "numba":
            item.add_marker(pytest.mark.xdist_group(name="numba-kernels"))
