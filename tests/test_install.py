"""The install as a user gets it: README's two Quickstart commands run in order (``.ci/run``)
leave a package that imports from any folder with the Cython backend; nothing is written into
the package folder at run time (Numba's cache and spmn's stamp go to a user cache folder, so
``pip uninstall`` leaves nothing behind to shadow the next install); a source checkout without
its built extension says so."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spmn import _cache

REPO = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no PYTHONPATH (which could point at the tree), no
    Numba cache folder of ours; ``extra`` on top."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "NUMBA_CACHE_DIR", "SPMN_CACHE_DIR")}
    env.update(extra)
    return env


def _python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-c", code], check=False, cwd=cwd, env=_env(**env),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out


def _package_dir(tmp_path: Path) -> Path:
    """The folder ``import spmn`` finds from outside the tree."""
    out = _python("import spmn; print(spmn.__file__)", tmp_path,
                  SPMN_CACHE_DIR=str(tmp_path / "cache"))
    return Path(out.stdout.strip()).parent


def _cache_files(folder: Path) -> dict[str, int]:
    """Every Numba cache file and stamp under ``folder``, with its modification time."""
    return {str(p): p.stat().st_mtime_ns for pat in ("*.nbi", "*.nbc", "*.stamp")
            for p in folder.rglob(pat)}


def test_import_from_outside_the_tree_finds_the_package_with_its_backends(tmp_path):
    """README's check, from a folder outside the repository: the package itself (not a stale
    folder without ``__init__.py`` left in site-packages, which Python would take for a
    namespace package), and Cython among the backends when CI requires it."""
    code = ("import json, os, sys, spmn, spmn.kernels as k\n"
            "stale = [p for p in sys.path if p and os.path.isdir(os.path.join(p, 'spmn'))\n"
            "         and not os.path.isfile(os.path.join(p, 'spmn', '__init__.py'))]\n"
            "print(k.available())\n"
            "print(json.dumps({'file': spmn.__file__, 'available': k.available(),\n"
            "                  'stale': stale}))\n")
    out = _python(code, tmp_path, SPMN_CACHE_DIR=str(tmp_path / "cache"))
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["file"] is not None, "spmn resolved to a namespace package (a stale folder)"
    assert Path(got["file"]).name == "__init__.py"
    assert not got["stale"], f"spmn folders without __init__.py shadow the install: {got['stale']}"
    if os.environ.get("SPMN_REQUIRE_CYTHON") == "1":  # CI: the extension must be there
        assert "cython" in got["available"], out.stdout + out.stderr
        assert "BuildWarning" not in out.stderr, out.stderr


def test_numba_writes_nothing_into_the_package_folder(tmp_path):
    """Using the Numba backend and the Numba learners writes their cache and the kernels'
    stamp into the user cache folder; no ``*.nbi``/``*.nbc``/``*.stamp`` appears or changes
    anywhere under the installed package."""
    package = _package_dir(tmp_path)
    cache = tmp_path / "cache"
    before = _cache_files(package)
    code = ("import json, numpy as np, spmn\n"
            "import spmn.kernels.numba, spmn.learn.params as P, spmn.learn.splits as S\n"
            "from spmn.kernels import _numba_down, _numba_entry, _numba_fast, _numba_math,"
            " _numba_mvg, _numba_up\n"
            "from numba.core.registry import CPUDispatcher\n"
            "print(P._bin_of(np.array([0.0, 1.0, 2.0]), 0, 2, 1.5))\n"
            "mods = [_numba_down, _numba_entry, _numba_fast, _numba_math, _numba_mvg, _numba_up,"
            " P, S]\n"
            "paths = sorted({f._cache._cache_path for m in mods for f in vars(m).values()\n"
            "                if isinstance(f, CPUDispatcher) and f._cache is not None\n"
            "                and hasattr(f._cache, '_cache_path')})\n"
            "print(json.dumps(paths))\n")
    out = _python(code, tmp_path, SPMN_CACHE_DIR=str(cache))
    paths = [Path(p) for p in json.loads(out.stdout.strip().splitlines()[-1])]
    assert paths, "found no cached Numba function"
    for p in paths:  # every cached kernel and learner pass: in the user cache folder
        assert p.is_relative_to(cache / "numba"), p
        assert not p.resolve().is_relative_to(package.resolve()), p
    written = _cache_files(cache)
    assert any(f.endswith("spmn_numba_kernels.stamp") for f in written), written
    assert any(f.endswith(".nbi") for f in written), written
    assert _cache_files(package) == before, "files were written into the package folder"


def test_the_cache_folder_honours_spmn_cache_dir_and_numba_cache_dir(tmp_path):
    """``SPMN_CACHE_DIR`` moves the cache folder (Numba's part under ``numba/``), also when
    numba was imported before spmn; a user's own ``NUMBA_CACHE_DIR`` is kept."""
    code = ("import json, os, sys\n"
            "if sys.argv[1:] == ['numba-first']: import numba\n"
            "import spmn, spmn._cache as C\n"
            "from numba.core import config\n"
            "from spmn.learn import params\n"
            "print(json.dumps([str(C.cache_dir()), os.environ['NUMBA_CACHE_DIR'],"
            " config.CACHE_DIR, params._bin_of._cache._cache_path]))\n")
    mine = tmp_path / "mine"
    for argv in ([], ["numba-first"]):
        out = subprocess.run([sys.executable, "-c", code, *argv], check=False, cwd=tmp_path,
                             env=_env(SPMN_CACHE_DIR=str(mine)), capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        folder, env, config, path = json.loads(out.stdout.strip().splitlines()[-1])
        assert Path(folder) == mine
        assert Path(env) == Path(config) == mine / "numba"
        assert Path(path).is_relative_to(mine / "numba")
    theirs = tmp_path / "theirs"
    out = _python(code, tmp_path, SPMN_CACHE_DIR=str(mine), NUMBA_CACHE_DIR=str(theirs))
    folder, env, config, path = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(env) == Path(config) == theirs
    assert Path(path).is_relative_to(theirs)


def test_the_default_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("SPMN_CACHE_DIR", raising=False)
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert _cache.cache_dir() == tmp_path / "xdg" / "spmn"
        monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        assert _cache.cache_dir() == tmp_path / "home" / ".cache" / "spmn"
    monkeypatch.setenv("SPMN_CACHE_DIR", str(tmp_path / "over"))
    assert _cache.cache_dir() == tmp_path / "over"
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    assert _cache.numba_cache_dir() == tmp_path / "over" / "numba"


def test_a_source_checkout_without_the_extension_says_so_once(tmp_path):
    """Python started in a repository root whose extension is not built (as after
    ``pip install .``) imports the source tree: it warns once, with the command that builds
    the extension, and lists no Cython backend."""
    src = tmp_path / "checkout"
    src.mkdir()
    shutil.copy(REPO / "setup.py", src / "setup.py")
    (src / "csrc").mkdir()
    shutil.copytree(REPO / "spmn", src / "spmn",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd"))
    code = ("import spmn, spmn.kernels as k\n"
            "print(spmn.__file__)\n"
            "print(k.available(), k.get().__name__)\n")
    out = _python(code, src, SPMN_CACHE_DIR=str(tmp_path / "cache"))
    first, listed = out.stdout.strip().splitlines()[-2:]
    assert Path(first).parent == src / "spmn"
    assert "cython" not in listed and "spmn.kernels.numba" in listed
    assert out.stderr.count("BuildWarning") == 1, out.stderr
    assert "pip install -e ." in out.stderr and "outside the repository" in out.stderr


@pytest.mark.skipif(shutil.which("grep") is None, reason="the CI script's grep")
def test_the_ci_script_runs_both_readme_commands_in_order():
    """``.ci/run`` runs README's Quickstart lines exactly, install first, tests last."""
    script = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    lines = [ln for ln in readme.splitlines() if ln.startswith("python3 -m venv ")]
    assert len(lines) >= 2 and "pip install . " in lines[0] and "pytest" in lines[1]
    for pattern, line in (("'^python3 -m venv .*pip install \\. '", lines[0]),
                          ("'^python3 -m venv .*pytest'", lines[1])):
        assert pattern in script
        got = subprocess.run(["grep", "-m1", "-E", pattern.strip("'"), str(REPO / "README.md")],
                             check=False, capture_output=True, text=True)
        assert got.stdout.strip() == line
    body = script[script.index("install=$("):]
    assert body.index('bash -c "$install"') < body.index('bash -c "$tests"')
    assert body.rstrip().endswith('bash -c "$tests"')  # its exit status is the script's
