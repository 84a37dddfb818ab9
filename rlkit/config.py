"""Configuration: one YAML file per experiment -> one typed, validated `Config`.

Every key has a default here, so a params file only says what differs. Errors are
`ConfigError` with one line that names the key and the fix; the CLI prints it and exits 2.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration problem, described in one line that names the key and the fix."""


@dataclass
class EnvConfig:
    id: str = "CartPole-v1"  # anything gymnasium.make accepts, including "module:EnvName-v0"
    max_episode_steps: int | None = None  # policy steps; None -> the env's own limit / action_repeat
    action_repeat: int = 1  # simulator frames per policy step
    kwargs: dict = field(default_factory=dict)  # passed to gymnasium.make
    # gymnasium wrappers applied in order to every env (training and evaluation):
    # [{"type": "gymnasium.wrappers.FrameStackObservation", "kwargs": {"stack_size": 4}}, ...]
    wrappers: list = field(default_factory=list)
    frames_per_step: int | None = None  # simulator frames per env step; None: inferred (ALE frameskip, AtariPreprocessing)
    step_timeout: float = 300.0  # seconds one vector step or reset may take before the run fails; 0: no limit


@dataclass
class ParallelConfig:
    num_threads: int = 1  # T: worker threads (or processes for backend "process")
    envs_per_thread: int = 8  # E: environments each worker owns
    backend: str = "thread"  # thread | process
    one_core: bool | str = "auto"  # thread backend: its threads on one CPU core; auto: when the envs mostly wait
    # off-policy: a training thread runs each phase while the envs collect the next train_every steps
    # (rlkit/algos/offpolicy.py, "Overlap")
    overlap: bool = False


@dataclass
class EvalConfig:
    every: int = 10_000  # policy steps between evaluations; 0 disables
    episodes: int = 10
    # true: the greedy policy (mode of the action distribution); false: actions sampled from it, as in training.
    # A greedy policy can repeat one action forever where that action changes nothing (MiniGrid: walking
    # into a wall), scoring 0 while the sampled policy succeeds.
    deterministic: bool = True
    # policy steps between videos of an evaluation episode (videos/<policy_step>.mp4, rlkit/trained/video.py),
    # recorded at the first evaluation at or after each multiple; 0: none
    video_every: int = 0


@dataclass
class LogConfig:
    tensorboard: bool = False  # metrics.csv's rows also as TensorBoard event files in <run>/tensorboard, live


@dataclass
class AlgoConfig:
    # The original PPO parameter list: its names and defaults (docs/design.md, "Parameter names").
    has_continuous: bool | None = None  # inferred from the action space
    action_dim: int | None = None  # inferred: number of actions (discrete) or action size
    observ_dim: int | None = None  # inferred: flattened observation size
    action_scaling: float | None = None  # inferred for Box actions: half the (symmetric) range
    actor_lr: float = 0.001
    critic_lr: float = 0.0025
    k_epochs: int = 23
    policy_clip: float = 0.2
    GAE_lambda: float = 0.95
    gamma: float = 0.995
    batch_size: int = 1024  # transitions per training phase, per rank
    mini_batch_size: int = 512  # rows of each gradient step, for every algorithm
    buffer_size: int = 1_000_000  # off-policy algorithms (sac, dqn): the replay memory's capacity in transitions
    use_RND: bool = False
    beta: float | None = None  # weight of the RND intrinsic advantage (int_coef); null -> 1.0 with use_RND
    # RND (Burda et al., 2018); used only with use_RND. Defaults are the paper's unless noted.
    gamma_int: float = 0.99  # discount of the intrinsic return (non-episodic: never cut at episode ends)
    ext_coef: float = 2.0  # weight of the extrinsic advantage: A = ext_coef * A_ext + beta * A_int
    rnd_lr: float = 1e-4  # Adam lr of the predictor (the paper's, as for all its networks)
    update_proportion: float = 0.25  # fraction of each minibatch the predictor trains on (paper: 32 / 128 envs)
    rnd_hidden_sizes: list = field(default_factory=lambda: [64, 64])  # vector obs: target MLP; predictor adds 2 layers
    rnd_output_dim: int = 64  # feature size of target and predictor (paper: 512 for Atari's CNN)
    # Step-denominated hyper-parameters (docs/design.md, "Steps").
    per_rank_gradient_steps: int | None = None  # PPO: k_epochs * ceil(batch_size / mini_batch_size); SAC, DQN: 1
    per_rank_pretrain_steps: int | None = None  # the same, first training phase only
    # The usual PPO knobs.
    ent_coef: float = 0.0
    vf_coef: float = 0.5  # scales the critic loss (the critic has its own lr)
    max_grad_norm: float = 0.5
    norm_adv: bool = True  # per-minibatch advantage normalisation
    clip_vloss: bool = False
    anneal_lr: bool = False
    hidden_sizes: list = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"  # tanh | relu
    normalize_obs: bool = False  # running mean/std of observations for the policy
    normalize_reward: bool = False  # divide rewards by the std of the discounted return
    log_std_init: float = 0.0  # continuous actions: initial log std of the Gaussian
    name: str = "ppo"  # the algorithm: a name in rlkit.algos.base.AGENTS (ppo, a2c, sac, dqn) or an import path module:Class
    kwargs: dict = field(default_factory=dict)  # the algorithm's own keys (its Keys dataclass, e.g. rlkit.algos.a2c)
    # Parts in place of the built-in ones, each {type: "module:Name", kwargs: {...}} (rlkit.algos.parts):
    loss: dict | None = None  # called as type(algo, **kwargs) if a class, else used as is: the loss callable
    actor: dict | None = None  # type(obs_space, out_dim, **kwargs) -> nn.Module, the forward contract of rlkit.nn.networks
    critic: dict | None = None  # the same, out_dim = the value heads
    network: str = "auto"  # auto | mlp | cnn; auto: cnn for image-shaped Box observations (rlkit/nn/networks.py)
    cnn_layers: list | None = None  # [[channels, kernel, stride], ...]; null: Nature CNN from 36 px, 3x3 convs below
    cnn_features: int = 512  # the dense layer after the convs
    numpy_gradient: bool = True  # CPU, plain MLPs, the built-in loss: its gradient in numpy (rlkit/nn/numpy_mlp.py)


