"""The off-policy learner's step semantics (random below learning_starts, every transition stored, a phase
every train_every policy steps at or past learning_starts, P updates in the first and G after), its rules,
and DQN and SAC through the loop: metrics, the replay memory in the checkpoint, an exact resume."""
import json
import shutil

import numpy as np
import pytest
import torch

from conftest import learned_rows
from rlkit import ConfigError, load_config, train
from rlkit.algos.base import check_config, learner_class
from rlkit.envs.make import probe_env, resolve_env_fields
from rlkit.runs.checkpoint import load_checkpoint
from rlkit.runs.metrics import read_metrics
from rlkit.steps import StepCounter


def drive(raw: dict, world_size: int, action_repeat: int = 1, frames: int = 1):
    """The loop's calls for one rank of world_size, on made-up transitions: (counter, learner, random flags)."""
    cfg = load_config(raw)
    info = probe_env(cfg.env)
    resolve_env_fields(cfg, info)
    check_config(cfg, world_size)
    learner = learner_class(cfg.algo.name)(cfg, info, "cpu", np.random.default_rng(0), torch.Generator().manual_seed(0),
                                           world_size=world_size)
    p, n = cfg.parallel, cfg.num_envs
    c = StepCounter(world_size, p.num_threads, p.envs_per_thread, action_repeat, frames)
    rng, obs, randoms = np.random.default_rng(1), np.zeros((n, *info.obs_shape), np.float32), []
    while c.policy_step < cfg.total_steps:
        randoms.append(learner.schedule.random_actions(c))
        learner.act(obs, c)
        # stored-dtype observations: small integers are valid bytes, and valid packed Discrete indices
        obs = rng.normal(size=obs.shape).astype(np.float32) if info.obs_dtype == np.float32 else \
            rng.integers(0, 2, obs.shape).astype(info.obs_dtype)
        c.step_iteration()
        done = rng.random(n) < 0.05
        learner.observe(obs, np.ones(n, np.float32), done, np.zeros(n, bool), obs, c)
        if learner.ready(c):
            count(c, learner.settle())  # overlap: the phase in flight finishes before the next starts
            count(c, learner.train(c))
    count(c, learner.settle())
    return cfg, c, learner, randoms


def count(c, phase):
    if phase is not None:
        c.step_gradient(phase.updates)
        c.step_update()


@pytest.mark.parametrize("W, T, E, repeat, frames", [(1, 1, 1, 1, 1), (2, 1, 3, 1, 1), (3, 2, 2, 2, 1),
                                                     (4, 1, 1, 1, 4), (1, 3, 1, 4, 4)])
def test_gradient_steps_are_W_times_P_plus_G_per_later_phase(W, T, E, repeat, frames):
    per_iteration = W * T * E
    train_every, starts, P, G = 2 * per_iteration, 5 * per_iteration + 1, 3, 2
    raw = {"algo": {"name": "dqn", "per_rank_gradient_steps": G, "per_rank_pretrain_steps": P, "mini_batch_size": 8,
                    "hidden_sizes": [8]},
           "parallel": {"num_threads": T, "envs_per_thread": E}, "train_every": train_every,
           "learning_starts": starts, "total_steps": 22 * per_iteration + 1}
    cfg, c, learner, randoms = drive(raw, W, repeat, frames)
    assert c.policy_step == 23 * per_iteration  # the first iteration boundary at or past total_steps
    n = len([s for s in range(starts, c.policy_step + 1) if s % train_every == 0])
    assert c.update == n and c.gradient_step == W * (P + G * (n - 1))
    assert c.env_step == c.policy_step * repeat * frames
    assert randoms == [i * per_iteration < starts for i in range(23)]  # iterations that start below learning_starts
    assert len(learner.memory) == 23 * T * E  # warm-up transitions stored too (this rank's envs)


