"""The notebooks in ``notebooks/``: committed with outputs stripped, and each one runs.

Every notebook asserts its own checks (MEU against the exact MEU, |V - V*|, Riccati and Kalman
differences, purity), so executing it is the test. The kernel is the interpreter running pytest
(a kernelspec written to a temporary JUPYTER_PATH with ``sys.executable``), with the ``spmn``
that pytest imported first on its path, and the notebook's folder as working directory.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import spmn

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))
KERNEL = "spmn-test-python"


def _ids(paths):
    return [p.stem for p in paths]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_valid_and_stripped(path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(str(path), as_version=nbformat.NO_CONVERT)
    assert nb.nbformat == 4
    nbformat.validate(nb)
    assert nb.cells and nb.cells[0].cell_type == "markdown", "start with a markdown intro"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {i} of {path.name} has outputs: strip them"
            assert cell.execution_count is None, f"cell {i} of {path.name} has an execution count"
    assert any("assert " in c.source for c in nb.cells if c.cell_type == "code"), \
        "a notebook must assert its checks"


@pytest.fixture
def kernel_name(tmp_path, monkeypatch):
    """A kernelspec for this interpreter, found first through JUPYTER_PATH."""
    pytest.importorskip("ipykernel")
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (spmn tests)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter") + os.pathsep
                       + os.environ.get("JUPYTER_PATH", ""))
    here = str(Path(spmn.__file__).resolve().parent.parent)  # the spmn pytest imported
    monkeypatch.setenv("PYTHONPATH", here + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return KERNEL


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs(path, kernel_name):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(str(path), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name=kernel_name,
                                     resources={"metadata": {"path": str(NB_DIR)}})
    client.execute()  # raises CellExecutionError (with the failing cell) on a failed assert