@dataclass
class Config:
    seed: int = 0
    device: str = "cpu"  # cpu | cuda | auto
    total_steps: int = 100_000  # policy steps
    learning_starts: int = 0  # policy steps of random actions before any training
    train_every: int | None = None  # policy steps between training phases; PPO: batch_size * W
    exploration_steps: int = 0  # RND only: policy steps optimising the intrinsic reward alone
    log_every: int = 2_048  # policy steps between training-metric rows (perf/sps, counters)
    checkpoint_every: int = 50_000  # policy steps between checkpoints; 0: only at the end
    torch_threads: int | None = 1  # torch's and numpy BLAS's threads: small MLPs run fastest on one; null keeps the defaults
    env: EnvConfig = field(default_factory=EnvConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def num_envs(self) -> int:
        """Environments on this rank: T threads x E envs each."""
        return self.parallel.num_threads * self.parallel.envs_per_thread


MAX_SEED = 2**32 - 1  # numpy's and gymnasium's seeds are unsigned 32-bit words; torch's are wider
# Bounds no run could reach: a value above them is a typo (1e30 for 1e3), and would train forever or
# step one env for hours. 10^12 policy steps is 11 days at a million steps per second, far past any run
# on one machine; raise MAX_STEPS here for a budget that is meant.
MAX_STEPS = 10**12
MAX_ACTION_REPEAT = 1_000  # simulator frames per policy step; the usual values are 1 to 8
# A params file expands to at most this many YAML nodes (its aliases expanded): a "billion laughs" file
# of a few lines would otherwise take gigabytes once copied, validated or written to config.yaml.
MAX_YAML_NODES = 100_000
SECTIONS = {"env": EnvConfig, "parallel": ParallelConfig, "algo": AlgoConfig, "eval": EvalConfig, "log": LogConfig}


# ---------------------------------------------------------------- loading

def load_config(source: str | Path | dict | Config, overrides: dict | list | None = None) -> Config:
    """Build a validated Config from a YAML path, a dict or a Config, then apply overrides.

    overrides: {"algo.batch_size": 64} or ["algo.batch_size=64", ...] (values parsed as YAML).
    """
    if isinstance(source, Config):
        raw = source.to_dict()
    elif isinstance(source, dict):
        raw = source
    else:
        raw = _read_yaml(Path(source))
    raw = _merge_overrides(raw, overrides)
    try:
        cfg = _build(Config, raw, prefix="")
        validate(cfg)
        # the algo keys the file sets: the algorithm's own defaults fill the others (rlkit.algos.base.check_config);
        # a Config passed in keeps its own record (None once resolved), plus the keys the overrides set
        given = frozenset(raw.get("algo") or {})
        if isinstance(source, Config):
            before = getattr(source.algo, "given", None)
            given = None if before is None else before | _merge_overrides({}, overrides).get("algo", {}).keys()
        cfg.algo.given = given
    except ConfigError as e:  # with several params files (rlkit run), say which one is wrong
        if isinstance(source, (str, Path)):
            raise ConfigError(f"{source}: {e}") from None
        raise
    return cfg


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with two fixes for hand-written params files.

    - Numbers in scientific notation without a dot or an exponent sign (`1e5`, `1.0e6`) are floats, as in
      YAML 1.2 and in every other tool; PyYAML's YAML 1.1 rules would read them as strings.
    - A key given twice in one mapping is an error naming the key and both lines; PyYAML keeps the last.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigError(f"duplicate key '{key}' at line {line} (first given at line {seen[key]}); "
                              "keep one of them")
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str):
    """YAML text -> Python values, with the kit's rules for numbers and duplicate keys, and at most
    MAX_YAML_NODES values once its aliases are expanded."""
    data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    _check_size(data)
    return data