@pytest.mark.parametrize("T, E, repeat, frames", [(1, 1, 1, 1), (2, 3, 1, 1), (1, 2, 2, 4)])
def test_overlap_keeps_the_counts_and_the_envs_act_with_the_phase_start_weights(T, E, repeat, frames):
    per_iteration = T * E
    train_every, starts, P, G = 2 * per_iteration, 5 * per_iteration + 1, 3, 2
    raw = {"algo": {"name": "dqn", "per_rank_gradient_steps": G, "per_rank_pretrain_steps": P, "mini_batch_size": 8,
                    "hidden_sizes": [8], "kwargs": {"epsilon_decay_steps": 1, "epsilon_end": 0.0}},
           "parallel": {"num_threads": T, "envs_per_thread": E, "overlap": True}, "train_every": train_every,
           "learning_starts": starts, "total_steps": 22 * per_iteration + 1}
    cfg, c, learner, _ = drive(raw, 1, repeat, frames)
    n = len([s for s in range(starts, c.policy_step + 1) if s % train_every == 0])
    assert c.update == n and c.gradient_step == P + G * (n - 1)
    assert learner.in_flight is None and learner.ahead == 2
    # the envs' copy holds the weights of the last phase's start, not the trained ones
    acting, trained = learner.behaviour.state_dict(), learner.q_net.state_dict()
    assert learner.behaviour is not learner.q_net and any(not torch.equal(acting[k], trained[k]) for k in acting)


def test_sac_counts_with_its_defaults():
    raw = {"env": {"id": "Pendulum-v1"}, "algo": {"name": "sac", "hidden_sizes": [8], "mini_batch_size": 4},
           "parallel": {"envs_per_thread": 3}, "learning_starts": 10, "total_steps": 30}
    cfg, c, _, _ = drive(raw, 1)
    assert c.gradient_step == len(range(12, 31, 3)) and c.policy_step == 30  # train_every: one iteration, 1 step each


@pytest.mark.parametrize("raw, message", [
    ({"algo": {"name": "sac"}, "parallel": {"envs_per_thread": 6}, "train_every": 8},
     "'train_every' (8) must be a multiple of the policy steps of one iteration, ranks x parallel.num_threads x "
     "parallel.envs_per_thread (1 x 1 x 6 = 6); set it to 6 or 12"),
    ({"algo": {"name": "dqn", "use_RND": True}}, "'algo.use_RND' is for the on-policy algorithms (ppo, a2c); dqn"),
    ({"algo": {"name": "sac", "normalize_obs": True}}, "'algo.normalize_obs' is for the on-policy algorithms"),
    ({"algo": {"name": "sac", "mini_batch_size": 64, "buffer_size": 32}}, "'algo.mini_batch_size' (64) must be <="),
    ({"algo": {"name": "dqn", "kwargs": {"n_steps": 3}}}, "unknown key 'algo.kwargs.n_steps': did you mean"),
    ({"algo": {"name": "dqn", "kwargs": {"tau": 0}}}, "'algo.kwargs.tau' must be in (0, 1], got 0"),
    ({"algo": {"name": "sac", "kwargs": {"alpha": -1}}}, "'algo.kwargs.alpha' must be > 0"),
    ({"algo": {"name": "sac", "loss": {"type": "custom_parts:TaggedLoss"}}}, "'algo.loss' replaces a part"),
    ({"algo": {"name": "ppo"}, "parallel": {"overlap": True}}, "'parallel.overlap' is for the off-policy algorithms"),
    ({"algo": {"name": "sac", "buffer_size": 16, "mini_batch_size": 8}, "parallel": {"envs_per_thread": 2, "overlap": True},
      "train_every": 8}, "'algo.buffer_size' (16) is too small for parallel.overlap"),
])
def test_off_policy_rules_in_one_line(raw, message):
    with pytest.raises(ConfigError) as e:
        check_config(load_config(raw))
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_overlap_on_several_ranks_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="'parallel.overlap' runs on one rank only"):
        check_config(load_config({"algo": {"name": "sac"}, "parallel": {"overlap": True}}), 2)


def test_ppo_rules_do_not_apply_and_defaults_are_the_anchors():
    cfg = load_config({"algo": {"name": "sac"}, "parallel": {"envs_per_thread": 6}})  # PPO's batch_size 1024
    assert check_config(cfg) == 6
    a = cfg.algo
    assert (a.gamma, a.mini_batch_size, a.actor_lr, a.critic_lr, a.hidden_sizes, a.activation) == \
        (0.99, 256, 3e-4, 3e-4, [256, 256], "relu")
    cfg = load_config({"algo": {"name": "dqn", "mini_batch_size": 64}})
    assert check_config(cfg) == 4 * 8 and (cfg.algo.mini_batch_size, cfg.algo.max_grad_norm) == (64, 10.0)


@pytest.mark.parametrize("env, space", [("Pendulum-v1", "dqn needs a Discrete action space"),
                                        ("CartPole-v1", "sac needs a 1-D Box action space")])
