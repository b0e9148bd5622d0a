"""Crash-safe saves: a process SIGKILLed at the worst points of a save over an existing model
file leaves a file that loads: the old model, intact (or, once the JSON is in, the new one)."""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import spmn
from spmn.reference import TabularMDP
from spmn.worldmodels.tabular.model import WorldModel

#: The child saves the model of ``new`` over ``path`` and stops (sleeps, to be killed) at
#: the step named by ``where``: after creating its first temporary file, or right after the
#: first rename (the npz is new, the JSON still the old one: the dangerous moment).
CHILD = textwrap.dedent("""
    import os, sys, tempfile, time
    import spmn
    new, path, where = sys.argv[1:4]
    model = spmn.load(new)
    real_replace, real_mkstemp = os.replace, tempfile.mkstemp

    def replace(a, b):
        real_replace(a, b)
        if where == "renamed":
            print("ready", flush=True)
            time.sleep(120)

    def mkstemp(*args, **kwargs):
        out = real_mkstemp(*args, **kwargs)
        if where == "writing":
            os.write(out[0], b"half a file")
            print("ready", flush=True)
            time.sleep(120)
        return out

    os.replace, tempfile.mkstemp = replace, mkstemp
    spmn.save(model, path)
    print("saved", flush=True)
""")


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    mdp = TabularMDP.from_gymnasium("FrozenLake-v1", is_slippery=True)
    d = tmp_path_factory.mktemp("models")
    out = []
    for seed in (0, 1):
        m = WorldModel("s", "a", "r", "terminated", progress=False).fit(
            mdp.sample_transitions(3000, seed=seed))
        spmn.save(m, d / f"m{seed}.json")
        out.append(m)
    assert (d / "m0.npz").exists()
    return d, out


def _same(a: WorldModel, b: WorldModel) -> bool:
    return all(np.array_equal(a.tables_[k], b.tables_[k]) for k in a.tables_)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::spmn.errors.CoverageWarning")
@pytest.mark.parametrize("where", ["writing", "renamed"])
def test_a_save_killed_midway_leaves_the_old_model(two_models, tmp_path, where):
    d, (old, new) = two_models
    assert not _same(old, new)
    path = tmp_path / "model.json"
    spmn.save(old, path)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(d / "m1.json"), str(path), where],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    back = spmn.load(path)
    assert _same(back, old)
    np.testing.assert_array_equal(back.solve(0.9).values, old.solve(0.9).values)
    spmn.save(new, path)  # the next save goes through and cleans up after the killed one
    assert _same(spmn.load(path), new)
    assert not list(tmp_path.glob("*.old"))


def test_a_finished_save_leaves_no_backup(two_models, tmp_path):
    _, (old, new) = two_models
    path = tmp_path / "model.json"
    spmn.save(old, path)
    spmn.save(new, path)
    assert _same(spmn.load(path), new)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.npz"]
