"""algo.kwargs.precision bf16-mixed: the off-policy gradient step under bfloat16 autocast, eager and compiled.

bfloat16 keeps 8 bits of mantissa, so a bf16-mixed learner cannot train float32's weights bit for bit; what
these tests hold it to: the key changes the arithmetic (the weights are not float32's), the training stays
near float32's (a tenth of how far the steps move the weights, as vectors), the compiled step trains what the
eager bf16 step trains, and every loss of a step sees the parameters as the step's earlier updates left them.
"""
import copy

import pytest
import torch
from test_compiled_step import STEPS, learner, trained_weights, weights

from rlkit import ConfigError, load_config
from rlkit.algos import sac
from rlkit.algos.base import check_config


@pytest.fixture(scope="module")
def eager():
    """Each algorithm's weights after the eager steps, in float32 and in bf16-mixed (trained once for the module)."""
    return {name: {"fp32": trained_weights(name, False), "bf16": trained_weights(name, False, precision="bf16-mixed")}
            for name in ("sac", "dqn")}


@pytest.mark.parametrize("name", ["sac", "dqn"])
def test_bf16_mixed_changes_the_arithmetic_and_stays_near_float32(name, eager):
    initial = weights(learner(name, False))
    fp32, bf16 = eager[name]["fp32"], eager[name]["bf16"]
    moved, off = float((fp32 - initial).norm()), float((bf16 - fp32).norm())
    assert off > 1e-6, f"bf16-mixed trained float32's weights ({off} apart): the step did not run in bfloat16"
    assert off < moved / 10, f"bf16-mixed {off} from float32, where {STEPS} steps move the weights {moved}"


@pytest.mark.parametrize("name", ["sac", "dqn"])
def test_the_compiled_bf16_step_trains_what_the_eager_bf16_step_trains(name, eager):
    compiled = trained_weights(name, True, precision="bf16-mixed")
    fp32, bf16 = eager[name]["fp32"], eager[name]["bf16"]
    off, apart = float((compiled - bf16).norm()), float((bf16 - fp32).norm())
    # the compiled kernels round to bfloat16 at other points than eager's: a bound, well inside bf16's own
    # distance from float32
    assert off < apart / 2, f"compiled bf16 {off} from eager bf16, which is {apart} from float32"


def test_the_actors_loss_sees_the_critics_just_updated(monkeypatch):
    """SAC updates its critics, then computes the actor's loss through them: under autocast, that loss must use
    bfloat16 copies of the updated critics, not copies cached from before their update."""
    seen = {}
    original = sac.actor_loss

    def actor_loss(agent, obs, actions, logp, alpha):
        seen.update(q=agent.critic(obs, actions).detach(), inputs=(obs, actions.detach()),
                    critic=copy.deepcopy(agent.critic.state_dict()))
        return original(agent, obs, actions, logp, alpha)
    monkeypatch.setattr(sac, "actor_loss", actor_loss)
    agent = learner("sac", False, precision="bf16-mixed")
    before = copy.deepcopy(agent.critic.state_dict())
    agent.update_step(agent.sample())

    def q_of(state):
        critic = copy.deepcopy(agent.critic)
        critic.load_state_dict(state)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return critic(*seen["inputs"])
    assert torch.equal(seen["q"], q_of(seen["critic"]))
    assert not torch.equal(seen["q"], q_of(before))


@pytest.mark.parametrize("name", ["sac", "dqn"])
def test_the_networks_outputs_keep_float32_precision(name):
    """The output layers compute in float32 under bf16-mixed (rlkit.nn.networks.in_float32): in bfloat16 a Q-value
    near 300 would be rounded to a multiple of 2, where a TD error is a difference of two of them and the rewards
    are near 3. The Q head's bias is set near 300 here, and its outputs must not all lie on bfloat16's grid."""
    agent = learner(name, False, precision="bf16-mixed")
    batch = agent.sample()
    head = agent.q_net[-1] if name == "dqn" else agent.critic.head[-1]
    with torch.no_grad():
        head.bias.fill_(300.3)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        q = agent.q_net(batch["obs"]) if name == "dqn" else agent.critic(batch["obs"], batch["actions"])
        outputs = [q, *(agent.actor(batch["obs"]) if name == "sac" else ())]  # SAC's actor: mean, log std
    assert [o.dtype for o in outputs] == [torch.float32] * len(outputs)
    assert (q - q.bfloat16().float()).abs().max() > 0.01, "the Q-values are bfloat16's, rounded to steps of 2"


def test_the_run_says_its_step_runs_in_bf16():
    """status.json's and the run summary's update_path."""
    assert learner("dqn", False, precision="bf16-mixed").update_path == "autograd, bf16-mixed (algo.kwargs.precision)"
    assert learner("dqn", False).update_path == "autograd"


def test_an_unknown_precision_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="'algo.kwargs.precision' must be one of 32-true, bf16-mixed, got 'bf16'") \
            as e:
        check_config(load_config({"algo": {"name": "sac", "kwargs": {"precision": "bf16"}}}))
    assert "\n" not in str(e.value)
