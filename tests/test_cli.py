import json
import subprocess
import sys

import spmn
from spmn.cli import main
from spmn.examples import export_textiles


def run(*args):
    return subprocess.run([sys.executable, "-m", "spmn.cli", *args], capture_output=True, text=True)


def test_help_for_every_command():
    for args in ([], ["demo"], ["show"]):
        r = run(*args, "--help")
        assert r.returncode == 0 and "usage: spmn" in r.stdout


def test_demo_prints_meu_policy_and_summary(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "MEU = 1,721,300.0" in out and "Export_Decision = After_6_mos" in out
    assert "nodes" in out and "max" in out
    assert main(["demo", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["meu"] == 1721300.0 and doc["policy"] == {"Export_Decision": "After_6_mos"}


def test_show_and_failure_paths(tmp_path):
    path = spmn.save(export_textiles(), tmp_path / "m.json")
    r = run("show", str(path), "--dot", str(tmp_path / "m.dot"))
    assert r.returncode == 0 and "31 nodes" in r.stdout
    assert (tmp_path / "m.dot").read_text().startswith("digraph")
    r = run("show", str(path), "--json")
    assert json.loads(r.stdout)["summary"]["n_nodes"] == 31
    r = run("show", str(tmp_path / "missing.json"))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr
