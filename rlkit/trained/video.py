"""Videos of a policy playing: gymnasium's rgb_array frames, encoded to H.264 MP4 by imageio-ffmpeg's own ffmpeg.

    record_video(policy, "hopper.mp4")      # one evaluation episode (a game), at most max_steps policy steps

During training, eval.video_every (policy steps) records videos/<policy_step>.mp4 from the policy.pt the
trainer writes just before each evaluation (VideoRecorder, a training callback). An env that cannot render is
one line (VideoError), and during training never a failed run: the run goes on without videos.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

from rlkit.steps import crossed
from rlkit.trained.evaluate import default_seeds, find_true_episode
from rlkit.trained.policy import load

# Without a display: MuJoCo picks its OpenGL backend when it is first imported, and EGL renders off-screen;
# pygame (classic control, Box2D) draws rgb_array frames on surfaces and needs no window system. Set before any
# env is made; a display, or a backend chosen by the user, is left as it is.
if not os.environ.get("DISPLAY"):
    if "MUJOCO_GL" not in os.environ:
        os.environ["MUJOCO_GL"] = "egl"
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

MAX_FPS = 60  # a browser plays more, but frames beyond a screen's rate are only a larger file


class VideoError(RuntimeError):
    """A video cannot be made (the env does not render, the encoder is missing); one line with the fix."""


def record_video(policy, path, steps: int | None = None, seed: int | None = None,
                 deterministic: bool = True) -> Path:
    """Write the policy playing to path (.mp4); returns path. steps None: one game from reset(seed), at most
    env.max_episode_steps policy steps; steps N: exactly N policy steps, a new game (reset(seed + 1), ...)
    after each that ends. Frames come from env.render() after every reset and policy step (what the simulator
    shows; the learner's preprocessed frames may differ). Written under a temporary name and renamed, so a
    video is whole or absent."""
    writer_cls = _writer()
    path = Path(path)
    seed = default_seeds(policy.cfg, 1)[0] if seed is None else seed
    max_steps = steps or policy.cfg.env.max_episode_steps
    env = _render_env(policy)
    tmp = path.with_name(f".{path.stem}.tmp.mp4")
    try:
        obs, _ = env.reset(seed=seed)
        true_episode = find_true_episode(env)
        generator = torch.Generator().manual_seed(int(seed))
        first = _frame(env, policy)
        with writer_cls(tmp, fps=_fps(env, policy), codec="libx264", pixelformat="yuv420p", macro_block_size=2,
                        ffmpeg_params=["-movflags", "+faststart"], ffmpeg_log_level="error") as writer:
            writer.append_data(first)
            played, games = 0, 1
            while max_steps is None or played < max_steps:
                obs, _, terminated, truncated, _ = env.step(policy.act(obs, deterministic, generator))
                played += 1
                writer.append_data(_frame(env, policy))
                if not (terminated or truncated):
                    continue
                game_over = true_episode is None
                if not game_over:  # a lost life: the game goes on until TrueEpisode has its score
                    obs, _ = env.reset()
                    game_over = true_episode.take() is not None
                if game_over:
                    if steps is None or played >= max_steps:
                        break
                    obs, _ = env.reset(seed=seed + games)  # steps given: the next game follows
                    games += 1
                    writer.append_data(_frame(env, policy))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        env.close()
    return path


def _writer():
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401 (the ffmpeg binary imageio encodes with)
    except ImportError:
        raise VideoError("videos need imageio and imageio-ffmpeg: pip install -e '.[video]'") from None
    return lambda path, **kw: imageio.get_writer(path, format="FFMPEG", mode="I", **kw)


def _render_env(policy):
    env_id = policy.cfg.env.id
    try:
        env = policy.make_env(render_mode="rgb_array")
    except Exception as e:  # the env's constructor has no render_mode, or rendering needs a package
        raise VideoError(f"{env_id} cannot render frames (render_mode='rgb_array': {_line(e)}); "
                         "videos need an env that renders, so none was made") from None
    return env


def _frame(env, policy) -> np.ndarray:
    try:
        frame = env.render()
    except Exception as e:
        env.close()
        raise VideoError(f"{policy.cfg.env.id} cannot render frames ({type(e).__name__}: {_line(e)}); for MuJoCo "
                         "without a display set MUJOCO_GL=egl or osmesa") from None
    frame = np.asarray(frame) if frame is not None else None
    if frame is None or frame.ndim != 3 or frame.shape[2] not in (3, 4):
        env.close()
        raise VideoError(f"{policy.cfg.env.id} cannot render frames: render() returned "
                         f"{None if frame is None else frame.shape}, not an RGB image; no video was made")
    return np.ascontiguousarray(frame[..., :3], np.uint8)


def _fps(env, policy) -> int:
    """Real time where the env says its rate: render_fps frames per raw step, fewer per policy step."""
    raw_fps = env.metadata.get("render_fps") or 30
    per_policy_step = policy.cfg.env.action_repeat * policy.info.raw_steps_per_step
    return int(max(1, min(MAX_FPS, round(raw_fps / per_policy_step))))


def _line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:200] if text else type(e).__name__


class VideoRecorder:
    """A training callback: after an evaluation at or past each multiple of eval.video_every, and after the
    run's final one, a video of the policy just evaluated (policy.pt) as videos/<policy_step>.mp4. A failure is
    one line, and no more videos."""

    def __init__(self, cfg, run_dir, say=None):
        self.every, self.run_dir, self.total_steps = cfg.eval.video_every, Path(run_dir), cfg.total_steps
        self.deterministic = cfg.eval.deterministic
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.folder = self.run_dir / "videos"
        done = [int(p.stem) for p in self.folder.glob("*.mp4") if p.stem.isdigit()]
        self.last = max(done, default=0)  # a resumed run goes on from its latest video

    def __call__(self, counters: dict, metrics: dict) -> None:
        step = counters["policy_step"]
        final = step >= self.total_steps and step != self.last  # the final policy's video, for the report
        if "eval/return" not in metrics or not (crossed(self.last, step, self.every) or final) or not self.every:
            return
        self.last = step
        try:
            self.folder.mkdir(exist_ok=True)
            record_video(load(self.run_dir), self.folder / f"{step}.mp4", deterministic=self.deterministic)
        except Exception as e:  # a video is never worth a failed run
            self.every = 0
            self.say(f"videos: none from policy step {step} on ({_line(e)})")
