"""EncodedWorldModel never merges states silently: the codebook size found from the frames,
aliasing found from the dynamics, split by it (or warned), figures in ``diagnostics_``."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import spmn
from spmn.encoders import PCAKMeansEncoder, purity
from spmn.errors import AliasingWarning, DataError
from spmn.worldmodels import EncodedWorldModel

pytest.importorskip("gymnasium")
from spmn.envs import GridRenderer, PixelMDP  # noqa: E402
from spmn.envs.pixels import gridworld  # noqa: E402

GAMMA = 0.95
# 37 reachable states (36 live + the goal): more than the old default codebook's 32 codes
MAP37 = ["SFFFFFF", "FWFFWFF", "FFFWFFF", "FFFFFFF", "FWFFFFF", "FFFFWFG"]
# 144 states: more than the default upper limit (max_codes = 128)
MAP144 = ["S" + "F" * 11] + ["F" * 12] * 10 + ["F" * 11 + "G"]


def _fit(model, d, **kw):
    return model.fit(d["frames"], d["actions"], d["rewards"], d["next_frames"],
                     d["terminated"], **kw)


@pytest.fixture(scope="module")
def grid37():
    mdp = gridworld(MAP37)
    env = PixelMDP(mdp, GridRenderer(MAP37, cell=4), noise=0.1)
    return env, env.sample(12000, seed=0)


def test_gridworld_maps():
    mdp = gridworld(MAP37)
    assert (~mdp.terminal).sum() == 36 and mdp.start[0] == 1.0
    assert mdp.value_iteration(GAMMA, tol=1e-12).values[0] == pytest.approx(GAMMA ** 10)
    slip = gridworld(["SFG"], slip=0.2)
    assert np.allclose(slip.P.sum(2), 1.0)
    assert slip.P[2, 1, 2] == pytest.approx(0.8) and slip.P[2, 1, 1] == pytest.approx(0.2)
    with pytest.raises(DataError, match="slip"):
        gridworld(["SG"], slip=1.0)


def test_default_model_finds_all_37_states_and_the_optimal_policy(grid37):
    """The issue's case: 37 states drawn as noisy frames; the old default (32 codes) merged
    the cells next to the goal. Now: a code per state, ≥ 99% of V*. PCA keeps too little of a
    rare state's difference at this log size, so k-means merges two pairs; the dynamics test
    finds them, splits them and says so (a warning that no aliasing is left); the rare goal
    frames coded like a live neighbour are harmless (the logged flag ends the episode) and are
    warned as end_code_mixing."""
    env, d = grid37
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AliasingWarning)
        m = _fit(EncodedWorldModel(progress=False), d, seed=0)
    said = [str(w.message) for w in caught if issubclass(w.category, AliasingWarning)]
    z = np.concatenate([m.encode(d["frames"]), m.encode(d["next_frames"])])
    assert purity(z, np.concatenate([d["states"], d["next_states"]]), env.frame_classes()) >= 0.99
    dg = m.diagnostics_
    assert dg["encoder_codes"] >= 30 and dg["encoder_max_codes"] == 128
    assert dg["residual_aliasing"] == [] and dg["codes_used"] >= 37
    assert any("no aliasing is left" in w for w in said) == bool(dg["aliased_codes"])
    assert any("end_code_mixing" in w for w in said) == (dg["end_code_mixing"] > 0.5)
    assert sum(dg["frames_per_code"]) == 2 * 12000
    m.solve(GAMMA)
    assert env.policy_value(m.policy, GAMMA, views=8, seed=1) >= 0.99 * env.optimal_value(GAMMA)


def test_aliasing_is_split_by_dynamics_or_warned(grid37, tmp_path):
    """A codebook too small on purpose (12 fixed codes for 37 states): the test names the
    merged codes; refine=True splits them and recovers the policy, refine=False warns and
    leaves them. The splits survive a model file."""
    env, d = grid37
    d = {k: v[:6000] for k, v in d.items()}
    small = lambda: PCAKMeansEncoder(n_codes=12, n_components=32)  # noqa: E731
    with pytest.warns(AliasingWarning, match=r"codes \[.*\] hold frames with different futures"
                      r".*split by dynamics"):
        m = _fit(EncodedWorldModel(small(), progress=False), d, seed=0)
    dg = m.diagnostics_
    assert dg["aliased_codes"] and dg["refine_splits"] >= 1
    assert all(f["p_adjusted"] < 1e-3 for f in dg["aliased_codes"])
    m.solve(GAMMA)
    share = env.policy_value(m.policy, GAMMA, views=8, seed=1) / env.optimal_value(GAMMA)
    assert share >= 0.99 or dg["residual_aliasing"]  # else a warning said why not
    with pytest.warns(AliasingWarning, match=r"refine=False"):
        off = _fit(EncodedWorldModel(small(), refine=False, progress=False), d, seed=0)
    assert off.diagnostics_["refine_splits"] == 0 and off.diagnostics_["aliased_codes"]
    frames = env.render(np.repeat(np.flatnonzero(~env.mdp.terminal), 2), seed=5)
    back = spmn.load(spmn.save(m, tmp_path / "alias.json"))
    assert len(back.splits_) == len(m.splits_)
    assert np.array_equal(back.encode(frames), m.encode(frames))
    assert np.array_equal(back.policy(frames), m.policy(frames))
    assert back.diagnostics_["aliased_codes"] == m.diagnostics_["aliased_codes"]


@pytest.mark.slow
def test_more_states_than_the_default_upper_limit_warns():
    """No silent merge: 144 states, the default codebook's upper limit is 128 codes. The
    default encoder; refine=False only to keep the test short (the same test fires either way,
    refinement is checked on the 37-state grid)."""
    mdp = gridworld(MAP144)
    env = PixelMDP(mdp, GridRenderer(MAP144, cell=4), noise=0.1)
    d = env.sample(4000, seed=0)
    with pytest.warns(AliasingWarning, match="different futures"):
        m = _fit(EncodedWorldModel(refine=False, progress=False), d, seed=0)
    assert m.diagnostics_["aliased_codes"] and m.diagnostics_["encoder_codes"] < 144


def test_frames_of_another_shape_in_one_log_name_the_row(grid37):
    env, d = grid37
    rows = list(d["frames"][:300])
    rows[123] = np.zeros((24, 27), np.float32)
    with pytest.raises(DataError, match="row 123"):
        EncodedWorldModel().fit(rows, d["actions"][:300], d["rewards"][:300],
                                d["next_frames"][:300])


def test_cli_show_prints_the_encoder_diagnostics(grid37, tmp_path, capsys):
    from spmn.cli.main import main

    env, d = grid37
    sub = {k: v[:3000] for k, v in d.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = _fit(EncodedWorldModel(PCAKMeansEncoder(n_codes=12, n_components=32),
                                   refine=False, progress=False), sub, seed=0)
    path = spmn.save(m, tmp_path / "enc.json")
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "encoder diagnostics: " in out and "aliased_codes=" in out
    assert "frames per code: [" in out and f"encoder_codes={m.diagnostics_['encoder_codes']}" in out
