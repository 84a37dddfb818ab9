"""Environments: spaces taken and refused, wrappers from the params file, storage dtypes, frame counts, true returns."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import toy_envs  # noqa: F401  (registers ToySpace-v0, ToyLives-v0)
import torch
from gymnasium import spaces as gs

from rlkit.envs import make as rlkit_envs
from rlkit.config import ConfigError, EnvConfig, load_config
from rlkit.envs.make import Episodes, inspect_env, make_env, probe_env
from rlkit.data.rollout import RolloutMemory
from rlkit.envs.spaces import PackLayout
from rlkit.steps import StepCounter
from rlkit.envs.vector import ProcessEnvs, SerialEnvs, ThreadedEnvs, allocate
from rlkit.envs.wrappers import DictAction, TrueEpisode

IMAGE = gs.Box(0, 255, (7, 7, 3), np.uint8)


def toy(observation_space=None, action_space=None, **env):
    return EnvConfig(id="ToySpace-v0", kwargs={"observation_space": observation_space, "action_space": action_space},
                     **env)


# ---------------------------------------------------------------- observation spaces

@pytest.mark.parametrize("space, shape, dtype", [
    (gs.Box(-1, 1, (3,), np.float32), (3,), np.float32),
    (gs.Box(-1, 1, (3,), np.float64), (3,), np.float32),  # floats are stored as the networks' float32
    (gs.Box(0, 255, (84, 84, 3), np.uint8), (84, 84, 3), np.uint8),  # HWC pixels stay bytes
    (gs.Box(0, 255, (4, 84, 84), np.uint8), (4, 84, 84), np.uint8),  # CHW
    (gs.Box(0, 255, (10, 10), np.uint8), (10, 10), np.uint8),  # HW
    (gs.Box(0, 1, (10, 10, 4), bool), (10, 10, 4), np.bool_),  # MinAtar's boolean channels
    (gs.Discrete(16), (1,), np.uint8),  # FrozenLake: the index, one-hot in the network
    (gs.Discrete(1000), (1,), np.float32),  # too many values for a byte
    (gs.MultiBinary(5), (5,), np.uint8),
    (gs.Dict({"image": IMAGE, "direction": gs.Discrete(4)}), (7 * 7 * 3 + 1,), np.uint8),  # MiniGrid minus mission
    (gs.Dict({"image": IMAGE, "pos": gs.Box(-1, 1, (2,), np.float32)}), (7 * 7 * 3 + 2,), np.float32),
])
def test_every_observation_space_kind_is_stored_in_its_dtype(space, shape, dtype):
    env = make_env(toy(space))
    info = inspect_env(env)
    assert info.obs_shape == shape and info.obs_dtype == np.dtype(dtype)
    assert info.obs_space == space  # what the networks encode: the space before packing
    vec = SerialEnvs([lambda: make_env(toy(space))], [0], info.obs_shape, True, obs_dtype=info.obs_dtype)
    obs = vec.reset()
    assert obs.shape == (1, *shape) and obs.dtype == np.dtype(dtype)
    assert np.array_equal(obs[0], np.asarray(env.reset(seed=0)[0], dtype))  # the same env, seed and values


def test_packed_observations_unpack_to_the_original_parts():
    space = gs.Dict({"image": IMAGE, "direction": gs.Discrete(4, start=1), "bits": gs.MultiBinary(3)})
    layout = PackLayout(space)
    space.seed(3)
    samples = [space.sample() for _ in range(5)]
    packed = np.stack([layout.pack(s) for s in samples])
    parts = layout.unpack(torch.as_tensor(packed))
    for i, s in enumerate(samples):
        assert np.array_equal(parts["image"][i].numpy(), s["image"])
        assert parts["direction"][i].item() == s["direction"] - 1  # an index from 0, ready for one-hot
        assert np.array_equal(parts["bits"][i].numpy(), s["bits"])
    assert parts["direction"].dtype == torch.int64


@pytest.mark.parametrize("space, words", [
    (gs.Tuple([gs.Discrete(2), gs.Discrete(3)]), "FlattenObservation"),
    (gs.Dict({"image": IMAGE, "mission": gs.Text(20)}), "FilterObservation"),
    (gs.Dict({"a": gs.Dict({"b": gs.Discrete(2)})}), "nested Dict"),
    (gs.Graph(gs.Box(0, 1, (2,)), None), "FlattenObservation"),
])
def test_refused_observation_spaces_name_a_wrapper(space, words):
    with pytest.raises(ConfigError) as e:
        make_env(toy(space))
    message = str(e.value)
    assert words in message and "\n" not in message and "env.wrappers" in message


def test_minigrid_dict_observation_names_imgobswrapper():
    with pytest.raises(ConfigError, match="ImgObsWrapper"):
        probe_env(EnvConfig(id="MiniGrid-DoorKey-5x5-v0"))


# ---------------------------------------------------------------- action spaces

@pytest.mark.parametrize("space, continuous, dim", [
    (gs.Discrete(3), False, 3), (gs.Box(-2, 2, (2,), np.float32), True, 2),
    (gs.MultiDiscrete([3, 2, 4]), False, 9), (gs.MultiBinary(4), False, 4),
])
def test_every_action_space_kind_is_taken(space, continuous, dim):
    info = inspect_env(make_env(toy(action_space=space)))
    assert info.action_space == space and info.has_continuous == continuous and info.action_dim == dim


@pytest.mark.parametrize("space, words", [
    (gs.Dict({"move": gs.Discrete(3)}), "rlkit.envs.wrappers.DictAction"),
    (gs.Tuple([gs.Discrete(3)]), "ActionWrapper"),
    (gs.Box(-1, 1, (2, 2), np.float32), "1-D Box"),
    (gs.Box(-np.inf, np.inf, (2,), np.float32), "infinite bounds"),
    (gs.MultiDiscrete([[2, 2], [2, 2]]), "1-D one"),
])
def test_refused_action_spaces_say_what_to_do(space, words):
    with pytest.raises(ConfigError, match=words) as e:
        make_env(toy(action_space=space))
    assert "\n" not in str(e.value)


def test_dict_action_wrapper_makes_one_multidiscrete_or_one_box():
    discrete = gs.Dict({"move": gs.Discrete(3, start=-1), "grip": gs.MultiDiscrete([2, 2])})
    env = make_env(toy(action_space=discrete, wrappers=[{"type": "rlkit.envs.wrappers.DictAction"}]))
    assert env.action_space == gs.MultiDiscrete([2, 2, 3])  # gymnasium's Dict sorts its keys: grip, move
    env.reset(seed=0)
    env.step(np.array([1, 0, 2]))
    inner = env.unwrapped
    assert inner.actions[-1]["move"] == 1 and list(inner.actions[-1]["grip"]) == [1, 0]
    boxes = gs.Dict({"a": gs.Box(-1, 1, (2,), np.float32), "b": gs.Box(0, 1, (1,), np.float32)})
    wrapped = DictAction(gym.make("ToySpace-v0", action_space=boxes))
    assert wrapped.action_space.shape == (3,)
    assert np.allclose(wrapped.action(np.array([0.5, -0.5, 0.25], np.float32))["b"], [0.25])


# ---------------------------------------------------------------- wrappers from the params file

def _wrapped(*wrappers, env_id="ToyLives-v0"):
    return EnvConfig(id=env_id, wrappers=list(wrappers))


def test_wrappers_are_applied_in_order_to_training_and_evaluation_envs():
    cfg = _wrapped({"type": "gymnasium.wrappers.ClipReward", "kwargs": {"min_reward": -1, "max_reward": 1}},
                   {"type": "gymnasium.wrappers.FrameStackObservation", "kwargs": {"stack_size": 2}})
    env = make_env(cfg)
    names = []
    layer = env
    while isinstance(layer, gym.Wrapper):
        names.append(type(layer).__name__)
        layer = layer.env
    # the kit's layers around the user's, which keep their order (outermost first here)
    assert names[:4] == ["FrameStackObservation", "ClipReward", "TrueEpisode", "OrderEnforcing"]
    assert env.observation_space.shape == (2, 3)
    assert env.reset(seed=0)[0].shape == (2, 3) and env.step(0)[1] == 1.0  # 5 clipped to 1


@pytest.mark.parametrize("wrapper, words", [
    ({"type": "nosuchpackage.wrappers.Stack"}, "cannot import nosuchpackage.wrappers.Stack"),
    ({"type": "gymnasium.wrappers.NoSuchWrapper"}, "has no NoSuchWrapper"),
    ({"type": "gymnasium.wrappers.FrameStackObservation", "kwargs": {"stack": 4}}, "bad kwargs.*stack_size"),
    ({"type": "gymnasium.wrappers.FrameStackObservation", "kwargs": {"stack_size": 0}}, "cannot wrap"),
])
def test_bad_wrappers_fail_in_one_line(wrapper, words):
    with pytest.raises(ConfigError, match=words) as e:
        probe_env(_wrapped(wrapper))
    assert "'env.wrappers[0]'" in str(e.value) and "\n" not in str(e.value)


def test_wrappers_in_the_wrong_order_are_named():
    # ImgObsWrapper needs MiniGrid's Dict; after FlattenObservation there is none
    cfg = _wrapped({"type": "gymnasium.wrappers.FilterObservation", "kwargs": {"filter_keys": ["image"]}},
                   {"type": "gymnasium.wrappers.FlattenObservation"},
                   {"type": "minigrid.wrappers.ImgObsWrapper"}, env_id="MiniGrid-DoorKey-5x5-v0")
    with pytest.raises(ConfigError, match=r"env.wrappers\[2\]' minigrid.wrappers.ImgObsWrapper cannot wrap the env "
                                          r"as it is after FlattenObservation.*check the order of env.wrappers"):
        probe_env(cfg)


def test_atari_preprocessing_on_an_env_that_skips_frames_already_is_refused():
    cfg = _wrapped({"type": "gymnasium.wrappers.AtariPreprocessing"}, env_id="ALE/Pong-v5")  # v5: frameskip 4
    with pytest.raises(ConfigError, match="AtariPreprocessing cannot wrap.*Disable frame-skipping"):
        probe_env(cfg)


@pytest.mark.parametrize("wrappers, words", [
    (["gymnasium.wrappers.FlattenObservation"], "must be a mapping with 'type'"),
    ([{"type": "gymnasium.wrappers.ClipReward", "args": [1]}], "unknown keys \\['args'\\]"),
    ([{"type": "gymnasium.wrappers.ClipReward", "kwargs": [1]}], "'kwargs' must be a mapping"),
])
def test_the_shape_of_env_wrappers_is_checked_when_the_config_loads(wrappers, words):
    with pytest.raises(ConfigError, match=words):
        load_config({"env": {"id": "CartPole-v1", "wrappers": wrappers}})


def test_a_missing_extra_names_its_install_command(monkeypatch):
    monkeypatch.setattr(rlkit_envs, "NAMESPACES", [("Fake/", "rlkit_no_such_package", "atari")])
    with pytest.raises(ConfigError, match=r"^'env\.id': Fake/Game-v0 needs the atari extra: pip install -e '\.\[atari\]' \(or make install EXTRAS=atari\)$"):
        make_env(EnvConfig(id="Fake/Game-v0"))
    assert "make install EXTRAS=minigrid" in rlkit_envs._install_hint("minigrid.wrappers")


def needs_box2d(**kwargs):
    raise gym.error.DependencyNotInstalled("Box2D is not installed")


def test_an_env_that_lacks_a_dependency_names_the_extra(monkeypatch):
    gym.register("ToyNeedsBox2D-v0", entry_point=f"{__name__}:needs_box2d")
    monkeypatch.setitem(rlkit_envs.EXTRA_OF_ENTRY_POINT, __name__, "box2d")
    with pytest.raises(ConfigError, match=r"ToyNeedsBox2D-v0 needs a package.*pip install -e '\.\[box2d\]'"):
        make_env(EnvConfig(id="ToyNeedsBox2D-v0"))


def test_a_wrapper_that_lacks_a_dependency_names_the_extra(monkeypatch):
    import builtins
    import sys

    real_import = builtins.__import__

    def without_cv2(name, *args, **kwargs):  # as if opencv-python-headless were not installed
        if name == "cv2":
            raise ModuleNotFoundError("No module named 'cv2'", name="cv2")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_cv2)
    monkeypatch.delitem(sys.modules, "cv2", raising=False)
    cfg = EnvConfig(id="ALE/Pong-v5", kwargs={"frameskip": 1}, wrappers=[{"type": "gymnasium.wrappers.AtariPreprocessing"}])
    with pytest.raises(ConfigError, match=r"AtariPreprocessing needs a package that is not installed.*"
                                          r"pip install -e '\.\[atari\]'"):
        make_env(cfg)


def test_known_namespaces_need_no_module_prefix():
    for env_id in ("ALE/Pong-v5", "MiniGrid-Empty-8x8-v0", "MinAtar/Breakout-v1"):
        rlkit_envs._spec(env_id)  # raises if the namespace was not registered


# ---------------------------------------------------------------- storage: images stay bytes

def test_an_atari_rollout_is_stored_as_uint8():
    info = probe_env(load_config("params/atari_breakout.yaml").env)
    assert info.obs_shape == (4, 84, 84) and info.obs_dtype == np.uint8
    memory = RolloutMemory(128, 8, info.obs_shape, (), obs_dtype=info.obs_dtype)
    assert memory.obs.dtype == np.uint8
    assert memory.obs.nbytes == 8 * 128 * 4 * 84 * 84  # 86.7 MB; as float32 it would be 346.8 MB
    arrays = allocate(8, info.obs_shape, info.obs_dtype)
    assert arrays["obs"].dtype == arrays["final_obs"].dtype == np.uint8


@pytest.mark.parametrize("env_id", ["MinAtar/Breakout-v1", "FrozenLake-v1"])
def test_normalize_obs_is_refused_for_images_and_indices(env_id):
    cfg = load_config({"env": {"id": env_id}, "algo": {"normalize_obs": True}})
    with pytest.raises(ConfigError, match="'algo.normalize_obs' is for float vector observations.*false") as e:
        rlkit_envs.resolve_env_fields(cfg, probe_env(cfg.env))
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- frames per env step

def _emulated_frames(env_cfg, policy_steps):
    env = make_env(env_cfg)
    env.reset(seed=0)
    ale = env.unwrapped.ale
    before = ale.getFrameNumber()
    for _ in range(policy_steps):
        _, _, terminated, truncated, _ = env.step(0)
        assert not (terminated or truncated)
    return ale.getFrameNumber() - before


@pytest.mark.parametrize("env_cfg, frames", [
    (EnvConfig(id="ALE/Pong-v5"), 4),  # ALE's own frameskip
    (EnvConfig(id="ALE/Pong-v5", action_repeat=2), 8),
    (EnvConfig(id="ALE/Pong-v5", kwargs={"frameskip": 1},
               wrappers=[{"type": "gymnasium.wrappers.AtariPreprocessing", "kwargs": {"frame_skip": 3}}]), 3),
    (EnvConfig(id="ALE/Pong-v5", kwargs={"frameskip": 1}), 1),
])
def test_env_step_counts_the_frames_the_emulator_computed(env_cfg, frames):
    info = probe_env(env_cfg)
    counter = StepCounter(1, 1, 8, env_cfg.action_repeat, info.frames_per_step)
    counter.step_iteration()
    assert counter.env_step == 8 * frames
    assert _emulated_frames(env_cfg, 10) == 10 * frames  # what ale-py itself counted


def test_frames_per_step_is_settable_and_required_for_a_random_frameskip():
    random_skip = EnvConfig(id="ALE/Pong-v5", kwargs={"frameskip": (2, 5)})
    with pytest.raises(ConfigError, match="'env.frames_per_step'.*random number of frames"):
        probe_env(random_skip)
    random_skip.frames_per_step = 3
    assert probe_env(random_skip).frames_per_step == 3
    assert probe_env(EnvConfig(id="CartPole-v1", frames_per_step=6)).frames_per_step == 6


def test_step_counter_resumes_checkpoints_from_before_frames_per_step():
    old = StepCounter(1, 1, 8, 1).state_dict()
    del old["frames_per_step"]
    counter = StepCounter(1, 1, 8, 1)
    counter.load_state_dict({**old, "policy_step": 80})
    assert counter.env_step == 80
    with pytest.raises(ValueError, match="frames_per_step=1, this run has 4"):
        StepCounter(1, 1, 8, 1, frames_per_step=4).load_state_dict(old)


# ---------------------------------------------------------------- true game scores vs what PPO saw

LIVES = [{"type": "rlkit.envs.wrappers.EpisodicLife"},
         {"type": "gymnasium.wrappers.ClipReward", "kwargs": {"min_reward": -1, "max_reward": 1}}]




@pytest.mark.parametrize("backend", ["serial", "thread", "process"])
def test_vectors_report_the_game_score_when_the_game_ends(backend):
    env_cfg = EnvConfig(id="ToyLives-v0", wrappers=LIVES)  # 3 lives x 4 steps, reward 5 clipped to 1
    fns, seeds, shape = [lambda: make_env(env_cfg)] * 2, [0, 1], (3,)
    vec = {"serial": lambda: SerialEnvs(fns, seeds, shape, True),
           "thread": lambda: ThreadedEnvs(fns, seeds, shape, True, num_threads=2, one_core=False),
           "process": lambda: ProcessEnvs(fns, seeds, shape, True)}[backend]()
    try:
        vec.reset()
        ends, scores = 0, []
        for _ in range(24):
            _, rewards, terminated, _, _ = vec.step(np.zeros(2, np.int64))
            assert np.all(rewards == 1.0)  # the learner sees clipped rewards
            assert terminated.all() or not terminated.any()  # both envs play the same game
            if terminated.all():  # a life lost: the learner's episode ends
                ends += 1
                true = vec.arrays["true_return"].copy()
                if ends % 3 == 0:  # the third life: the game is over
                    scores.append(true)
                else:
                    assert np.isnan(true).all()
        # each game: 12 steps of reward 5 (the no-op steps after lost lives included), unclipped
        assert len(scores) == 2 and all(list(s) == [60.0, 60.0] for s in scores)
    finally:
        vec.close()


def test_episode_stats_log_true_and_training_returns():
    stats = Episodes(1, true_returns=True)
    rows = []
    for t in range(1, 13):
        done = np.array([t % 4 == 0])
        true = np.array([60.0 if t == 12 else np.nan])
        rows += stats.step(np.array([1.0]), done, true)
    assert rows[:2] == [{"episode/return_train": 4.0}] * 2
    assert rows[2] == {"episode/return_train": 4.0, "episode/return": 60.0, "episode/length": 12}
    plain = Episodes(1, true_returns=False)
    assert plain.step(np.array([2.0]), np.array([True]), np.array([np.nan])) == [
        {"episode/return": 2.0, "episode/length": 1}]


def test_true_episode_sums_the_unclipped_score_of_a_real_breakout_game():
    """The preset's wrappers (clipped rewards, a life per episode) vs the same game, seed and actions with
    rewards unclipped: TrueEpisode's score is the unclipped sum over all five lives."""
    def play(cfg):
        env = make_env(cfg)
        env.reset(seed=3)
        rng = np.random.default_rng(0)
        rewards, episodes = [], 0
        while True:
            _, r, terminated, truncated, _ = env.step(int(rng.integers(4)))
            rewards.append(r)
            if terminated or truncated:
                episodes += 1
                env.reset()
                score = next(layer for layer in _layers(env) if isinstance(layer, TrueEpisode)).take()
                if score is not None:
                    return score, sum(rewards), episodes

    preset = load_config("params/atari_breakout.yaml").env
    score, clipped_sum, lives = play(preset)
    unclipped = load_config("params/atari_breakout.yaml").env
    unclipped.wrappers = [w for w in unclipped.wrappers if not w["type"].endswith("ClipReward")]
    _, unclipped_sum, _ = play(unclipped)
    assert lives == 5 and score == unclipped_sum > 0
    assert clipped_sum <= score


def _layers(env):
    while True:
        yield env
        if not isinstance(env, gym.Wrapper):
            return
        env = env.env


# ---------------------------------------------------------------- whole runs from a params file

def test_rnd_on_stacked_frames_reads_the_last_frame_as_uint8():
    from rlkit.algos.rnd import RNDHook

    info = probe_env(load_config("params/atari_breakout.yaml").env)
    cfg = load_config("params/atari_breakout.yaml", {"algo.use_RND": True})
    hook = RNDHook(cfg, info, num_envs=8, device="cpu", train_every=1024, value_head=1)
    assert hook.obs_shape == (84, 84)  # one frame, as the paper's target and predictor
    assert hook.rnd.obs_norm.rms.mean.shape == (84, 84)  # whitened per pixel
    memory = RolloutMemory(128, 8, info.obs_shape, (), obs_dtype=info.obs_dtype)
    hook.attach(type("A", (), {"add_param_group": lambda self, p, lr: None})(), memory)
    assert memory.extra["next_obs"].dtype == np.uint8 and memory.extra["next_obs"].shape == (128, 8, 84, 84)
    frames = np.zeros((8, 4, 84, 84), np.uint8)
    frames[:, -1] = 200
    hook.on_step(memory, frames, frames, np.zeros(8, bool), warmup=True)  # the random warm-up feeds the normaliser
    assert np.allclose(hook.rnd.obs_norm.rms.mean, 200, atol=0.1)
    rewards = hook.rnd.intrinsic_reward(frames[:, -1])
    assert rewards.shape == (8,) and np.isfinite(rewards).all()


def test_true_and_training_returns_are_logged_by_a_run(tmp_path):
    from rlkit import train
    from rlkit.runs.metrics import read_metrics

    cfg = {"env": {"id": "ToyLives-v0", "wrappers": LIVES}, "total_steps": 256,
           "eval": {"every": 256, "episodes": 2},
           "parallel": {"envs_per_thread": 2}, "algo": {"batch_size": 64, "mini_batch_size": 32, "k_epochs": 1}}
    df = read_metrics(train(cfg, tmp_path / "run", progress=False) / "metrics.csv")
    games = df[df.metric == "episode/return"].value
    lives = df[df.metric == "episode/return_train"].value
    assert len(games) > 0 and set(games) == {60.0}  # the game's score: 3 lives, 12 steps of 5
    assert set(lives) <= {3.0, 4.0} and len(lives) == 3 * len(games) + (len(lives) - 3 * len(games))
    assert len(lives) >= 3 * len(games)
    assert set(df[df.metric == "episode/length"].value) == {10.0}  # policy steps; the 2 no-ops were not the agent's
    assert set(df[df.metric == "eval/return"].value) == {60.0}  # evaluation plays whole games too


def test_a_short_atari_breakout_preset_run(tmp_path):
    """The preset as it is (AtariPreprocessing, episodic life, ClipReward with its lambda, 4 frames, the Nature
    CNN) for a few hundred policy steps on the CPU: frames counted 4 per policy step, true scores logged, and
    the final checkpoint holds the emulators' state."""
    from rlkit import train
    from rlkit.runs.checkpoint import load_checkpoint
    from rlkit.runs.metrics import read_metrics

    over = {"total_steps": 256, "eval.every": 0, "checkpoint_every": 0, "log_every": 128,
            "parallel.envs_per_thread": 4, "algo.batch_size": 128, "algo.mini_batch_size": 64, "algo.k_epochs": 1,
            "torch_threads": 1}
    df = read_metrics(train("params/atari_breakout.yaml", tmp_path / "run", overrides=over, progress=False)
                      / "metrics.csv")
    last = df.iloc[-1]
    assert last.policy_step == 256 and last.env_step == 256 * 4
    assert {"loss/policy", "loss/value", "ppo/approx_kl"} <= set(df.metric)
    assert set(df[df.metric == "episode/return_train"].value) <= {0.0, 1.0, 2.0, 3.0, 4.0, 5.0}
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["envs"] is not None  # pickled, lambda and all


@pytest.mark.parametrize("wrappers", [
    [{"type": "gymnasium.wrappers.FrameStackObservation", "kwargs": {"stack_size": 3}}],
    LIVES + [{"type": "gymnasium.wrappers.FrameStackObservation", "kwargs": {"stack_size": 2}}],
])
def test_a_wrapped_image_env_resumes_exactly(tmp_path, wrappers):
    from rlkit import train
    from rlkit.runs.metrics import read_metrics

    cfg = {"env": {"id": "ToyLives-v0", "kwargs": {"image": True, "life_steps": 5}, "wrappers": wrappers},
           "total_steps": 512, "checkpoint_every": 256, "log_every": 128, "eval": {"every": 256, "episodes": 1},
           "parallel": {"envs_per_thread": 2}, "algo": {"batch_size": 64, "mini_batch_size": 32, "k_epochs": 1}}

    def stop_late(counters, metrics):
        if counters["policy_step"] >= 400:  # after the checkpoint at 256
            raise KeyboardInterrupt

    def values(run):
        df = read_metrics(run / "metrics.csv")
        return df[~df.metric.str.startswith("perf/")][["policy_step", "metric", "value"]].reset_index(drop=True)

    full = train(cfg, tmp_path / "full", progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "cut", progress=False, callbacks=[stop_late])
    cut = train(cfg, tmp_path / "cut", progress=False, resume=True)
    assert values(cut).equals(values(full))
    assert "episode/return" in set(values(full).metric)