def _check_size(data) -> None:
    """Count values as a copy would visit them (an alias counts each time it is used), stopping at the cap."""
    stack, count = [data], 0
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_YAML_NODES:
            raise ConfigError(f"the YAML expands to more than {MAX_YAML_NODES:,} values (aliases repeated inside "
                              "aliases?); a params file is far smaller: write the values out "
                              "(the limit is rlkit.config.MAX_YAML_NODES)")
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)


def _read_yaml(path: Path) -> dict:
    if path.is_dir():
        raise ConfigError(f"{path} is a directory, not a config file; give a params/*.yaml file "
                          "(or, for --resume, the run directory's config.yaml is used)")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (check the path; params files live in params/)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {e.start} cannot be decoded); "
                          "give a YAML params file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror}); check the path and its permissions") from None
    try:
        data = parse_yaml(text)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or getattr(e, "reason", None) or str(e)
        raise ConfigError(f"{path}: malformed YAML{where}: {' '.join(str(problem).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """'algo.batch_size=64' -> ('algo.batch_size', 64); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value, e.g. algo.batch_size=64")
    key, value = text.split("=", 1)
    try:
        return key.strip(), parse_yaml(value)
    except (yaml.YAMLError, ConfigError):
        raise ConfigError(f"override '{text}': the value is not valid YAML") from None


def _merge_overrides(raw: dict, overrides: dict | list | None) -> dict:
    raw = _deep_copy(raw)
    if not overrides:
        return raw
    items = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides)
    for key, value in items:
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(node.get(part, {}), dict):
                raise ConfigError(f"override '{key}': '{part}' is not a section")
            node = node.setdefault(part, {})
        node[leaf] = value
    return raw


def _deep_copy(d: dict) -> dict:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}


def _build(cls, raw: dict, prefix: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"'{prefix.rstrip('.')}' must be a mapping of keys, got {raw!r}")
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f"did you mean '{prefix}{close[0]}'?" if close else f"known keys: {', '.join(known)}"
            raise ConfigError(f"unknown key '{prefix}{key}': {hint}")
    values = {}
    for name, value in raw.items():
        ftype = typing.get_type_hints(cls)[name]
        if name in SECTIONS and cls is Config:
            values[name] = _build(SECTIONS[name], value or {}, prefix=f"{name}.")
        else:
            values[name] = _coerce(value, ftype, f"{prefix}{name}")
    return cls(**values)


build_section = _build  # a section's keys from a mapping, checked: an algorithm's own keys use it too


def _coerce(value: Any, ftype, key: str):
    """Check a value against its annotated type; ints are accepted where floats are expected."""
    options = typing.get_args(ftype) if isinstance(ftype, types.UnionType) else (ftype,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"'{key}' must not be empty (null); remove the key to use the default")
    for t in options:
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # .inf / .nan would train on and turn every loss into nan
                raise ConfigError(f"'{key}' must be a finite number, got {value}")
            return float(value)
        if t is int and isinstance(value, float) and value.is_integer():
            return int(value)  # 1e5 in YAML is a float; accept it where a count is expected
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t in (bool, str, dict, list) and isinstance(value, t):
            return value
    names = " or ".join(getattr(t, "__name__", str(t)) for t in options if t is not type(None))
    raise ConfigError(f"'{key}' must be {names}, got {value!r} ({type(value).__name__})")


# ---------------------------------------------------------------- validation

