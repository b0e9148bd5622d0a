"""The command line through subprocess: success paths, --json, one-line failures."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import spmn
from spmn.cli.demo import frozenlake_mdp
from spmn.cli.examples import export_textiles
from spmn.cli.main import main, parse_partial_order

COMMANDS = ["demo", "learn", "learn-decisions", "solve", "verify", "show", "bench"]


def run(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-m", "spmn.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def logs_csv(tmp_path_factory):
    d = tmp_path_factory.mktemp("logs")
    logs = frozenlake_mdp().sample_transitions(20_000, seed=3)
    cols = ["s", "a", "r", "s_next", "terminated"]
    with open(d / "logs.csv", "w") as fh:
        fh.write(",".join(cols) + "\r\n")
        for row in zip(*(logs[c] for c in cols)):
            fh.write(",".join(str(int(x)) if c != "r" else str(float(x)) for c, x in zip(cols, row)) + "\r\n")
    np.savez(d / "logs.npz", **{c: logs[c] for c in cols})
    return d


def one_line_error(r):
    assert r.returncode != 0
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("spmn ")
    assert "Traceback" not in r.stderr


def test_help_for_every_command():
    r = run("--help")
    assert r.returncode == 0 and all(c in r.stdout for c in COMMANDS)
    for c in COMMANDS:
        r = run(c, "--help")
        assert r.returncode == 0 and f"usage: spmn {c}" in r.stdout


def test_demo_small(tmp_path, capsys):
    assert main(["demo", "--transitions", "20000", "--out", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["regions"] == 11 and abs(doc["v_start"] - 0.1804715784) < 0.03
    assert doc["greedy_true_start"] > 0.9 * 0.1804715784
    assert (tmp_path / "frozenlake_model.json").exists() and (tmp_path / "frozenlake_values.png").exists()
    assert main(["demo", "--transitions", "20000", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "s_next           <- s, a" in out and "V(start)" in out and "←" in out


def test_learn_solve_show_round_trip(tmp_path, logs_csv):
    model = tmp_path / "fl.json"
    r = run("learn", str(logs_csv / "logs.csv"), "--states", "s", "--actions", "a", "--reward", "r",
            "--terminated", "terminated", "-o", str(model), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["regions"] == 11
    r = run("learn", str(logs_csv / "logs.npz"), "--states", "s", "--actions", "a", "--reward", "r",
            "--terminated", "terminated", "-o", str(tmp_path / "fl2.json"))
    assert r.returncode == 0 and "11 regions" in r.stdout
    r = run("solve", str(model), "--gamma", "0.95", "--json")
    doc = json.loads(r.stdout)
    assert len(doc["values"]) == 11 and doc["residual"] < 1e-8
    r = run("solve", str(model), "--gamma", "0.95", "--method", "vi")
    assert r.returncode == 0 and "region" in r.stdout
    r = run("show", str(model), "--dot", str(tmp_path / "m.dot"), "--png", str(tmp_path / "m.png"))
    assert r.returncode == 0 and "world model" in r.stdout and "s_next" in r.stdout
    assert (tmp_path / "m.dot").exists() and (tmp_path / "m.png").exists()
    r = run("show", str(model), "--json")
    assert json.loads(r.stdout)["explain"]["r"]["state"] == ["s"]


def test_failure_paths(tmp_path, logs_csv):
    one_line_error(run("show", str(tmp_path / "missing.json")))
    one_line_error(run("learn", str(tmp_path / "missing.csv"), "--states", "s", "--actions", "a",
                       "--reward", "r", "-o", str(tmp_path / "x.json")))
    r = run("learn", str(logs_csv / "logs.csv"), "--states", "pos", "--actions", "a",
            "--reward", "r", "-o", str(tmp_path / "x.json"))
    one_line_error(r)
    assert "'pos'" in r.stderr
    assert not (tmp_path / "x.json").exists()
    r = run("learn-decisions", str(logs_csv / "logs.csv"), "--partial-order", "s;;a",
            "--decisions", "a", "--utility", "r", "-o", str(tmp_path / "y.json"))
    one_line_error(r)
    assert "malformed partial order" in r.stderr
    r = run("verify", "lqr:pendulum")
    one_line_error(r)
    with pytest.raises(spmn.DataError):
        parse_partial_order("A;;B")
    assert parse_partial_order("A;B,C;D") == [["A"], ["B", "C"], ["D"]]


def test_verify_and_decisions(tmp_path):
    r = run("verify", "random-mdp:15,3,2", "--transitions", "30000", "--tol", "0.5", "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["passed"] and doc["error_start"] < 0.5
    r = run("verify", "random-mdp:15,3,2", "--transitions", "300", "--tol", "1e-9")
    assert r.returncode == 2 and "exceeds --tol" in r.stderr
    r = run("verify", "lqr:double-integrator", "--transitions", "20000", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["relative_error"] < 0.01
    path = spmn.save(export_textiles(), tmp_path / "et.json")
    r = run("solve", str(path), "--json")
    assert json.loads(r.stdout)["meu"] == pytest.approx(1721300.0, rel=1e-12)


def test_bench_quick():
    r = run("bench", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["rows"]
    assert any("Bellman" in x["name"] for x in rows) and all(x["ours"] > 0 for x in rows)


MODELS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "models")


@pytest.mark.parametrize("name, kind", [("double_integrator_v1.json", "gaussian world model"),
                                        ("pixels_v1.json", "encoded world model"),
                                        ("textiles_v1.json", "circuit")])
def test_solve_and_show_take_every_kind(name, kind, capsys):
    """The CLI knows no kind by name: each is loaded through io's registry and solved or shown
    through the calls every kind has."""
    path = os.path.join(MODELS, name)
    assert main(["show", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == kind
    assert main(["solve", path, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert ("meu" in doc) == (kind == "circuit")
    if kind != "circuit":
        assert np.all(np.isfinite(np.asarray(doc["values"], dtype=float))) and doc["residual"] < 1e-6
