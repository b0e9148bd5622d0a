"""The command line through subprocess: success paths, --json, one-line failures."""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import spmn
from spmn.cli.demo import frozenlake_mdp
from spmn.cli.examples import export_textiles
from spmn.cli.main import build_parser, main, parse_partial_order, read_data
from spmn.cli.quickbench import _row, format_rows

COMMANDS = ["demo", "learn", "learn-decisions", "solve", "verify", "show", "bench"]


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "spmn.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=_env())


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


def test_every_option_has_help():
    """Every argument of every command says what it is (the auto -h aside)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(sub.choices) == sorted(COMMANDS)
    for name, sp in [("spmn", parser), *sub.choices.items()]:
        for action in sp._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help and action.help.strip(), (name, action.dest)
    order = sub.choices["learn-decisions"]._option_string_actions["--partial-order"].help
    assert "utility after the last decision" in order and "';'" in order and "','" in order


def test_demo_small(tmp_path, capsys):
    assert main(["demo", "--transitions", "20000", "--out", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["regions"] == 11 and abs(doc["v_start"] - 0.1804715784) < 0.03
    assert doc["greedy_true_start"] > 0.9 * 0.1804715784
    assert (tmp_path / "frozenlake_model.json").exists() and (tmp_path / "frozenlake_values.png").exists()
    assert doc["plot"].endswith("frozenlake_values.png") and doc["plot_skipped"] is None
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
    assert r.returncode == 0 and "region" in r.stdout and "per state" in r.stdout
    r = run("show", str(model), "--dot", str(tmp_path / "m.dot"), "--png", str(tmp_path / "m.png"))
    assert r.returncode == 0 and "world model" in r.stdout and "s_next" in r.stdout
    assert (tmp_path / "m.dot").exists() and (tmp_path / "m.png").exists()
    r = run("show", str(model), "--json")
    assert json.loads(r.stdout)["explain"]["r"]["state"] == ["s"]


def test_solve_lists_states(tmp_path, logs_csv, capsys):
    """A tabular model's solution per state: region from the tree, value and action from the
    Solution protocol, terminal states at 0; more states than --max-states: a note instead."""
    model = spmn.WorldModel("s", "a", "r", "terminated", progress=False).fit(
        read_data(str(logs_csv / "logs.npz")))
    path = str(spmn.save(model, tmp_path / "fl.json"))
    sol = model.solve(0.95)
    S = np.arange(16)[:, None]
    for extra in ([], ["--horizon", "4", "--gamma", "1"]):
        assert main(["solve", path, "--json", *extra]) == 0
        doc = json.loads(capsys.readouterr().out)
        states = doc["states"]
        assert doc["n_states"] == 16 and doc["state_names"] == ["s"] and len(states) == 16
        assert doc["step"] == (0 if extra else None) and doc["states_note"] is None
        ref = sol if not extra else model.solve(1.0, horizon=4)
        np.testing.assert_allclose([x["value"] for x in states], ref.value(S), atol=1e-12)
        assert [x["action"] for x in states] == list(ref.policy(S))
        assert [x["region"] for x in states] == list(model.tree_.route(S))
        assert [x["state"] for x in states] == [{"s": i} for i in range(16)]
        holes = [x["state"]["s"] for x in states if x["terminal"]]
        assert holes == [5, 7, 11, 12, 15]
        for x in states:
            assert x["value"] == (0.0 if x["terminal"] else doc["values"][x["region"]])
    assert main(["solve", path]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.split("per state")[1].splitlines()[1:]}
    assert rows["5"][2:] == ["0.00000000", "end"]
    assert rows["s"] == ["s", "region", "value", "action"]
    assert float(rows["0"][2]) == pytest.approx(sol.value(0), abs=1e-8)
    assert main(["solve", path, "--max-states", "10", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["states"] is None and "--max-states 16" in doc["states_note"]
    assert len(doc["values"]) == 11 and doc["policy"] is not None
    assert main(["solve", path, "--max-states", "10"]) == 0
    out = capsys.readouterr().out
    assert "per-state table omitted: 16 states" in out and "region" in out
    assert main(["solve", path, "--max-states", "-1"]) == 1
    assert "--max-states must be >= 0" in capsys.readouterr().err


def test_closed_pipe_ends_quietly(tmp_path):
    """``spmn solve m.json | head -1``: no 'Broken pipe' message, the SIGPIPE status."""
    rng = np.random.default_rng(0)
    x, y, a = rng.integers(0, 60, 3000), rng.integers(0, 80, 3000), rng.integers(0, 2, 3000)
    xn = np.clip(x + np.where(a == 1, 1, -1), 0, 59)
    data = {"x": x, "y": y, "a": a, "r": (xn == 59).astype(float), "x_next": xn, "y_next": y}
    model = spmn.WorldModel(["x", "y"], "a", "r", progress=False).fit(data)
    path = spmn.save(model, tmp_path / "grid.json")  # 4,800 states: ~200 kB of text
    p = subprocess.Popen([sys.executable, "-m", "spmn.cli", "solve", str(path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    assert p.stdout.readline().startswith(b"per region")
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141, err
    assert "Broken pipe" not in err and "Traceback" not in err and "error" not in err


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
    r = run("learn-decisions", str(logs_csv / "logs.csv"), "--partial-order", "s;a",
            "--decisions", "a", "--utility", "r", "-o", str(tmp_path / "y.json"))
    one_line_error(r)
    assert "does not list the utility 'r'" in r.stderr and '"s;a;r"' in r.stderr
    assert "utility after the last decision" in r.stderr
    r = run("verify", "lqr:pendulum")
    one_line_error(r)
    with pytest.raises(spmn.DataError):
        parse_partial_order("A;;B")
    assert parse_partial_order("A;B,C;D") == [["A"], ["B", "C"], ["D"]]


def test_verify_and_decisions(tmp_path):
    r = run("verify", "random-mdp:15,3,2", "--transitions", "30000", "--tol", "0.5", "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["passed"] and doc["error_start"] < 0.5
    assert doc["coverage_warning"] is None and doc["thin_greedy_pairs"] == 0
    r = run("verify", "random-mdp:15,3,2", "--transitions", "300", "--tol", "1e-9", "--json")
    assert r.returncode == 2 and "exceeds --tol" in r.stderr
    thin = json.loads(r.stdout)  # 300 transitions: thin data, said in the report and warned
    assert thin["thin_greedy_pairs"] > 0 and "CoverageWarning" in r.stderr
    assert "185 samples" in thin["coverage_warning"]
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
    assert "S=500 A=4" in rows[0]["size"] and all(x["size"] and x["runs"] >= 1 for x in rows)
    for x in rows:  # a note exactly where the measured ratio says the peer won
        assert (x["note"] is not None) == (x["ratio"] is not None and x["ratio"] < 1)


def test_bench_says_when_a_peer_wins():
    rows = [_row("Bellman sweep", "S=500 A=4, 1 sweep", 3, 2e-3, 5e-4, "pymdptoolbox", "why A"),
            _row("LQR", "2 states", 3, 1e-2, 2e-2, "python-control", "why B"),
            _row("LQR", "2 states", 3, 1e-2, None, "python-control missing")]
    assert rows[0]["ratio"] == pytest.approx(0.25) and rows[1]["note"] is None
    text = format_rows(rows)
    assert "S=500 A=4, 1 sweep" in text and "ratio = peer / spmn" in text
    notes = [line for line in text.splitlines() if line.startswith("note:")]
    assert notes == ["note: pymdptoolbox is 4.0x faster on Bellman sweep (S=500 A=4, 1 sweep): "
                     "why A"]


def test_demo_without_matplotlib(tmp_path):
    """No matplotlib: the demo runs, skips the plot and says which extra brings it."""
    script = ("import sys; sys.modules['matplotlib'] = None\n"
              "from spmn.cli.main import main\n"
              "args = ['demo', '--transitions', '5000', '--out', sys.argv[1]]\n"
              "assert main(args + ['--json']) == 0\n"
              "print('=====')\n"
              "sys.exit(main(args))\n")
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                       text=True, env=_env())
    assert r.returncode == 0, r.stderr
    js, text = r.stdout.split("=====\n")
    doc = json.loads(js)
    assert doc["plot"] is None and 'pip install "spmn[plot]"' in doc["plot_skipped"]
    assert 'plot skipped: matplotlib is not installed; pip install "spmn[plot]"' in text
    assert (tmp_path / "frozenlake_model.json").exists()
    assert not (tmp_path / "frozenlake_values.png").exists()


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
