"""What a run's config asks for beside metrics.csv while it trains: live TensorBoard events (log.tensorboard)
and videos (eval.video_every). Both are training callbacks, fed the rows the trainer logs; `train` here is the
trainer's with them attached, and is what `rlkit.train`, `rlkit train` and train.ipynb call.
"""
from __future__ import annotations

from pathlib import Path

from rlkit.config import load_config
from rlkit.loop import trainer
from rlkit.runs.events import LiveEvents
from rlkit.runs.rundir import default_run_dir
from rlkit.trained.video import VideoRecorder


def training_callbacks(cfg, run_dir) -> list:
    """The callbacks cfg turns on, for rank 0's log rows (other ranks log none)."""
    run_dir = Path(run_dir)
    callbacks = []
    if cfg.log.tensorboard:
        callbacks.append(LiveEvents(run_dir / "tensorboard"))
    if cfg.eval.video_every:
        callbacks.append(VideoRecorder(cfg, run_dir))
    return callbacks


def train(config, run_dir=None, *, overrides=None, callbacks=(), **kwargs) -> Path:
    """rlkit.loop.trainer.train (same arguments and result), with the config's own callbacks added."""
    cfg = load_config(config, overrides)
    run_dir = Path(run_dir) if run_dir else default_run_dir(config, cfg.seed)
    own = training_callbacks(cfg, run_dir)
    try:
        return trainer.train(config, run_dir, overrides=overrides, callbacks=[*callbacks, *own], **kwargs)
    finally:
        for callback in own:
            if hasattr(callback, "close"):
                callback.close()