def test_episodic_life_goes_on_after_a_lost_life_but_a_seeded_reset_starts_a_new_game():
    env = make_env(_wrapped({"type": "rlkit.envs.wrappers.EpisodicLife"}))
    game = env.unwrapped
    env.reset(seed=0)
    for _ in range(4):
        _, _, terminated, _, _ = env.step(0)
    assert terminated and game.lives_left == 2 and game.resets == 1
    env.reset()  # the autoreset after a lost life: a no-op step, same game
    assert game.resets == 1 and game.lives_left == 2 and game.t == 5
    env.reset(seed=1)  # an evaluation's reset: a new game
    assert game.resets == 2 and game.lives_left == 3


def test_an_ale_env_pickles_with_its_game_and_resumes_it_exactly():
    import cloudpickle

    cfg = EnvConfig(id="ALE/Breakout-v5", kwargs={"frameskip": 1},  # sticky actions on: ALE's own RNG matters
                    wrappers=load_config("params/atari_breakout.yaml").env.wrappers)
    env = make_env(cfg)
    env.reset(seed=0)
    for _ in range(40):
        env.step(1)
    copy = cloudpickle.loads(cloudpickle.dumps(env))  # what a checkpoint's env state holds
    assert copy.unwrapped.ale.getFrameNumber() == env.unwrapped.ale.getFrameNumber() > 0
    rng = np.random.default_rng(0)
    # without EmulatorState the copy differs from the first step (a fresh ROM at frame 0); without the env's
    # np_random it differs from the first reset (AtariPreprocessing's no-ops are drawn from it)
    resets = 0
    for _ in range(1_000):
        action = int(rng.integers(4))
        a, b = env.step(action), copy.step(action)
        assert np.array_equal(a[0], b[0]) and a[1:4] == b[1:4]
        if a[2] or a[3]:
            env.reset(), copy.reset()
            resets += 1
    assert resets >= 5  # lives lost and games over: the no-op resets were replayed too