def test_action_spaces_refused_before_the_run(tmp_path, env, space):
    name = "dqn" if "dqn" in space else "sac"
    with pytest.raises(ConfigError, match=space):
        train({"env": {"id": env}, "algo": {"name": name}, "total_steps": 100}, tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_a_run_too_short_to_train_is_refused_in_its_own_terms(tmp_path):
    with pytest.raises(ConfigError, match=r"'total_steps' \(100\) is smaller than learning_starts \+ train_every "
                                          r"\(100 \+ 8\)"):
        train({"algo": {"name": "dqn"}, "total_steps": 100, "learning_starts": 100, "parallel": {"envs_per_thread": 2}},
              tmp_path / "r", progress=False)


def test_a_replay_memory_larger_than_the_machine_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"'algo.buffer_size' \(\d+\): the replay memory would take about"):
        train({"algo": {"name": "dqn", "buffer_size": 10**13}, "total_steps": 100}, tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


TINY = {"total_steps": 400, "log_every": 100, "checkpoint_every": 200, "eval.every": 200, "eval.episodes": 2,
        "parallel.num_threads": 2, "parallel.envs_per_thread": 2, "learning_starts": 40,
        "algo.hidden_sizes": [16, 16], "algo.mini_batch_size": 16, "algo.buffer_size": 1000}
CASES = {"dqn": ("params/cartpole_dqn.yaml", {"train_every": 8, "algo.per_rank_gradient_steps": 2,
                                              "algo.kwargs.target_update_interval": 40, "algo.kwargs.n_step": 3,
                                              "algo.kwargs.double_q": True, "algo.kwargs.epsilon_decay_steps": 200}),
         "sac": ("params/pendulum_sac.yaml", {"train_every": 4})}


def stop_at(step):
    def stop(counters, metrics):
        if counters["policy_step"] >= step:
            raise KeyboardInterrupt
    return stop


@pytest.mark.parametrize("name, overlap, compile", [("dqn", False, False), ("sac", False, False), ("dqn", True, False),
                                                   ("sac", True, False), ("sac", True, True)])
def test_train_and_resume_exactly_with_the_replay_memory(tmp_path, name, overlap, compile):
    """compile: the gradient step compiled (algo.kwargs.compile), here on overlap's training thread."""
    params, extra = CASES[name]
    overrides = {**TINY, **extra, "parallel.overlap": overlap, "algo.kwargs.compile": compile}
    full = train(params, tmp_path / "full", overrides=overrides, progress=False)
    df = read_metrics(full / "metrics.csv")
    assert {f"{name}/q" if name == "dqn" else "sac/alpha", "steps/replay_ratio", "eval/return"} <= set(df.metric)
    state = load_checkpoint(full / "checkpoint.pt")
    assert state["replay"]["obs"].shape[1] == 4 and state["replay"]["pos"] == 100 % 250
    path = json.loads((full / "status.json").read_text())["update_path"]
    assert path.startswith("compiled: torch.compile") if compile else path == "autograd", path
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):  # after the checkpoint at 200
        train(params, cut, overrides=overrides, progress=False, callbacks=[stop_at(300)])
    train(params, cut, overrides=overrides, resume=True, progress=False)
    assert learned_rows(cut).equals(learned_rows(full))
    if overlap:  # deterministic, but not the serial run: the envs act with the weights of the phase's start
        serial = train(params, tmp_path / "serial", overrides={**overrides, "parallel.overlap": False}, progress=False)
        assert not learned_rows(serial).equals(learned_rows(full))
        assert read_metrics(serial / "metrics.csv").gradient_step.max() == df.gradient_step.max()


