"""rlkit export: one file, observation -> deterministic action, equal to policy.act on 1,000 observations of the
env, read back without rlkit (torch.jit.load; onnxruntime for ONNX); PPO's policies, SAC's and DQN's."""
import json

import numpy as np
import pytest
import torch

import rlkit
from rlkit.cli import main
from rlkit.trained.export import export, sample_observations
from trained_runs import trained_runs  # noqa: F401 (the fixture)


@pytest.mark.parametrize("case", ["vector", "image", "dict", "multidiscrete", "sac", "dqn"])
def test_torchscript_acts_as_the_policy_on_1000_observations(trained_runs, case, tmp_path):
    policy = rlkit.load(trained_runs[case])
    path = export(policy, tmp_path / "policy.ts", "torchscript")
    obs = sample_observations(policy, 1000, seed=3)
    files = {"rlkit.json": ""}
    module = torch.jit.load(str(path), _extra_files=files)  # plain torch: no rlkit class is needed to run it
    with torch.no_grad():
        actions = module(torch.as_tensor(obs)).numpy()
    # the normaliser (vector case), the network, the greedy action and the map onto the env's space, folded in
    np.testing.assert_array_equal(actions, policy.act(obs))
    meta = json.loads(files["rlkit.json"])
    assert meta["obs_shape"] == list(obs.shape[1:]) and ("packed" in meta) == (case == "dict")


@pytest.mark.parametrize("case", ["vector", "image", "sac", "dqn"])
def test_onnx_acts_as_the_policy_on_1000_observations(trained_runs, case, tmp_path):
    import onnxruntime as ort  # the onnx extra (in dev)
    policy = rlkit.load(trained_runs[case])
    path = export(policy, tmp_path / "policy.onnx", "onnx")
    obs = sample_observations(policy, 1000, seed=4)
    session = ort.InferenceSession(str(path))
    (actions,) = session.run(None, {"obs": obs})
    np.testing.assert_allclose(actions, policy.act(obs), rtol=1e-5, atol=1e-5)


def test_cli_export_never_overwrites_and_says_the_size(trained_runs, capsys):
    run = trained_runs["image"]
    for n in range(2):
        assert main(["export", str(run)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in out] == [f"torchscript policy written: {run}/exported/policy_512.ts",
                                                    f"torchscript policy written: {run}/exported/policy_512_2.ts"]
    assert out[0].endswith(" MB)")


def test_onnx_without_the_extra_is_one_line(trained_runs, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    assert main(["export", str(trained_runs["vector"]), "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "rlkit export: error: --format onnx needs the onnx extra: pip install -e '.[onnx]'"
