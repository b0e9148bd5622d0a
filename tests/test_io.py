import json
import os

import numpy as np
import pytest
from strategies import random_spmn, random_spn

import spmn
from spmn import Circuit, ModelFileError, Variable
from spmn.circuit.payload import circuit_to_payload
from spmn.cli.examples import export_textiles
from spmn.io import Arrays


def payload(c):
    return json.dumps(circuit_to_payload(c, Arrays()), sort_keys=True)


def snapshot(folder):
    return {p: open(os.path.join(folder, p), "rb").read() for p in sorted(os.listdir(folder))}


@pytest.mark.parametrize("seed", range(5))
def test_round_trip_is_identical(tmp_path, seed):
    rng = np.random.default_rng(seed)
    c = random_spmn(rng, n_before=1, n_mid=1, n_after=1)
    path = spmn.save(c, tmp_path / "m.json")
    c2 = spmn.load(path)
    assert payload(c2) == payload(c) and c2.schema == c.schema
    assert c2.meu() == c.meu() and c2.policy() == c.policy()
    X = c.sample(50, seed=seed)
    np.testing.assert_array_equal(c2.log_likelihood(X), c.log_likelihood(X))


def test_large_arrays_go_to_a_checked_npz(tmp_path):
    v = [Variable.discrete("X", 1000), Variable.continuous("C")]
    p = np.random.default_rng(0).dirichlet(np.ones(1000))
    b = np.linspace(0, 1, 501)
    c = Circuit(spmn.Product([spmn.Categorical("X", p), spmn.Histogram("C", b, np.full(500, 1.0))]), v)
    spmn.save(c, tmp_path / "big.json")
    assert (tmp_path / "big.npz").exists()
    c2 = spmn.load(tmp_path / "big.json")
    assert payload(c2) == payload(c)
    (tmp_path / "big.npz").write_bytes(b"garbage")
    with pytest.raises(ModelFileError, match="does not match its checksum"):
        spmn.load(tmp_path / "big.json")
    os.remove(tmp_path / "big.npz")
    with pytest.raises(ModelFileError, match="missing"):
        spmn.load(tmp_path / "big.json")


def test_corrupt_future_and_invalid_files(tmp_path):
    c = export_textiles()
    path = spmn.save(c, tmp_path / "m.json")
    doc = json.loads(path.read_text())
    before = snapshot(tmp_path)
    cases = {
        "corrupt.json": "{not json",
        "future.json": json.dumps({**doc, "version": 99}),
        "other.json": json.dumps({"format": "something-else"}),
        "truncated.json": path.read_text()[:200],
    }
    bad = json.loads(json.dumps(doc))
    bad["payload"]["nodes"][0]["params"]["p"] = [0.7, 0.7, 0.0]  # unnormalized leaf
    cases["invalid.json"] = json.dumps(bad)
    bad2 = json.loads(json.dumps(doc))
    bad2["payload"]["nodes"][-1]["children"] = [999]
    cases["dangling.json"] = json.dumps(bad2)
    msgs = {"corrupt.json": "corrupt", "future.json": "format version 99, newer",
            "other.json": "not an spmn model file", "truncated.json": "corrupt",
            "invalid.json": "rule 'leaf-parameters' broken", "dangling.json": "ids of earlier nodes"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    before = snapshot(tmp_path)
    for name in cases:
        with pytest.raises(ModelFileError, match=msgs[name]):
            spmn.load(tmp_path / name)
    assert snapshot(tmp_path) == before
    with pytest.raises(ModelFileError, match="does not exist"):
        spmn.load(tmp_path / "nope.json")


def test_failed_save_writes_nothing(tmp_path):
    c = export_textiles()
    c.root.children[0].weights[:] = [0.9, 0.9, 0.9]  # break it after construction
    with pytest.raises(spmn.ValidationError):
        spmn.save(c, tmp_path / "m.json")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ModelFileError, match="does not exist"):
        spmn.save(export_textiles(), tmp_path / "no" / "m.json")
    with pytest.raises(ModelFileError, match="cannot save a dict"):
        spmn.save({}, tmp_path / "m.json")
    assert list(tmp_path.iterdir()) == []


def test_files_are_plain_json(tmp_path):
    rng = np.random.default_rng(1)
    v = [Variable.discrete("A", 2), Variable.continuous("B")]
    c = Circuit(random_spn(rng, v, depth=3), v)
    text = spmn.save(c, tmp_path / "m.json").read_text()
    doc = json.loads(text)
    assert doc["format"] == "spmn" and doc["version"] == 1 and doc["kind"] == "circuit"
    assert b"pickle" not in (tmp_path / "m.json").read_bytes()


# ---------------------------------------------------------------------------- files saved before the layout change
MODELS = os.path.join(os.path.dirname(__file__), "data", "models")


def test_files_saved_before_the_move_still_load():
    """Files written on 2026-12-03 by the flat-layout spmn (same format, version 1) load into
    the new modules and answer as they did then."""
    from spmn.worldmodels import EncodedWorldModel, GaussianWorldModel, WorldModel

    wm = spmn.load(os.path.join(MODELS, "frozenlake_v1.json"))
    assert isinstance(wm, WorldModel)
    np.testing.assert_allclose(wm.solve(0.9).value(np.arange(16)),
                               np.load(os.path.join(MODELS, "frozenlake_v1_values.npy")),
                               rtol=1e-12, atol=1e-12)
    c = spmn.load(os.path.join(MODELS, "textiles_v1.json"))
    assert isinstance(c, spmn.Circuit) and c.meu() == pytest.approx(1721300.0, rel=1e-12)
    g = spmn.load(os.path.join(MODELS, "double_integrator_v1.json"))
    assert isinstance(g, GaussianWorldModel)
    np.testing.assert_allclose(g.solve(0.95).P, np.load(os.path.join(MODELS,
                               "double_integrator_v1_P.npy")), rtol=1e-10)
    e = spmn.load(os.path.join(MODELS, "pixels_v1.json"))
    assert isinstance(e, EncodedWorldModel)
    frames = np.load(os.path.join(MODELS, "pixels_v1_frames.npy"))
    np.testing.assert_allclose(e.q(frames), np.load(os.path.join(MODELS, "pixels_v1_q.npy")),
                               rtol=1e-12, atol=1e-12)


def test_a_kind_registered_by_a_module_of_its_own(tmp_path, monkeypatch):
    """A new kind is one module that calls register_kind; io and load find it unedited."""
    from spmn import io
    from spmn.io import register_kind

    monkeypatch.setattr(io, "_KINDS", dict(io._KINDS))  # the registry is restored afterwards

    class Toy:
        def __init__(self, x):
            self.x = x

    register_kind("toy_for_test", Toy, lambda o, arrays: {"x": arrays.put("x", o.x)},
                  lambda d, arrays: Toy(arrays.get(d["x"])))
    back = spmn.load(spmn.save(Toy(np.arange(300.0)), tmp_path / "toy.json"))
    assert isinstance(back, Toy) and np.array_equal(back.x, np.arange(300.0))


def test_unknown_kind_names_the_known_ones(tmp_path):
    p = tmp_path / "m.json"
    p.write_text(json.dumps({"format": "spmn", "version": 1, "kind": "nope", "payload": {}}))
    with pytest.raises(ModelFileError, match="unknown model kind 'nope'.*world_model"):
        spmn.load(p)