def test_phases_are_averaged_into_the_log_rows_and_a_resume_between_rows_writes_the_same_rows(tmp_path):
    """A phase every 8 policy steps, a row every 100: one row of losses per log row, not one per phase. A run
    stopped after a checkpoint taken between two rows (at 252) resumes from it, the phases not yet written
    included, and writes the uninterrupted run's rows."""
    params, extra = CASES["dqn"]
    overrides = {**TINY, **extra, "checkpoint_every": 50}
    full = train(params, tmp_path / "full", overrides=overrides, progress=False)
    df = read_metrics(full / "metrics.csv")
    losses, seconds = df[df.metric == "loss/q"], df[df.metric == "perf/update_seconds"]
    assert list(losses.policy_step) == list(seconds.policy_step) == [100, 200, 300, 400]
    assert df.gradient_step.max() == 2 * ((400 - 40) // 8 + 1)  # every phase counted (40, 48, ..., 400), not a row each
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train(params, cut, overrides=overrides, progress=False, callbacks=[stop_at(280)])
    state = load_checkpoint(cut / "checkpoint.pt")
    assert 250 <= state["counter"]["policy_step"] < 300 and state["phase_means"]["weights"]["loss/q"] > 0
    train(params, cut, overrides=overrides, resume=True, progress=False)
    assert learned_rows(cut).equals(learned_rows(full))


def test_without_the_replay_memory_in_the_checkpoint_a_warning_says_resume_is_not_exact(tmp_path, capsys):
    params, extra = CASES["dqn"]
    run = train(params, tmp_path / "r", progress=False,
                overrides={**TINY, **extra, "algo.kwargs.checkpoint_replay": False})
    assert "resumed run starts from an empty memory" in capsys.readouterr().err
    assert load_checkpoint(run / "checkpoint.pt")["replay"] is None



def test_a_memory_mapped_replay_memory_trains_the_same_rows_and_resumes_exactly(tmp_path):
    """algo.kwargs.replay_memory_map: the rows of the memory in RAM; a checkpoint without the arrays; a run
    stopped well after a checkpoint taken past the ring's wrap resumes exactly (the undo journal gave the
    overwritten slots back); a resume whose files are missing or another run's fails in one line; --force
    makes new ones."""
    params, extra = CASES["dqn"]
    overrides = {**TINY, **extra, "algo.buffer_size": 160}  # 40 slots of 4 envs: full at policy step 160
    mapped = {**overrides, "algo.kwargs.replay_memory_map": True}
    ram = train(params, tmp_path / "ram", overrides=overrides, progress=False)
    full = train(params, tmp_path / "full", overrides=mapped, progress=False)
    assert learned_rows(full).equals(learned_rows(ram))
    state = load_checkpoint(full / "checkpoint.pt")["replay"]
    assert state["mapped"] and state["full"] and "obs" not in state
    assert np.load(full / "replay" / "rank0" / "obs.npy", mmap_mode="r").shape == (40, 4, 4)
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):  # the checkpoint at 200 (pos 10 of a full ring), then 25 more iterations
        train(params, cut, overrides=mapped, progress=False, callbacks=[stop_at(300)])
    assert list((cut / "replay" / "rank0" / "undo" / "0").iterdir())  # slots written at the checkpoint were journaled
    train(params, cut, overrides=mapped, resume=True, progress=False)
    assert learned_rows(cut).equals(learned_rows(full))

    longer = {**mapped, "total_steps": 480}
    shutil.rmtree(cut / "replay")
    with pytest.raises(ValueError, match="replay memory's files are missing") as e:
        train(params, cut, overrides=longer, resume=True, progress=False)
    assert "\n" not in str(e.value) and "--force" in str(e.value)
    shutil.copytree(full / "replay", cut / "replay")
    with pytest.raises(ValueError, match="holds another run's replay memory"):
        train(params, cut, overrides=longer, resume=True, progress=False)
    train(params, cut, overrides=mapped, force=True, progress=False)
    assert learned_rows(cut).equals(learned_rows(full))
    assert json.loads((cut / "replay" / "rank0" / "state.json").read_text())["token"] != state["token"]



def test_each_rank_keeps_its_replay_files_in_the_run_directory(tmp_path):
    cfg = load_config({"algo": {"name": "dqn", "hidden_sizes": [8], "mini_batch_size": 8,
                                "kwargs": {"replay_memory_map": True}},
                       "parallel": {"envs_per_thread": 2}, "train_every": 4, "total_steps": 64})
    info = probe_env(cfg.env)
    resolve_env_fields(cfg, info)
    check_config(cfg, 2)
    make = lambda **kw: learner_class("dqn")(cfg, info, "cpu", np.random.default_rng(0),  # noqa: E731
                                             torch.Generator().manual_seed(0), world_size=2, **kw)
    with pytest.raises(ConfigError, match="'algo.kwargs.replay_memory_map' keeps the replay memory in the run "):
        make()
    for rank in (0, 1):
        make(run_dir=tmp_path, rank=rank).act(np.zeros((2, 4), np.float32), StepCounter(2, 1, 2, 1, 1))
    assert sorted(p.name for p in (tmp_path / "replay").iterdir()) == ["rank0", "rank1"]


