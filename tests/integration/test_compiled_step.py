"""algo.kwargs.compile: the off-policy gradient step compiled by torch.compile trains what the code as written
trains.

The compiled step is traced from the same functions as the eager one (rlkit/algos/offpolicy.py,
`compiled_gradient_step`), so an edit of a loss or a network must show in it exactly as in eager torch. Each
case edits a loss or a network the way a researcher does (rebinding the module's function or the class's
method, as editing rlkit/algos/sac.py or dqn.py and reloading does), builds one learner with the compiled step
and one without, takes the same gradient steps on the same batches with the same random draws, and requires
the compiled learner's weights to be the eager learner's, up to float rounding, and far from the weights the
unedited code trains. Compiled kernels round differently from eager ones, so "equal" is a bound: a hundredth of
how far the edit moves the weights, and never more than 1e-4.
"""
import numpy as np
import pytest
import torch
from torch import nn

from rlkit import ConfigError, load_config
from rlkit.algos import dqn, sac
from rlkit.algos.base import check_config, learner_class
from rlkit.envs.make import probe_env, resolve_env_fields
from rlkit.steps import StepCounter

STEPS = 25  # gradient steps per learner
ENVS = {"sac": "Pendulum-v1", "dqn": "CartPole-v1"}


def learner(name: str, compile: bool, **kwargs):
    """A learner with 300 made-up transitions in its memory; the same weights and streams for every call."""
    cfg = load_config({"env": {"id": ENVS[name]}, "total_steps": 10_000, "learning_starts": 0,
                       "parallel": {"num_threads": 1, "envs_per_thread": 1}, "train_every": 4 if name == "dqn" else 1,
                       "algo": {"name": name, "hidden_sizes": [32, 32], "mini_batch_size": 64, "buffer_size": 1000,
                                "kwargs": {"compile": compile, **kwargs}}})
    info = probe_env(cfg.env)
    resolve_env_fields(cfg, info)
    check_config(cfg, 1)
    torch.manual_seed(0)
    agent = learner_class(name)(cfg, info, "cpu", np.random.default_rng(0), torch.Generator().manual_seed(0))
    counter, rng = StepCounter(1, 1, 1), np.random.default_rng(1)
    obs = rng.normal(size=(1, *info.obs_shape)).astype(np.float32)
    for _ in range(300):
        agent.act(obs, counter)
        counter.step_iteration()
        obs = rng.normal(size=obs.shape).astype(np.float32)
        agent.observe(obs, rng.normal(size=1).astype(np.float32), rng.random(1) < 0.05, np.zeros(1, bool), obs, counter)
    return agent


def trained_weights(name: str, compile: bool, **kwargs) -> torch.Tensor:
    agent = learner(name, compile, **kwargs)
    for _ in range(STEPS):
        stats = agent.update_step(agent.sample())
        assert all(torch.isfinite(v) for v in stats.values())
    return weights(agent)


def weights(agent) -> torch.Tensor:
    """Every trained parameter (SAC's log alpha included) in one vector."""
    return torch.cat([p.detach().reshape(-1) for params in agent.trained_parameters().values() for p in params])


# --------------------------------------------------------------------------- the edits
def sac_mean_of_twins(monkeypatch):
    """The critics' target from the mean of the twin targets instead of their minimum."""
    def critic_loss(agent, batch, alpha, next_noise):
        with torch.no_grad():
            next_actions, next_logp = agent.actor.sample(batch["next_obs"], noise=next_noise)
            next_q = agent.target(batch["next_obs"], next_actions).mean(0) - alpha * next_logp
            target = batch["rewards"] + batch["discounts"] * next_q
        q = agent.critic(batch["obs"], batch["actions"])
        loss = 0.5 * (q - target).pow(2).mean(1).sum()
        return loss, {"loss/critic": loss.detach(), "sac/q": q[0].detach().mean()}
    monkeypatch.setattr(sac, "critic_loss", critic_loss)


def sac_first_critic_only(monkeypatch):
    """The actor's loss on the first critic alone."""
    def actor_loss(agent, obs, actions, logp, alpha):
        loss = (alpha * logp - agent.critic(obs, actions)[0]).mean()
        return loss, {"loss/actor": loss.detach()}
    monkeypatch.setattr(sac, "actor_loss", actor_loss)


def sac_alpha_loss_toward_zero_entropy(monkeypatch):
    """The temperature's loss toward an entropy of 0 whatever the target (a scaled loss would not do: Adam's
    step does not change with the gradient's scale)."""
    original = sac.alpha_loss
    monkeypatch.setattr(sac, "alpha_loss", lambda log_alpha, logp, target_entropy: original(log_alpha, logp, 0.0))


