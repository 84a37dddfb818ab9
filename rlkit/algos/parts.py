"""Parts named in the params file: algo.loss, algo.actor and algo.critic, each {type: "module:Name", kwargs: {...}}.

Built and checked before a run starts (rlkit.algos.onpolicy.OnPolicyLearner.check_parts): a part that cannot
be imported, breaks its contract or returns the wrong shape is one ConfigError line naming its key. What
rlkit.train is given (loss=, actor=, critic=) wins over the params file.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from rlkit.algos.base import import_part
from rlkit.config import ConfigError
from rlkit.nn.networks import distribution, input_shape


def build_module(key: str, spec: dict, obs_space, out_dim: int) -> nn.Module:
    """algo.actor / algo.critic: type(obs_space, out_dim, **kwargs) -> an nn.Module returning [B, out_dim]."""
    factory = import_part(f"{key}.type", spec["type"], "a class or function returning an nn.Module")
    kwargs = spec.get("kwargs", {})
    try:
        module = factory(obs_space, out_dim, **kwargs)
    except Exception as e:
        raise ConfigError(f"'{key}': {spec['type']}(obs_space, {out_dim}, **{kwargs}) failed ({type(e).__name__}: "
                          f"{e}); it is called with the observation space, the outputs and {key}.kwargs") from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"'{key}': {spec['type']} returned {type(module).__name__}, not a torch nn.Module")
    try:
        with torch.no_grad():
            out = module(torch.zeros(2, *input_shape(obs_space)))
    except Exception as e:
        raise ConfigError(f"'{key}': {spec['type']} fails on a batch of 2 observations of shape "
                          f"{input_shape(obs_space)} ({type(e).__name__}: {e}); see rlkit.nn.networks for the "
                          "forward contract") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, out_dim):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"'{key}': {spec['type']} returns {shape} for 2 observations; it must return [B, {out_dim}] "
                          "(see rlkit.nn.networks for the forward contract)")
    return module


def build_loss(spec: dict, algo):
    """algo.loss: a class built as type(algo, **kwargs), or a callable (kwargs bound to it)."""
    obj = import_part("algo.loss.type", spec["type"], "a loss class or function")
    kwargs = spec.get("kwargs", {})
    if isinstance(obj, type):
        try:
            obj = obj(algo, **kwargs)
        except Exception as e:
            raise ConfigError(f"'algo.loss': {spec['type']}(algo, **{kwargs}) failed ({type(e).__name__}: {e}); "
                              "a loss class takes the algo section and algo.loss.kwargs") from None
    elif kwargs:
        obj = functools.partial(obj, **kwargs)
    if not callable(obj):
        raise ConfigError(f"'algo.loss': {spec['type']} is not callable; a loss is called as loss(actor, critic, "
                          "minibatch) -> (scalar loss, {name: value})")
    return obj


def config_parts(cfg, env_info, value_heads: int, given: dict | None = None) -> dict:
    """{"actor", "critic", "loss"}: what rlkit.train was given, else what the params file names, else None (the
    built-in one)."""
    a, given = cfg.algo, dict(given or {})
    parts = {}
    if given.get("actor") is None and a.actor is not None:
        dist, _ = distribution(env_info.action_space, a)
        parts["actor"] = build_module("algo.actor", a.actor, env_info.obs_space, dist.num_params)
    if given.get("critic") is None and a.critic is not None:
        parts["critic"] = build_module("algo.critic", a.critic, env_info.obs_space, value_heads)
    if given.get("loss") is None and a.loss is not None:
        parts["loss"] = build_loss(a.loss, a)
    return {**{k: given.get(k) for k in ("actor", "critic", "loss")}, **parts}


def check_loss(agent, obs_space) -> None:
    """One call of the agent's loss on two zero observations: a loss that breaks the contract fails here, named."""
    obs = torch.zeros(2, *input_shape(obs_space))
    with torch.no_grad():
        actions, logprobs = agent.actor.sample(obs, torch.Generator().manual_seed(0))
    heads = agent.critic.heads
    mb = {"obs": obs, "actions": actions, "logprobs": logprobs, "advantages": torch.tensor([1.0, -1.0]),
          "returns": torch.zeros(2, heads), "values": torch.zeros(2, heads)}
    try:
        out = agent.loss(agent.actor, agent.critic, mb)
    except Exception as e:
        raise ConfigError(f"'algo.loss' fails on a minibatch of 2 ({type(e).__name__}: {e}); a loss is called as "
                          "loss(actor, critic, minibatch) -> (scalar loss, {name: value})") from None
    ok = (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict) and isinstance(out[0], torch.Tensor)
          and out[0].dim() == 0 and out[0].requires_grad)
    if not ok:
        raise ConfigError(f"'algo.loss' returns {type(out).__name__}; it must return (a scalar tensor with a gradient, "
                          "{name: value}) (see rlkit.algos.ppo.PPOLoss)")
