"""The learner contract: the loop drives any Learner, an on-policy one (PPO, A2C) or one that is not (a stand-in
for an off-policy learner, below); algorithms' own keys; parts named by import path in the params file."""
import numpy as np
import pytest

from conftest import learned_rows
from rlkit import ConfigError, load_config, train
from rlkit.algos.base import Phase, check_config
from rlkit.runs.checkpoint import load_checkpoint
from rlkit.runs.metrics import read_metrics


class ReplayStandIn:
    """What an off-policy learner does with the loop, no more: random actions, every transition stored (warm-up
    ones too), a phase of G gradient steps (P the first) every train_every policy steps at or past
    learning_starts, checkpoints at any iteration. It trains nothing: the counts are the test."""

    @classmethod
    def check_config(cls, cfg, world_size):
        return cfg.train_every

    @classmethod
    def check_parts(cls, cfg, env_info):
        pass

    def __init__(self, cfg, env_info, device, rng, generator, world_size=1, parts=None, run_dir=None, rank=0):
        self.cfg, self.rng, self.stored, self.phases = cfg, rng, 0, 0
        self.n = cfg.num_envs

    def act(self, obs, counter):
        return self.rng.integers(0, 2, self.n)

    def observe(self, next_obs, rewards, terminated, truncated, final_obs, counter):
        self.stored += len(rewards)

    def ready(self, counter):
        return counter.policy_step >= self.cfg.learning_starts and counter.policy_step % self.cfg.train_every == 0

    def train(self, counter):
        a = self.cfg.algo
        updates = a.per_rank_pretrain_steps if self.phases == 0 and a.per_rank_pretrain_steps else \
            a.per_rank_gradient_steps
        self.phases += 1
        return Phase(updates, {"loss/standin": 0.0, "standin/stored": float(self.stored)})

    def resumable(self):
        return True

    def policy(self, obs, generator=None):
        return np.zeros(len(obs), np.int64)

    def modules(self):
        return []

    def replicate(self, world_size):
        pass

    def state_dict(self):
        return {"standin": {"stored": self.stored, "phases": self.phases}}

    def local_state_dict(self):
        return {}

    def load_state_dict(self, state):
        self.stored, self.phases = state["standin"]["stored"], state["standin"]["phases"]

    @staticmethod
    def replicated(state):
        return {"standin": state["standin"]}


def test_a_learner_without_rollouts_runs_on_the_loop_unchanged(tmp_path):
    """6 envs with PPO's default batch_size 1024 (not a multiple of 6): not refused, as nothing here is PPO's.
    gradient_step = W (P + G (n - 1)), n the multiples of train_every from learning_starts to the end."""
    cfg = {"algo": {"name": f"{__name__}:ReplayStandIn", "per_rank_gradient_steps": 3, "per_rank_pretrain_steps": 7},
           "parallel": {"num_threads": 2, "envs_per_thread": 3}, "train_every": 12, "learning_starts": 30,
           "total_steps": 100, "eval": {"every": 0}, "log_every": 24, "checkpoint_every": 48}
    run = train(cfg, tmp_path / "r", progress=False)
    df = read_metrics(run / "metrics.csv")
    stored = df[df.metric == "standin/stored"]
    assert stored.policy_step.tolist() == [36, 48, 60, 72, 84, 96]  # iterations add 6; the first at or past 30
    assert stored.value.tolist() == [36.0, 48.0, 60.0, 72.0, 84.0, 96.0]  # the warm-up's transitions are stored
    assert df.policy_step.max() == 102 and df.gradient_step.max() == 1 * (7 + 3 * (6 - 1))
    assert load_checkpoint(run / "checkpoint.pt")["standin"] == {"stored": 102, "phases": 6}