def sac_clamped_log_std(monkeypatch):
    """The actor's network: the log std clamped into [-2, 1] instead of squashed by tanh."""
    def forward(self, obs):
        mean, log_std = self.net(obs).chunk(2, -1)
        return mean, log_std.clamp(-2.0, 1.0)
    monkeypatch.setattr(sac.SquashedGaussianActor, "forward", forward)


def sac_layer_norm_in_the_critics(monkeypatch):
    """The critics' network: a LayerNorm over the twins' hidden features (a module added to TwinQ)."""
    original = sac.TwinQ.__init__

    def __init__(self, obs_space, action_dim, algo):
        original(self, obs_space, action_dim, algo)
        self.head.insert(2, nn.LayerNorm(algo.hidden_sizes[0], elementwise_affine=False))
    monkeypatch.setattr(sac.TwinQ, "__init__", __init__)


def dqn_squared_error(monkeypatch):
    """The squared error instead of the Huber loss."""
    original = nn.functional.smooth_l1_loss
    monkeypatch.setattr(dqn.nn.functional, "smooth_l1_loss", lambda q, target: 0.5 * (q - target).pow(2).mean()
                        if q.requires_grad else original(q, target))


def dqn_scaled_q(monkeypatch):
    """The Q-network's forward: its values doubled."""
    monkeypatch.setattr(dqn.QNetwork, "forward", lambda self, obs: 2 * nn.Sequential.forward(self, obs))


EDITS = {"sac": [sac_mean_of_twins, sac_first_critic_only, sac_alpha_loss_toward_zero_entropy,
                 sac_clamped_log_std, sac_layer_norm_in_the_critics],
         "dqn": [dqn_squared_error, dqn_scaled_q]}
CASES = [(name, edit) for name, edits in EDITS.items() for edit in edits]


@pytest.fixture(scope="module")
def unedited():
    return {name: trained_weights(name, False) for name in EDITS}


def assert_compiled_is_eager(compiled: torch.Tensor, eager: torch.Tensor, other: torch.Tensor) -> None:
    """compiled equals eager up to rounding; `other` (what the other code trains) is far from both."""
    apart = float((eager - other).abs().max())
    off = float((compiled - eager).abs().max())
    assert apart > 1e-3, f"the edit moved the weights by {apart} only: it does not test anything"
    assert off < min(1e-4, apart / 100), f"compiled {off} from eager, edit {apart}"


@pytest.mark.parametrize("name", list(EDITS))
def test_the_compiled_step_trains_what_the_eager_step_trains(name, unedited):
    initial = weights(learner(name, False))
    assert_compiled_is_eager(trained_weights(name, True), unedited[name], initial)


@pytest.mark.parametrize("name, edit", CASES, ids=[e.__name__ for _, e in CASES])
def test_an_edit_trains_the_same_compiled_and_eager(monkeypatch, unedited, name, edit):
    edit(monkeypatch)
    assert_compiled_is_eager(trained_weights(name, True), trained_weights(name, False), unedited[name])


def test_an_edit_made_after_the_step_was_compiled_shows_at_the_next_step(monkeypatch):
    """A notebook rebinds the loss between two gradient steps of a running learner: the compiled step follows."""
    agents = {"compiled": learner("sac", True), "eager": learner("sac", False), "unedited": learner("sac", False)}
    batches = [agents["eager"].sample() for _ in range(2 * STEPS)]
    for batch in batches:  # the unedited code on the same batches
        agents["unedited"].update_step(batch)
    for i, batch in enumerate(batches):
        if i == STEPS:
            sac_mean_of_twins(monkeypatch)
        for name in ("compiled", "eager"):
            agents[name].update_step(batch)
    assert_compiled_is_eager(*(weights(agents[name]) for name in ("compiled", "eager", "unedited")))


def test_compile_on_several_ranks_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="'algo.kwargs.compile' runs on one rank") as e:
        check_config(load_config({"algo": {"name": "sac", "kwargs": {"compile": True}}}), 2)
    assert "\n" not in str(e.value)


def test_without_a_cpp_compiler_compile_is_refused_in_one_line(monkeypatch):
    import torch._inductor.cpp_builder as builder

    def no_compiler():
        raise RuntimeError("Failed to find C++ compiler. Please specify via CXX environment variable.")
    monkeypatch.setattr(builder, "get_cpp_compiler", no_compiler)
    with pytest.raises(ConfigError, match="'algo.kwargs.compile' needs a C\\+\\+ compiler") as e:
        check_config(load_config({"algo": {"name": "dqn", "kwargs": {"compile": True}}}))
    assert "\n" not in str(e.value) and "apt-get install g++" in str(e.value)
    check_config(load_config({"algo": {"name": "dqn"}}))  # without the key, no compiler is asked for