def _exploration_pair(task: str):
    """params/minigrid_<task>.yaml and its _rnd twin; asserts the twin is the same PPO with the intrinsic
    reward and its warm-up, nothing else."""
    ppo, rnd = (load_config(f"params/minigrid_{task}{s}.yaml") for s in ("", "_rnd"))
    flat = [pd.json_normalize(c.to_dict(), sep=".").iloc[0].to_dict() for c in (ppo, rnd)]
    assert {k for k in flat[0] if flat[0][k] != flat[1][k]} == {"learning_starts", "algo.use_RND", "algo.beta"}
    return ppo


def _random_games_end_unrewarded(env, limit: int, games: int = 3) -> None:
    rng = np.random.default_rng(0)
    for game in range(games):
        env.reset(seed=game)
        for step in range(1, limit + 1):
            _, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            if terminated or truncated:
                break
        assert (step, reward, terminated, truncated) == (limit, 0.0, False, True)


@pytest.mark.parametrize("room, limit, width", [("empty16", 192, 16), ("empty20", 240, 20)])
def test_the_minigrid_exploration_tasks_are_out_of_reach_of_random_actions(room, limit, width):
    """params/minigrid_empty16*.yaml and minigrid_empty20*.yaml: MiniGrid's own limit cut (to 192 and 240
    steps), so random actions end every game without a reward."""
    env = make_env(_exploration_pair(room).env)
    assert (env.unwrapped.width, env.unwrapped.height) == (width, width)
    _random_games_end_unrewarded(env, limit)


def test_the_multiroom_task_lays_out_three_rooms_behind_closed_doors():
    """params/minigrid_multiroom*.yaml: every game three rooms of at most 5x5 cells (walls included), a closed
    door into each after the first, MultiRoomEnv's 60-step limit; random actions end every game unrewarded."""
    env = make_env(_exploration_pair("multiroom").env)
    for game in range(5):
        env.reset(seed=game)
        rooms = env.unwrapped.rooms
        assert len(rooms) == 3 and all(max(room.size) <= 5 for room in rooms)
        doors = [env.unwrapped.grid.get(*room.entryDoorPos) for room in rooms[1:]]
        assert all(door.type == "door" and not door.is_open for door in doors)
    _random_games_end_unrewarded(env, 60)