def test_dqn_epsilon_in_policy_steps_and_the_double_q_target():
    from torch import nn

    from rlkit.algos.dqn import td_loss
    _, _, learner, _ = drive({"algo": {"name": "dqn", "hidden_sizes": [8], "mini_batch_size": 4,
                                       "kwargs": {"epsilon_decay_steps": 100, "epsilon_end": 0.1}},
                              "parallel": {"envs_per_thread": 1}, "total_steps": 8}, 1)
    assert [learner.epsilon(s) for s in (0, 50, 100, 10**6)] == pytest.approx([1.0, 0.55, 0.1, 0.1])
    online, target = nn.Linear(1, 2, bias=False), nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        online.weight[:] = torch.tensor([[1.0], [2.0]])  # Q(s) = (s, 2s): argmax 1
        target.weight[:] = torch.tensor([[5.0], [3.0]])  # Q_target(s) = (5s, 3s): max 5s
    batch = {"obs": torch.ones(1, 1), "actions": torch.tensor([0]), "rewards": torch.tensor([1.0]),
             "next_obs": torch.ones(1, 1), "discounts": torch.tensor([0.5])}
    for double_q, y in ((False, 1 + 0.5 * 5), (True, 1 + 0.5 * 3)):  # target's max, or the target's value of argmax Q
        loss, _ = td_loss(online, target, batch, double_q)
        assert float(loss.detach()) == pytest.approx(abs(y - 1.0) - 0.5)  # Huber beyond 1: |d| - 1/2


@pytest.mark.parametrize("name, obs, action", [
    ("sac", "image", "box"), ("dqn", "image", "discrete"), ("sac", "dict", "box")])
def test_images_and_dicts_go_through_the_same_encoders(name, obs, action):
    import gymnasium as gym

    import toy_envs  # noqa: F401  (registers ToySpace-v0)
    obs_space = {"image": gym.spaces.Box(0, 255, (12, 12, 3), np.uint8),
                 "dict": gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (7, 7, 3), np.uint8),
                                          "direction": gym.spaces.Discrete(4)})}[obs]
    action_space = gym.spaces.Box(-2, 2, (2,), np.float32) if action == "box" else gym.spaces.Discrete(3)
    raw = {"env": {"id": "ToySpace-v0", "kwargs": {"observation_space": obs_space, "action_space": action_space,
                                                   "length": 7}},
           "algo": {"name": name, "mini_batch_size": 8, "buffer_size": 64, "cnn_features": 16,
                    "hidden_sizes": [16]}, "parallel": {"envs_per_thread": 2}, "total_steps": 40, "learning_starts": 10}
    cfg, c, learner, _ = drive(raw, 1)
    assert c.gradient_step == len(range(10, 41, 2 if name == "sac" else 8)) and learner.memory.obs.dtype == np.uint8
    nets = learner.modules()
    assert any(isinstance(m, torch.nn.Conv2d) for net in nets for m in net.modules())  # algo.network auto: a CNN
    assert all(torch.isfinite(p).all() for net in nets for p in net.parameters())


def test_sac_actor_log_probability_is_the_tanh_gaussian_one_and_acting_draws_the_same_action():
    """SquashedGaussianActor.sample: log pi of tanh(u) equals torch.distributions' tanh-transformed Normal, and
    with_logp=False (acting) returns the same action from the same stream, without a log-probability."""
    import gymnasium as gym

    from rlkit.algos.sac import SquashedGaussianActor
    from rlkit.config import AlgoConfig

    torch.manual_seed(0)
    actor = SquashedGaussianActor(gym.spaces.Box(-1, 1, (5,), np.float32), 3, AlgoConfig(hidden_sizes=[16, 16]))
    obs = torch.randn(64, 5)
    with torch.no_grad():
        actions, logp = actor.sample(obs, torch.Generator().manual_seed(1))
        acted, none = actor.sample(obs, torch.Generator().manual_seed(1), with_logp=False)
        mean, log_std = actor(obs)
    assert none is None and torch.equal(acted, actions)
    squashed = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), [torch.distributions.TanhTransform(cache_size=1)])
    # the reference's tanh inverse loses precision near +-1: compare where the actions are clear of it
    clear = actions.abs().max(-1).values < 0.99
    assert clear.sum() > 32
    assert torch.allclose(logp[clear], squashed.log_prob(actions).sum(-1)[clear], atol=1e-4)