def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate(cfg: Config) -> None:
    """Range and consistency checks that need no environment."""
    a, p = cfg.algo, cfg.parallel
    _require(cfg.device in ("cpu", "cuda", "auto") or cfg.device.startswith("cuda:"),
             f"'device' must be cpu, cuda or auto, got '{cfg.device}'")
    _require(0 <= cfg.seed <= MAX_SEED, f"'seed' must be in [0, {MAX_SEED}], got {cfg.seed}")
    _require(cfg.torch_threads is None or cfg.torch_threads >= 1,
             f"'torch_threads' must be >= 1, got {cfg.torch_threads}; use null to keep torch's own default")
    _require(cfg.total_steps > 0, f"'total_steps' must be > 0, got {cfg.total_steps}")
    for key in ("learning_starts", "exploration_steps", "log_every", "checkpoint_every"):
        _require(getattr(cfg, key) >= 0, f"'{key}' must be >= 0, got {getattr(cfg, key)}")
    _require(cfg.eval.every >= 0, f"'eval.every' must be >= 0 (0 disables evaluation), got {cfg.eval.every}")
    _require(cfg.eval.video_every >= 0, f"'eval.video_every' must be >= 0 (0: no videos), got {cfg.eval.video_every}")
    _require(not (cfg.eval.video_every and not cfg.eval.every),
             "'eval.video_every' records evaluation episodes but eval.every is 0; set eval.every > 0 or video_every: 0")
    _require(cfg.eval.episodes >= 1, f"'eval.episodes' must be >= 1, got {cfg.eval.episodes}")
    _require(cfg.env.step_timeout >= 0,
             f"'env.step_timeout' must be >= 0 seconds (0: no limit), got {cfg.env.step_timeout}")
    _require(cfg.env.action_repeat >= 1, f"'env.action_repeat' must be >= 1, got {cfg.env.action_repeat}")
    _require(cfg.env.max_episode_steps is None or cfg.env.max_episode_steps >= 1,
             f"'env.max_episode_steps' must be >= 1, got {cfg.env.max_episode_steps}")
    _check_bounds(cfg)
    validate_env_section(cfg.env)
    _require(p.num_threads >= 1, f"'parallel.num_threads' must be >= 1, got {p.num_threads}")
    _require(p.envs_per_thread >= 1, f"'parallel.envs_per_thread' must be >= 1, got {p.envs_per_thread}")
    _require(p.backend in ("thread", "process"), f"'parallel.backend' must be thread or process, got '{p.backend}'")
    _require(p.one_core in (True, False, "auto"), f"'parallel.one_core' must be true, false or auto, got '{p.one_core}'")
    for key in ("actor_lr", "critic_lr"):
        _require(getattr(a, key) > 0, f"'algo.{key}' must be > 0, got {getattr(a, key)}")
    _require(a.k_epochs >= 1, f"'algo.k_epochs' must be >= 1, got {a.k_epochs}")
    _require(a.policy_clip > 0, f"'algo.policy_clip' must be > 0, got {a.policy_clip}")
    _require(0 <= a.GAE_lambda <= 1, f"'algo.GAE_lambda' must be in [0, 1], got {a.GAE_lambda}")
    _require(0 <= a.gamma < 1, f"'algo.gamma' must be in [0, 1), got {a.gamma}")
    _require(a.batch_size >= 1, f"'algo.batch_size' must be >= 1, got {a.batch_size}")
    _require(a.mini_batch_size >= 1, f"'algo.mini_batch_size' must be >= 1, got {a.mini_batch_size}")
    _require(a.buffer_size >= 1, f"'algo.buffer_size' must be >= 1, got {a.buffer_size}")
    for key in ("per_rank_gradient_steps", "per_rank_pretrain_steps"):
        v = getattr(a, key)
        _require(v is None or v >= 1, f"'algo.{key}' must be >= 1, got {v}")
    _require(a.max_grad_norm > 0, f"'algo.max_grad_norm' must be > 0, got {a.max_grad_norm}")
    _require(a.activation in ("tanh", "relu"), f"'algo.activation' must be tanh or relu, got '{a.activation}'")
    _require(a.network in ("auto", "mlp", "cnn"), f"'algo.network' must be auto, mlp or cnn, got '{a.network}'")
    _require(a.cnn_features >= 1, f"'algo.cnn_features' must be >= 1, got {a.cnn_features}")
    _require(a.cnn_layers is None or (len(a.cnn_layers) >= 1 and all(
        isinstance(layer, list) and len(layer) == 3 and all(isinstance(v, int) and v > 0 for v in layer)
        for layer in a.cnn_layers)),
        f"'algo.cnn_layers' must be a list of [channels, kernel, stride] of positive ints, got {a.cnn_layers}")
    _require(len(a.hidden_sizes) >= 1 and all(isinstance(h, int) and h > 0 for h in a.hidden_sizes),
             f"'algo.hidden_sizes' must be a list of positive ints, got {a.hidden_sizes}")
    _require(a.action_scaling is None or a.action_scaling > 0,
             f"'algo.action_scaling' must be > 0, got {a.action_scaling}")
    _require(not (cfg.exploration_steps > 0 and not a.use_RND),
             f"'exploration_steps' ({cfg.exploration_steps}) needs an intrinsic reward: set algo.use_RND: true "
             "or set exploration_steps: 0")
    _require(not (a.use_RND and a.beta is not None and a.beta < 0), f"'algo.beta' must be >= 0, got {a.beta}")
    _require(0 <= a.gamma_int < 1, f"'algo.gamma_int' must be in [0, 1), got {a.gamma_int}")
    _require(a.ext_coef >= 0, f"'algo.ext_coef' must be >= 0, got {a.ext_coef}")
    _require(a.rnd_lr > 0, f"'algo.rnd_lr' must be > 0, got {a.rnd_lr}")
    _require(0 < a.update_proportion <= 1, f"'algo.update_proportion' must be in (0, 1], got {a.update_proportion}")
    _require(len(a.rnd_hidden_sizes) >= 1 and all(isinstance(h, int) and h > 0 for h in a.rnd_hidden_sizes),
             f"'algo.rnd_hidden_sizes' must be a list of positive ints, got {a.rnd_hidden_sizes}")
    _require(a.rnd_output_dim >= 1, f"'algo.rnd_output_dim' must be >= 1, got {a.rnd_output_dim}")
    _require(isinstance(a.name, str) and a.name.strip() != "",
             "'algo.name' must be an algorithm's name (ppo, a2c) or an import path module:Class")
    for key in ("loss", "actor", "critic"):
        _check_part(f"algo.{key}", getattr(a, key))


