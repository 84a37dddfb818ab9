import json

import numpy as np

from rlkit import load_config, train
from rlkit.algos.onpolicy import default_gradient_steps, on_policy_schedule
from rlkit.runs.metrics import read_metrics
from rlkit.steps import StepCounter, crossed, minibatch_indices


def test_policy_env_gradient_steps_with_ranks_threads_envs_and_repeat():
    c = StepCounter(world_size=3, num_threads=4, envs_per_thread=2, action_repeat=4)
    for _ in range(5):
        c.step_iteration()
    assert c.policy_step == 5 * 3 * 4 * 2 == 120
    assert c.env_step == 120 * 4
    c.step_gradient(7)
    assert c.gradient_step == 7 * 3  # W per optimizer update
    c.step_update()
    assert (c.iteration, c.update) == (5, 1)
    assert c.replay_ratio == 21 / 120


def test_counter_state_dict_roundtrip_and_layout_check():
    c = StepCounter(2, 2, 2, 1)
    c.step_iteration(); c.step_gradient(3)
    d = StepCounter(2, 2, 2, 1)
    d.load_state_dict(c.state_dict())
    assert d == c
    try:
        StepCounter(1, 2, 2, 1).load_state_dict(c.state_dict())
        raise AssertionError("layout mismatch accepted")
    except ValueError as e:
        assert "world_size" in str(e)


def test_schedule_from_config():
    cfg = load_config({"parallel": {"num_threads": 4, "envs_per_thread": 2},
                       "algo": {"batch_size": 256, "mini_batch_size": 96, "k_epochs": 3,
                                "per_rank_pretrain_steps": 50}, "learning_starts": 100})
    s = on_policy_schedule(cfg, world_size=2)
    assert s.train_every == 512  # batch_size x W
    assert s.rollout_len == 256 // 8
    assert s.gradient_steps == default_gradient_steps(cfg) == 3 * 3  # k_epochs x ceil(256/96)
    assert s.pretrain_steps == 50
    c = StepCounter(2, 4, 2)
    assert s.gradient_steps_for(c) == 50
    c.step_update()
    assert s.gradient_steps_for(c) == 9
    assert s.random_actions(StepCounter()) and not s.done(StepCounter())


def test_minibatches_from_reshuffled_epochs():
    rng = np.random.default_rng(0)
    batches = list(minibatch_indices(10, 4, 7, rng))
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2, 4]
    assert sorted(np.concatenate(batches[:3])) == list(range(10))  # one epoch covers the batch once
    assert crossed(90, 100, 50) and crossed(99, 100, 100) and not crossed(100, 149, 50) and not crossed(0, 10, 0)


def _final_status(run_dir):
    return json.loads((run_dir / "status.json").read_text())


def test_training_counters_end_to_end(tmp_path, tiny):
    # T=2, E=2, action_repeat=2, learning_starts=100, per_rank_gradient_steps=3, pretrain 5; total 300
    overrides = {**tiny, "total_steps": 300, "learning_starts": 100, "env.action_repeat": 2,
                 "algo.per_rank_gradient_steps": 3, "algo.per_rank_pretrain_steps": 5}
    run = train("params/cartpole.yaml", tmp_path / "r", overrides=overrides, progress=False)
    s = _final_status(run)
    # stops at the first iteration boundary >= 300: 75 iterations x 4 envs
    assert s["policy_step"] == 300 and s["env_step"] == 600
    # random until 100, then rollouts of 64 steps: phases end at 164, 228, 292 -> pretrain 5, then 3, 3
    assert s["gradient_step"] == 5 + 3 + 3
    df = read_metrics(run / "metrics.csv")
    loss_steps = df[df.metric == "loss/policy"][["policy_step", "gradient_step"]].values.tolist()
    assert loss_steps == [[164, 5], [228, 8], [292, 11]]
    last = df.iloc[-1]
    assert (last.policy_step, last.env_step, last.gradient_step) == (300, 600, 11)
    ep_len = df[df.metric == "episode/length"].value
    assert (ep_len <= 250).all()  # CartPole's 500 frames = 250 policy steps at action_repeat 2


def test_max_episode_steps_counts_policy_steps(tmp_path, tiny):
    overrides = {**tiny, "env.max_episode_steps": 5, "env.action_repeat": 3, "total_steps": 128}
    run = train("params/cartpole.yaml", tmp_path / "r", overrides=overrides, progress=False)
    lengths = read_metrics(run / "metrics.csv").query("metric == 'episode/length'").value
    assert lengths.max() == 5 and (lengths <= 5).all()
