"""Export a loaded policy to one file that runs without rlkit or the env: observation -> deterministic action.

    export(policy, "policy.ts", "torchscript")   # torch.jit.load("policy.ts")(obs_batch) -> env actions
    export(policy, "policy.onnx", "onnx")         # onnxruntime, input "obs", output "action" (the onnx extra)

The file takes a batch of observations as the env built by `policy.make_env()` gives them (Dict, Discrete and
MultiBinary observations packed into one flat array; the layout travels in the file's metadata) and returns
the env's actions: the observation normaliser, the greedy action and the map to the env's action space are all
folded in. rlkit/trained/export's test checks it against `policy.act` on 1,000 observations of the env.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rlkit.nn.networks import ActionScaler, _Offset  # the maps to env actions whose arithmetic is folded in here

FORMATS = {"torchscript": ".ts", "onnx": ".onnx"}


class ExportError(RuntimeError):
    """An export that cannot be made (an unknown format, onnx not installed); one line with the fix."""


class DeterministicPolicy(nn.Module):
    """obs [B, *stored shape] -> env actions [B, ...], the same arithmetic as Policy.act in torch ops."""

    def __init__(self, policy):
        super().__init__()
        norm = policy.obs_norm
        self.normalize, self.clip = bool(norm.enabled), float(norm.clip)
        # ObsNormalizer's formula, in float64 as it computes: clip((obs - mean) / sqrt(var + 1e-8)), then float32
        self.register_buffer("mean", torch.as_tensor(norm.rms.mean, dtype=torch.float64).reshape(-1))
        self.register_buffer("std", torch.sqrt(torch.as_tensor(norm.rms.var, dtype=torch.float64) + 1e-8).reshape(-1))
        self.actor = copy.deepcopy(policy.actor).eval().requires_grad_(False)
        to_env = policy.to_env
        self.scale = isinstance(to_env, ActionScaler)
        self.register_buffer("low", torch.as_tensor(to_env.low if self.scale else np.zeros(1, np.float32)))
        self.register_buffer("half_range", torch.as_tensor(to_env.half_range if self.scale else np.zeros(1, np.float32)))
        offset = to_env.start if isinstance(to_env, _Offset) else np.zeros((), np.int64)
        self.register_buffer("offset", torch.as_tensor(offset, dtype=torch.int64))

    def forward(self, obs):
        x = obs
        if self.normalize:
            flat = obs.reshape(obs.shape[0], -1).double()
            x = ((flat - self.mean) / self.std).clamp(-self.clip, self.clip).float().reshape(obs.shape)
        action = self.actor.mode(x)
        if self.scale:  # ActionScaler: low + (clip(a, -1, 1) + 1) * half_range, in float32
            return (action.clamp(-1.0, 1.0) + 1.0) * self.half_range + self.low
        return action + self.offset if action.dtype == torch.int64 else action


def metadata(policy) -> dict:
    """What a user of the file needs to feed it: the input's shape and dtype, and a packed layout's parts."""
    meta = {"env_id": policy.cfg.env.id, "policy_step": policy.policy_step,
            "obs_shape": list(policy.info.obs_shape), "obs_dtype": np.dtype(policy.info.obs_dtype).name,
            "action_space": " ".join(str(policy.action_space).split())}
    if policy.layout is not None:
        meta["packed"] = [{"key": key, "space": " ".join(str(sub).split()), "start": start, "stop": stop}
                          for key, sub, start, stop in policy.layout.parts]
    return meta


def export(policy, path, fmt: str = "torchscript", example=None) -> Path:
    """Write the file; example: a batch of observations to trace with (default: from the env's resets)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format '{fmt}': choose one of {', '.join(FORMATS)}")
    path = Path(path)
    module = DeterministicPolicy(policy).eval()
    example = torch.as_tensor(example if example is not None else sample_observations(policy, 4))
    if fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(module, (example,), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={"rlkit.json": json.dumps(metadata(policy))})
    else:
        _onnx(module, example, path, metadata(policy))
    return path


def _onnx(module, example, path: Path, meta: dict) -> None:
    try:
        import onnx
    except ImportError:
        raise ExportError("--format onnx needs the onnx extra: pip install -e '.[onnx]'") from None
    with torch.no_grad():
        torch.onnx.export(module, (example,), str(path), input_names=["obs"], output_names=["action"],
                          dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}}, dynamo=False)
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"rlkit": json.dumps(meta)})
    onnx.save(model, str(path))


def sample_observations(policy, n: int, seed: int = 0) -> np.ndarray:
    """n observations [n, *stored shape] of the env as trained, from a random-action walk (the export's example
    input, and the test's 1,000 observations)."""
    env = policy.make_env()
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    out = []
    try:
        obs, _ = env.reset(seed=int(rng.integers(2**31)))
        while len(out) < n:
            out.append(np.asarray(obs))
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                obs, _ = env.reset(seed=int(rng.integers(2**31)))
    finally:
        env.close()
    return np.stack(out)
