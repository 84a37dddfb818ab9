"""Environments: spaces taken and refused, wrappers from the params file, storage dtypes, frame counts, true returns."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import toy_envs  # noqa: F401  (registers ToySpace-v0, ToyLives-v0)
import torch
from gymnasium import spaces as gs

from rlkit import envs as rlkit_envs
from rlkit.config import ConfigError, EnvConfig, load_config
from rlkit.envs import Episodes, inspect_env, make_env, probe_env
from rlkit.memory import RolloutMemory
from rlkit.spaces import PackLayout
from rlkit.steps import StepCounter
from rlkit.vector import ProcessEnvs, SerialEnvs, ThreadedEnvs, allocate
from rlkit.wrappers import DictAction, TrueEpisode

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
    (gs.Dict({"move": gs.Discrete(3)}), "rlkit.wrappers.DictAction"),
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
    env = make_env(toy(action_space=discrete, wrappers=[{"type": "rlkit.wrappers.DictAction"}]))
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
    with pytest.raises(ConfigError, match=r"Fake/Game-v0 needs the atari extra: pip install -e '\.\[atari\]'"):
        make_env(EnvConfig(id="Fake/Game-v0"))
    assert "make install EXTRAS=minigrid" in rlkit_envs._install_hint("minigrid.wrappers")


def needs_box2d(**kwargs):
    raise gym.error.DependencyNotInstalled("Box2D is not installed")


def test_an_env_that_lacks_a_dependency_names_the_extra(monkeypatch):
    gym.register("ToyNeedsBox2D-v0", entry_point=f"{__name__}:needs_box2d")
    monkeypatch.setitem(rlkit_envs.EXTRA_OF_ENTRY_POINT, __name__, "box2d")
    with pytest.raises(ConfigError, match=r"ToyNeedsBox2D-v0 needs a package.*pip install -e '\.\[box2d\]'"):
        make_env(EnvConfig(id="ToyNeedsBox2D-v0"))


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


def test_normalize_obs_is_refused_for_images():
    cfg = load_config("params/minatar_breakout.yaml", {"algo.normalize_obs": True})
    with pytest.raises(ConfigError, match="'algo.normalize_obs' is for float vector observations.*false"):
        rlkit_envs.resolve_env_fields(cfg, probe_env(cfg.env))


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

LIVES = [{"type": "rlkit.wrappers.EpisodicLife"},
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
