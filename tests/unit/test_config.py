import tomllib

import pytest
import yaml

from conftest import ROOT
from rlkit import Config, ConfigError, load_config
from rlkit.algos.base import check_config
from rlkit.algos.onpolicy import check_train_every
from rlkit.envs.make import inspect_env, make_env, resolve_env_fields


def test_seed_defaults_and_names():
    a = Config().algo
    assert (a.actor_lr, a.critic_lr, a.k_epochs, a.policy_clip) == (0.001, 0.0025, 23, 0.2)
    assert (a.GAE_lambda, a.gamma, a.batch_size, a.mini_batch_size, a.use_RND, a.beta) == \
        (0.95, 0.995, 1024, 512, False, None)


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("seed: 3\nalgo: {batch_size: 512}\nenv: {id: Acrobot-v1}\n")
    cfg = load_config(path, ["algo.k_epochs=4", "parallel.num_threads=2"])
    assert (cfg.seed, cfg.algo.batch_size, cfg.algo.k_epochs, cfg.parallel.num_threads) == (3, 512, 4, 2)
    assert cfg.env.id == "Acrobot-v1"
    cfg = load_config({"algo": {"gamma": 0.9}}, {"algo.actor_lr": 1e-4, "total_steps": 1e6})
    assert cfg.algo.gamma == 0.9 and cfg.algo.actor_lr == 1e-4 and cfg.total_steps == 1_000_000
    # the resolved config round-trips through YAML
    assert load_config(yaml.safe_load(cfg.to_yaml())) == cfg


@pytest.mark.parametrize("raw, overrides, expected", [
    ({"algo": {"bach_size": 4}}, None, "unknown key 'algo.bach_size': did you mean 'algo.batch_size'?"),
    ({"totl_steps": 4}, None, "did you mean 'total_steps'"),
    ({"algo": {"batch_size": "big"}}, None, "'algo.batch_size' must be int, got 'big'"),
    ({"algo": {"use_RND": "yes"}}, None, "'algo.use_RND' must be bool"),
    ({"algo": {"gamma": 1.5}}, None, "'algo.gamma' must be in [0, 1)"),
    ({"total_steps": -1}, None, "'total_steps' must be > 0"),
    ({"exploration_steps": 1000}, None, "'exploration_steps' (1000) needs an intrinsic reward"),
    ({"parallel": {"num_threads": 0}}, None, "'parallel.num_threads' must be >= 1, got 0"),
    ({"parallel": {"backend": "mpi"}}, None, "'parallel.backend' must be thread or process"),
    ({"parallel": {"one_core": "sometimes"}}, None, "'parallel.one_core' must be true, false or auto, got 'sometimes'"),
    ({}, ["algo.batch_size"], "must look like section.key=value"),
    ({"algo": 3}, None, "'algo' must be a mapping"),
])
def test_bad_input_names_the_key(raw, overrides, expected):
    with pytest.raises(ConfigError) as e:
        load_config(raw, overrides)
    assert expected in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("raw, expected", [
    ({"algo": {"batch_size": 64, "mini_batch_size": 128}}, "'algo.mini_batch_size' (128) must be <="),
    ({"algo": {"batch_size": 100, "mini_batch_size": 10}, "parallel": {"num_threads": 3, "envs_per_thread": 2}},
     "'algo.batch_size' (100) must be divisible by parallel.num_threads x parallel.envs_per_thread (3 x 2 = 6)"),
])
def test_ppo_rollout_rules_are_the_on_policy_learners(raw, expected):
    """Generic loading accepts them (another algorithm may not have rollouts); the algorithm's check refuses."""
    cfg = load_config(raw)
    with pytest.raises(ConfigError) as e:
        check_config(cfg)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_train_every_must_match_batch_size():
    cfg = load_config({"train_every": 1000, "algo": {"batch_size": 512}})
    with pytest.raises(ConfigError, match=r"'train_every' \(1000\) must equal algo.batch_size x ranks \(512 x 2"):
        check_train_every(cfg, world_size=2)
    assert check_train_every(load_config({"algo": {"batch_size": 512}}), world_size=2) == 1024


def test_files_and_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("algo: {batch_size: 4\n")
    with pytest.raises(ConfigError, match="malformed YAML at line"):
        load_config(bad)


def test_inferred_from_env_and_checked_where_given():
    cfg = load_config({"env": {"id": "Pendulum-v1"}})
    env = make_env(cfg.env)
    resolve_env_fields(cfg, inspect_env(env))
    a = cfg.algo
    assert (a.has_continuous, a.action_dim, a.observ_dim, a.action_scaling) == (True, 1, 3, 2.0)
    assert cfg.env.max_episode_steps == 200
    cfg = load_config({"env": {"id": "CartPole-v1"}, "algo": {"action_dim": 3}})
    with pytest.raises(ConfigError, match=r"'algo.action_dim' is 3 but CartPole-v1 has 2"):
        resolve_env_fields(cfg, inspect_env(make_env(cfg.env)))


def test_unknown_env_id():
    with pytest.raises(ConfigError, match="unknown environment 'CartPol-v1'"):
        make_env(load_config({"env": {"id": "CartPol-v1"}}).env)


def test_module_env_id_imports_the_module_that_registers_it():
    env = make_env(load_config({"env": {"id": "rlkit.envs.latency:LatencyCartPole-v1"}}).env)
    assert type(env.unwrapped).__name__ == "LatencyCartPole" and env.spec.max_episode_steps == 500
    env.close()
    with pytest.raises(ConfigError, match="cannot import the module for 'nosuchmodule:Foo-v0'"):
        make_env(load_config({"env": {"id": "nosuchmodule:Foo-v0"}}).env)
    with pytest.raises(ConfigError, match="unknown environment 'rlkit.envs.latency:Nope-v1'"):
        make_env(load_config({"env": {"id": "rlkit.envs.latency:Nope-v1"}}).env)


def test_params_files_are_valid():
    from rlkit.experiments.sweep import expand, load_variant

    for path in sorted((ROOT / "params").glob("*.yaml")):
        for experiment in expand(path):  # a file with a sweep: section, every variant of it
            load_variant(path, experiment.overrides)


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert project["requires-python"] == ">=" + python.split("=")[1]
    pip = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    torch_pin = next(d for d in project["dependencies"] if d.startswith("torch"))
    assert torch_pin == "torch==2.13.0" and torch_pin in pip
    assert "-e .[dev]" in pip  # the package itself, so every other dependency comes from pyproject.toml