def _check_part(key: str, spec) -> None:
    """The shape of a part named in the params file; importing it and checking its contract is the algorithm's."""
    if spec is None:
        return
    _require(isinstance(spec.get("type"), str) and ":" in spec["type"],
             f"'{key}' must be a mapping with 'type' (an import path module:Name) and optional 'kwargs', got {spec!r}")
    unknown = set(spec) - {"type", "kwargs"}
    _require(not unknown, f"'{key}' has unknown keys {sorted(unknown)}; a part takes only 'type' and 'kwargs'")
    _require(isinstance(spec.get("kwargs", {}), dict),
             f"'{key}': 'kwargs' must be a mapping of keyword arguments, got {spec.get('kwargs')!r}")


def _check_bounds(cfg: Config) -> None:
    """Values no run could reach (see MAX_STEPS): one line with the limit and where it is set."""
    counts = {"total_steps": cfg.total_steps, "learning_starts": cfg.learning_starts,
              "exploration_steps": cfg.exploration_steps, "log_every": cfg.log_every,
              "checkpoint_every": cfg.checkpoint_every, "eval.every": cfg.eval.every,
              "eval.episodes": cfg.eval.episodes, "env.max_episode_steps": cfg.env.max_episode_steps or 0}
    for key, value in counts.items():
        _require(value <= MAX_STEPS, f"'{key}' ({value:.3g}) is more than any run could reach (limit {MAX_STEPS:.0e} "
                                     "policy steps, rlkit.config.MAX_STEPS); did you mean a smaller power of ten?")
    _require(cfg.env.action_repeat <= MAX_ACTION_REPEAT,
             f"'env.action_repeat' ({cfg.env.action_repeat:.3g}) is more than {MAX_ACTION_REPEAT} simulator frames "
             "per policy step (rlkit.config.MAX_ACTION_REPEAT; the usual values are 1 to 8): lower it")


def validate_env_section(env: EnvConfig) -> None:
    """The shape of env.wrappers and env.frames_per_step; importing and applying the wrappers is rlkit.envs's job."""
    _require(env.frames_per_step is None or env.frames_per_step >= 1,
             f"'env.frames_per_step' must be >= 1 (or removed to infer it), got {env.frames_per_step}")
    for i, w in enumerate(env.wrappers):
        key = f"'env.wrappers[{i}]'"
        _require(isinstance(w, dict) and isinstance(w.get("type"), str) and "." in w["type"],
                 f"{key} must be a mapping with 'type' (the wrapper's import path, e.g. "
                 f"gymnasium.wrappers.FrameStackObservation) and optional 'kwargs', got {w!r}")
        unknown = set(w) - {"type", "kwargs"}
        _require(not unknown, f"{key} has unknown keys {sorted(unknown)}; a wrapper takes only 'type' and 'kwargs'")
        _require(isinstance(w.get("kwargs", {}), dict),
                 f"{key}: 'kwargs' must be a mapping of keyword arguments, got {w.get('kwargs')!r}")
