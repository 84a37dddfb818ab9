"""policy.pt: what acting needs from a run, in a file that cannot run code when it is read.

checkpoint.pt is a pickle (numpy random states, envs pickled with cloudpickle): loading one runs whatever it
says, so it is for resuming your own runs only. policy.pt holds only tensors, numbers and strings, which
`torch.load(weights_only=True)` reads without unpickling arbitrary objects:

    {"format": "rlkit-policy", "version": 1, "rlkit": "0.2.0", "policy_step": N, "algo": "sac",
     "actor": {parameter name: tensor}, "obs_norm": {"enabled": bool, "clip": float, "mean": tensor, "var": tensor, "count": float}}

"algo" is the run's algo.name, and "actor" the weights of the network that acts: PPO's and A2C's actor, SAC's
squashed Gaussian actor, DQN's Q-network. rlkit.trained.policy rebuilds that network from the run's config.yaml
and the env's spaces by asking the learner of algo.name for it (acting_network, rlkit.algos.base.Learner), the
constructor training built it with. Off-policy runs have no observation normaliser: theirs is written disabled
(its mean 0 and var 1 unused). Files written before "algo" was recorded lack it (all from on-policy runs); the
config's algo.name is used. The trainer writes the file beside every checkpoint and before every
evaluation, atomically, on rank 0 only.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch

FORMAT = "rlkit-policy"
VERSION = 1


class PolicyFileError(ValueError):
    """policy.pt missing, foreign, from another version or not weights-only; the message is one line with the fix."""


def save_policy(path: Path, actor: torch.nn.Module, obs_norm, policy_step: int, algo: str) -> None:
    """Write the acting network's weights and the observation normaliser's statistics, tmp file then rename."""
    from rlkit import __version__

    state = {"format": FORMAT, "version": VERSION, "rlkit": __version__, "policy_step": int(policy_step),
             "algo": str(algo),
             "actor": {k: v.detach().cpu().clone() for k, v in actor.state_dict().items()},
             "obs_norm": {"enabled": bool(obs_norm.enabled), "clip": float(obs_norm.clip),
                          "mean": torch.from_numpy(np.array(obs_norm.rms.mean, np.float64)),
                          "var": torch.from_numpy(np.array(obs_norm.rms.var, np.float64)),
                          "count": float(obs_norm.rms.count)}}
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    tmp = path.with_suffix(".pt.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_policy(path: Path) -> dict:
    """The file's contents, read weights-only: a file that would need to unpickle an object is refused."""
    path = Path(path)
    if not path.is_file():
        raise PolicyFileError(f"{path}: no such policy file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for anything beyond tensors and plain containers, or a torn file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PolicyFileError(f"{path}: not a weights-only rlkit policy file ({type(e).__name__}: {first[:160]}); "
                              "it was not loaded. Retrain, or ask whoever sent the run for its policy.pt") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise PolicyFileError(f"{path}: not an rlkit policy file; give a run directory trained by rlkit")
    if state.get("version") != VERSION:
        raise PolicyFileError(f"{path}: policy file version {state.get('version')} (written by rlkit "
                              f"{state.get('rlkit')}); this rlkit reads version {VERSION}: use the rlkit that "
                              "trained the run")
    return state