def test_the_algorithms_own_keys(tmp_path):
    cfg = load_config({"algo": {"name": "a2c", "gamma": 0.95}})
    check_config(cfg)
    a = cfg.algo  # A2C's defaults where the file says nothing (Stable-Baselines3's), the file's value where it does
    assert (a.gamma, a.GAE_lambda, a.actor_lr, a.critic_lr, a.norm_adv, a.max_grad_norm) == (0.95, 1.0, 7e-4, 7e-4,
                                                                                            False, 0.5)
    assert load_config({"algo": {"name": "ppo"}}).algo.gamma == 0.995  # PPO's keep the seed's defaults
    unresolved = load_config({"algo": {"name": "a2c"}})  # a Config passed on before its algorithm resolved it
    again = load_config(unresolved, {"algo.GAE_lambda": 0.9})
    check_config(again)
    assert (again.algo.gamma, again.algo.GAE_lambda) == (0.99, 0.9)
    assert load_config(again).algo.given is None  # resolved: its values are the run's, defaults apply no more
    for raw, message in [
        ({"name": "a2c", "kwargs": {"n_step": 4}}, "unknown key 'algo.kwargs.n_step': did you mean 'algo.kwargs.n_steps'?"),
        ({"name": "a2c", "kwargs": {"n_steps": "many"}}, "'algo.kwargs.n_steps' must be int, got 'many'"),
        ({"name": "a2c", "kwargs": {"n_steps": 0}}, "'algo.kwargs.n_steps' must be >= 1, got 0"),
        ({"kwargs": {"n_steps": 5}}, "'algo.kwargs' {'n_steps': 5}: ppo has no keys of its own"),
        ({"name": "trpo"}, "'algo.name' is 'trpo'; known algorithms: ppo, a2c"),
        ({"name": "no_such_module:Algo"}, "'algo.name': cannot import no_such_module:Algo"),
        ({"name": "custom_parts:WideMLP"}, "'algo.name' custom_parts:WideMLP is neither an on-policy Agent"),
    ]:
        with pytest.raises(ConfigError) as e:
            check_config(load_config({"algo": raw}))
        assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
    # the rollout rule of A2C is its own: n_steps x T x E, whatever algo.batch_size says
    with pytest.raises(ConfigError, match=r"'train_every' \(100\) must equal the rollout x ranks \(40 x 1 = 40\)"):
        check_config(load_config({"algo": {"name": "a2c"}, "train_every": 100}))
    with pytest.raises(ConfigError, match="'algo.kwargs.n_steps'"):  # a run is refused before its directory exists
        train({"algo": {"name": "a2c", "kwargs": {"n_steps": -1}}}, tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()


A2C_TINY = {"total_steps": 480, "log_every": 120, "checkpoint_every": 240, "eval.every": 240, "eval.episodes": 2,
            "parallel.num_threads": 2, "parallel.envs_per_thread": 2, "algo.name": "a2c", "algo.kwargs.n_steps": 6}


def test_a2c_trains_one_step_per_rollout_and_resumes_exactly(tmp_path):
    full = train("params/cartpole.yaml", tmp_path / "full", overrides=A2C_TINY, progress=False)
    df = read_metrics(full / "metrics.csv")
    names = set(df.metric)
    assert {"a2c/grad_norm", "a2c/explained_variance", "loss/policy", "loss/value", "loss/entropy"} <= names
    assert not any(n.startswith("ppo/") for n in names)
    phases = df[df.metric == "a2c/grad_norm"]
    assert phases.policy_step.tolist() == list(range(24, 481, 24))  # a rollout: 6 steps x 4 envs
    assert phases.gradient_step.tolist() == list(range(1, 21))  # one gradient step each
    state = load_checkpoint(full / "checkpoint.pt")["agent"]["optimizer"]
    assert state["state"] and "square_avg" in state["state"][0]  # torch's RMSprop trained it

    def stop(counters, metrics):  # killed after the checkpoint at 240
        if counters["policy_step"] >= 400:
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train("params/cartpole.yaml", cut, overrides=A2C_TINY, progress=False, callbacks=[stop])
    train("params/cartpole.yaml", cut, overrides=A2C_TINY, resume=True, progress=False)
    assert learned_rows(cut).equals(learned_rows(full))  # the RMSprop state and the rollout resume exactly


def test_a2c_with_rnd(tmp_path):
    run = train("params/mountaincar_rnd.yaml", tmp_path / "r", progress=False,
                overrides={**A2C_TINY, "learning_starts": 48, "algo.normalize_obs": True})
    df = read_metrics(run / "metrics.csv")
    assert {"rnd/intrinsic_reward", "rnd/predictor_loss", "a2c/grad_norm"} <= set(df.metric)
    optimizer = load_checkpoint(run / "checkpoint.pt")["agent"]["optimizer"]
    n_params = sum(len(g["params"]) for g in optimizer["param_groups"])
    assert len(optimizer["param_groups"]) == 3 and len(optimizer["state"]) == n_params  # the predictor trained too


TINY_PPO = {"total_steps": 256, "eval.every": 0, "checkpoint_every": 0, "parallel.envs_per_thread": 4,
            "algo.batch_size": 64, "algo.mini_batch_size": 32, "algo.k_epochs": 1}


def test_parts_named_in_the_params_file_train(tmp_path):
    run = train("params/cartpole.yaml", tmp_path / "r", progress=False, overrides={
        **TINY_PPO, "algo.loss": {"type": "custom_parts:TaggedLoss", "kwargs": {"tag": 7}},
        "algo.actor": {"type": "custom_parts:WideMLP", "kwargs": {"width": 24}},
        "algo.critic": {"type": "custom_parts:WideMLP"}})
    df = read_metrics(run / "metrics.csv")
    assert (df[df.metric == "custom/tag"].value == 7.0).all() and (df.metric == "custom/tag").sum() == 4
    agent = load_checkpoint(run / "checkpoint.pt")["agent"]
    assert agent["actor"]["net.0.weight"].shape == (24, 4) and agent["critic"]["net.0.weight"].shape == (32, 4)
    run = train("params/cartpole.yaml", tmp_path / "fn", progress=False, overrides={
        **TINY_PPO, "algo.loss": {"type": "custom_parts:kl_penalty_loss", "kwargs": {"kl_coef": 3.0}}})
    assert (read_metrics(run / "metrics.csv").metric == "custom/kl").sum() == 4


@pytest.mark.parametrize("key, spec, message", [
    ("loss", {"type": "custom_parts:NoSuchLoss"}, "'algo.loss.type': module custom_parts has no NoSuchLoss"),
    ("loss", {"type": "no_such_pkg.losses:Loss"}, "'algo.loss.type': cannot import no_such_pkg.losses:Loss"),
    ("loss", {"type": "custom_parts:NOT_CALLABLE"}, "'algo.loss': custom_parts:NOT_CALLABLE is not callable"),
    ("loss", {"type": "custom_parts:returns_a_float"}, "'algo.loss' returns tuple; it must return (a scalar tensor"),
    ("loss", {"type": "custom_parts:TaggedLoss", "kwargs": {"colour": 1}}, "'algo.loss': custom_parts:TaggedLoss(algo"),
    ("loss", {"type": "PPOLoss"}, "'algo.loss' must be a mapping with 'type' (an import path module:Name)"),
    ("loss", {"type": "a:B", "args": []}, "'algo.loss' has unknown keys ['args']"),
    ("actor", {"type": "custom_parts:wrong_width"}, "'algo.actor': custom_parts:wrong_width returns (2, 3) for 2 "
                                                    "observations; it must return [B, 2]"),
    ("critic", {"type": "custom_parts:WideMLP", "kwargs": {"depth": 3}}, "'algo.critic': custom_parts:WideMLP(obs_space, 1"),
])
def test_bad_parts_are_named_before_anything_runs(tmp_path, key, spec, message):
    with pytest.raises(ConfigError) as e:
        train("params/cartpole.yaml", tmp_path / "r", progress=False, overrides={**TINY_PPO, f"algo.{key}": spec})
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert not (tmp_path / "r").exists()
