"""The few gymnasium wrappers the kit adds itself; everything else is named in the params file (`env.wrappers`).

- TrueEpisode: innermost, next to the simulator: the game's own score, whatever reward shaping,
  clipping or life-loss episodes the wrappers above it apply.
- EpisodicLife: a lost life ends the training episode but not the game (Mnih et al., 2015), which
  gymnasium does not provide (AtariPreprocessing's terminal_on_life_loss restarts the whole game).
- PackedObservation: Dict, Discrete and MultiBinary observations as one flat array per step.
- DictAction: a Dict of discrete actions as one MultiDiscrete, a Dict of Boxes as one Box.
- EmulatorState: ALE envs that pickle with their emulator's state (checkpoints resume the game, not a fresh ROM).
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

TRUE_RETURN = "true_episode_return"  # reset-info key: the score of the game that this reset ended


class TrueEpisode(gym.Wrapper):
    """Sums the simulator's rewards between two of its resets: one true episode, one game.

    Wrappers above may end training episodes early (a lost life) without resetting the game, or
    reset it before it is over (a time limit); either way a game lasts from one reset of the simulator
    to the next, so the score is final exactly when the next reset comes. It is kept in `finished`
    for the vector that owns this env (one attribute read, no info dicts) and put in the reset's info
    under TRUE_RETURN for vectors in other processes.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.score, self.steps = 0.0, 0
        self.finished = None  # the last finished game's score until the owner takes it

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.score += float(reward)
        self.steps += 1
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        if self.steps:
            self.finished = self.score
            info = {**info, TRUE_RETURN: self.score}
        self.score, self.steps = 0.0, 0
        return obs, info

    def take(self):
        """The finished game's score (None if none finished since the last call), and forget it."""
        score, self.finished = self.finished, None
        return score


class EpisodicLife(gym.Wrapper):
    """A lost life ends the episode for the learner; the game goes on until it is really over.

    reset() after a lost life takes one no-op step instead of resetting the emulator, so the
    game's score and the remaining lives carry on; a reset with a seed always starts a new game (an
    evaluation's, say). Needs an ALE env below (env.unwrapped.ale).
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives, self.game_over = 0, True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, *, seed=None, options=None):
        if self.game_over or seed is not None or options is not None:  # a seeded reset starts a new game
            obs, info = self.env.reset(seed=seed, options=options)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)  # NOOP
            if terminated or truncated:  # the no-op ended the game after all
                obs, info = self.env.reset()
        self.game_over = False
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


class PackedObservation(gym.ObservationWrapper):
    """One flat array per observation, laid out by rlkit.envs.spaces.pack: the collector, the rollout memory and
    the normalisers keep handling one array per step, and the networks unpack it by the original space."""

    def __init__(self, env: gym.Env):
        from rlkit.envs import spaces

        super().__init__(env)
        self.original_space = env.observation_space
        self.layout = spaces.PackLayout(env.observation_space)
        self.observation_space = self.layout.box

    def observation(self, observation):
        return self.layout.pack(observation)


class DictAction(gym.ActionWrapper):
    """A Dict action space as one the policy has a distribution for: a Dict of Discrete / MultiDiscrete parts
    becomes one MultiDiscrete (a factored categorical), a Dict of Box parts one flat Box."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        parts = env.action_space.spaces
        if all(isinstance(s, (gym.spaces.Discrete, gym.spaces.MultiDiscrete)) for s in parts.values()):
            self.sizes = {k: 1 if isinstance(s, gym.spaces.Discrete) else len(s.nvec) for k, s in parts.items()}
            nvec = np.concatenate([[s.n] if isinstance(s, gym.spaces.Discrete) else s.nvec for s in parts.values()])
            self.action_space = gym.spaces.MultiDiscrete(nvec)
        elif all(isinstance(s, gym.spaces.Box) for s in parts.values()):
            self.sizes = None
            self.action_space = gym.spaces.flatten_space(env.action_space)
        else:
            raise ValueError(f"DictAction takes a Dict of discrete parts or of Box parts, not a mix: {env.action_space}")

    def action(self, action):
        if self.sizes is None:
            return gym.spaces.unflatten(self.env.action_space, np.asarray(action, np.float32))
        out, start = {}, 0
        for key, size in self.sizes.items():
            sub = self.env.action_space[key]
            part = np.asarray(action[start:start + size], np.int64)
            out[key] = int(part[0]) + int(sub.start) if isinstance(sub, gym.spaces.Discrete) else part + sub.start
            start += size
        return out


class EmulatorState(gym.Wrapper):
    """Pickles an ALE env with its game. ale-py's envs pickle by their constructor's arguments (EzPickle): a
    freshly loaded ROM at frame 0 and a new, unseeded np_random, while every wrapper above still holds the old
    game's state. This layer, next to the simulator, carries the emulator's state with its random state
    (`cloneState(include_rng=True)`) and the env's np_random (which draws AtariPreprocessing's no-ops and any
    random frameskip), and restores both on unpickling: the copy then plays as the original would."""

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_emulator"] = self.env.unwrapped.ale.cloneState(include_rng=True)
        state["_np_random"] = self.env.unwrapped.np_random
        return state

    def __setstate__(self, state):
        emulator, np_random = state.pop("_emulator"), state.pop("_np_random", None)
        self.__dict__.update(state)
        self.env.unwrapped.ale.restoreState(emulator)
        if np_random is not None:  # checkpoints written before the generator was carried have none
            self.env.unwrapped.np_random = np_random
