"""The off-policy learner: what every algorithm that learns from a replay memory shares (SAC, DQN).

It owns the replay memory (rlkit/data/replay.py) and the step semantics of docs/design.md, "Steps":
  - an iteration that starts below learning_starts acts randomly, and its transitions are stored;
  - after an iteration that brings policy_step to a multiple of train_every at or past learning_starts, one
    training phase runs: algo.per_rank_gradient_steps updates on every rank (the first phase
    algo.per_rank_pretrain_steps when set), each on algo.mini_batch_size transitions drawn from the memory;
  - train_every must be a multiple of the policy steps of one iteration (W x T x E); PPO's rollout rules do
    not apply.
A checkpoint may be taken after any iteration: the memory is part of it (algo.kwargs.checkpoint_replay), so a
resumed run continues exactly as an uninterrupted one. With algo.kwargs.replay_memory_map the memory's arrays are
files in <run_dir>/replay/rank<r>/ instead (rlkit/data/replay_map.py): the checkpoint holds their small state,
and an undo journal there keeps the resume exact.

Overlap (parallel.overlap: true). A phase runs on a training thread while the envs collect the next train_every
policy steps. torch's kernels run without the GIL, and so does an env that waits, so the two can share the
cores; where both run Python they take turns on the GIL instead (docs/algorithms.md has the measurements). The
counts stay exact: the loop waits for a phase to finish (`settle`) before it starts the next one, and before it
evaluates, checkpoints or ends, so the envs are never more than one phase ahead and the learner never ahead of them.
Three things keep the run deterministic, though not equal to the serial run: the envs act with a copy of the
acting network taken when the phase starts (`behaviour`: a policy one phase older than the serial loop's), with
random streams of their own, and the phase samples a view of the memory fixed when it starts that leaves out
the slots the envs write meanwhile (rlkit/data/replay.py, `view`). A phase is counted when it has finished.

Metrics: the phases' losses and statistics are averaged into the loop's log_every rows (`average_phases`,
rlkit/loop/phase_means.py), not a row per phase.

An algorithm is a subclass: its networks and optimizers (`build`, `optimizers`), the network that acts
(`acting_network`, which `build` and rlkit.load both call), how it explores (`explore`), one gradient step
(`one_gradient_step`, with its random draws from `random_draws`, every optimizer step through `optimize`, so
that algo.kwargs.compile can compile it), its greedy and sampled evaluation actions (`evaluate_actions`), and
its state.
"""
from __future__ import annotations

import copy
import functools
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rlkit.algos.base import Phase, algorithm_keys
from rlkit.config import ConfigError
from rlkit.data.normalize import ObsNormalizer
from rlkit.data.replay import ReplayMemory, nbytes, replay_arrays, replay_slots
from rlkit.data.replay_map import MappedReplayMemory, journal_bytes
from rlkit.notices import warn
from rlkit.runs.distributed import GradientAverager, broadcast_parameters
from rlkit.steps import make_schedule


@dataclass
class OffPolicyKeys:
    """algo.kwargs every off-policy algorithm has (its own Keys add to these)."""
    # the replay memory in the checkpoint, so a resume is exact; false: smaller checkpoints, and a resumed run
    # starts from an empty memory (not what the uninterrupted run would have done)
    checkpoint_replay: bool = True
    # the memory's arrays memory-mapped in files under <run_dir>/replay/, for memories larger than RAM: the
    # operating system pages them in and out; checkpoints stay small and a resume stays exact
    replay_memory_map: bool = False
    # the whole gradient step (losses, gradients, Adam, target average) compiled by torch.compile into one
    # program, from the same code: faster on the CPU, a compile of some seconds when the run starts, and
    # equal to the eager step up to float rounding (docs/algorithms.md, "A compiled gradient step")
    compile: bool = False
    # "bf16-mixed": the gradient step under torch.autocast to bfloat16 (its hidden layers' matmuls in bfloat16;
    # the output layers, the parameters, Adam and the losses' inputs in float32): about twice the matmul rate on
    # CPUs with bfloat16 instructions, at bfloat16's 3 significant digits in the hidden features
    # (docs/algorithms.md, "Mixed precision"); "32-true": float32 throughout
    precision: str = "32-true"

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ConfigError(f"'algo.kwargs.precision' must be one of {', '.join(PRECISIONS)}, got "
                              f"{self.precision!r}")


PRECISIONS = ("32-true", "bf16-mixed")


class OffPolicyLearner:
    """The Learner (rlkit.algos.base) of every replay-memory algorithm; subclasses are the algorithms."""

    Keys = OffPolicyKeys
    defaults: dict = {}
    train_iterations = 1  # train_every when the params file leaves it out: this many iterations
    gradient_steps = 1  # per_rank_gradient_steps when the params file leaves it out
    action_dtype = np.float32
    average_phases = True  # a phase every few policy steps: the loop averages them into its log_every rows

    # ------------------------------------------------------------------ checks before the run
    @classmethod
    def check_config(cls, cfg, world_size: int) -> int:
        a, p = cfg.algo, cfg.parallel
        name = a.name
        if a.use_RND:
            raise ConfigError(f"'algo.use_RND' is for the on-policy algorithms (ppo, a2c); {name} learns from a replay "
                              "memory and has no rollout for RND's intrinsic advantage: set algo.use_RND: false")
        for key in ("normalize_obs", "normalize_reward"):
            if getattr(a, key):
                raise ConfigError(f"'algo.{key}' is for the on-policy algorithms; {name} stores and learns from the raw "
                                  f"observations and rewards: set algo.{key}: false")
        for key in ("loss", "actor", "critic"):
            if getattr(a, key) is not None:
                raise ConfigError(f"'algo.{key}' replaces a part of an on-policy algorithm; {name} builds its own "
                                  f"networks from algo.hidden_sizes and algo.network: remove algo.{key}")
        per_iteration = world_size * cfg.num_envs
        train_every = cfg.train_every if cfg.train_every is not None else cls.train_iterations * per_iteration
        if train_every < 1 or train_every % per_iteration:
            lower = max(per_iteration, train_every // per_iteration * per_iteration)
            raise ConfigError(
                f"'train_every' ({train_every}) must be a multiple of the policy steps of one iteration, ranks x "
                f"parallel.num_threads x parallel.envs_per_thread ({world_size} x {p.num_threads} x "
                f"{p.envs_per_thread} = {per_iteration}); set it to {lower} or {lower + per_iteration}")
        if algorithm_keys(cfg).compile:
            check_compile(world_size)
        if p.overlap and world_size > 1:
            raise ConfigError("'parallel.overlap' runs on one rank only (its phases and the ranks' gradient averaging "
                              "are not ordered yet): set parallel.overlap: false, or run one rank")
        ahead = train_every // per_iteration if p.overlap else 0
        if p.overlap and a.buffer_size < 2 * (ahead + 1) * cfg.num_envs:
            raise ConfigError(f"'algo.buffer_size' ({a.buffer_size}) is too small for parallel.overlap: a phase "
                              f"samples while the envs write the next train_every steps ({train_every}); make it at least "
                              f"{2 * (ahead + 1) * cfg.num_envs}")
        if a.mini_batch_size > a.buffer_size:
            raise ConfigError(f"'algo.mini_batch_size' ({a.mini_batch_size}) must be <= 'algo.buffer_size' "
                              f"({a.buffer_size}): a gradient step samples its rows from the replay memory")
        return train_every

    @classmethod
    def check_parts(cls, cfg, env_info) -> None:
        cls.check_spaces(cfg, env_info)

    @classmethod
    def check_spaces(cls, cfg, env_info) -> None:
        """Refuse the action spaces this algorithm has no policy for (one line)."""

    @classmethod
    def replay_arrays(cls, cfg, env_info) -> dict:
        return replay_arrays(cfg.algo.buffer_size, cfg.num_envs, env_info.obs_shape, env_info.obs_dtype,
                             env_info.action_shape, cls.action_dtype, cfg.env.max_episode_steps)

    @classmethod
    def replay_bytes(cls, cfg, env_info) -> int:
        """The RAM the replay memory takes, for the memory check before the run (rlkit.loop.guards): none of its
        own when it is memory-mapped (the pages the OS caches are given back under pressure)."""
        return 0 if algorithm_keys(cfg).replay_memory_map else nbytes(cls.replay_arrays(cfg, env_info))

    @classmethod
    def replay_file_bytes(cls, cfg, env_info, world_size: int) -> int:
        """The disk a memory-mapped replay memory takes in the run directory, every rank's (0 in RAM)."""
        if not algorithm_keys(cfg).replay_memory_map:
            return 0
        arrays = cls.replay_arrays(cfg, env_info)
        # checkpoints at the end only: a run resumed to go further may journal its whole ring before the next
        journal = journal_bytes(arrays, journal_chunk(cfg, world_size)) if cfg.checkpoint_every else \
            journal_bytes(arrays, replay_slots(cfg.algo.buffer_size, cfg.num_envs), generations=1)
        return world_size * (nbytes(arrays) + journal)

    # ------------------------------------------------------------------ the learner
    def __init__(self, cfg, env_info, device, rng, generator, world_size: int = 1, parts=None, run_dir=None,
                 rank: int = 0):
        self.cfg, self.device, self.rng, self.generator = cfg, torch.device(device), rng, generator
        self.keys = algorithm_keys(cfg)
        train_every = self.check_config(cfg, world_size)
        self.check_spaces(cfg, env_info)
        self.schedule = make_schedule(cfg, train_every, 1, self.gradient_steps)
        self.overlap = cfg.parallel.overlap
        self.ahead = train_every // (world_size * cfg.num_envs) if self.overlap else 0  # slots written during a phase
        sizes = (cfg.algo.buffer_size, cfg.num_envs, env_info.obs_shape, env_info.action_shape, env_info.obs_dtype,
                 self.action_dtype, cfg.env.max_episode_steps)
        if not self.keys.replay_memory_map:
            self.memory = ReplayMemory(*sizes)
        elif run_dir is None:
            raise ConfigError("'algo.kwargs.replay_memory_map' keeps the replay memory in the run directory, and "
                              "this learner was built without one; train through rlkit.train or rlkit train")
        else:  # each rank its own files
            self.memory = MappedReplayMemory(*sizes, path=Path(run_dir) / "replay" / f"rank{rank}",
                                             chunk=journal_chunk(cfg, world_size))
        self.sync = {}  # several ranks: a gradient averager per optimizer (replicate)
        # policy.pt's normaliser: a disabled one (normalize_obs is refused above), so the file keeps the on-policy
        # runs' format and rlkit.load and export pass the observations through unchanged
        self.obs_norm = ObsNormalizer(env_info.obs_shape, enabled=False)
        self.build(env_info)
        self.gradient_step = self.compiled_gradient_step() if self.keys.compile else self.step_function()
        # status.json's and the run summary's word on what computes the gradients
        self.update_path = "compiled: torch.compile of the gradient step as written (algo.kwargs.compile)" \
            if self.keys.compile else "autograd"
        if self.keys.precision != "32-true":
            self.update_path += f", {self.keys.precision} (algo.kwargs.precision)"
        # what the envs act with: the learner's own network and streams, or (overlap) a copy and streams of their own
        self.act_rng, self.act_generator, self.behaviour = rng, generator, self.acting_module()
        self.pool, self.in_flight = None, None
        if self.overlap:
            self.act_rng = np.random.default_rng(rng.integers(2 ** 63))
            self.act_generator = torch.Generator(device=self.device).manual_seed(int(rng.integers(2 ** 63)))
            self.behaviour = copy.deepcopy(self.behaviour).requires_grad_(False)
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="rlkit-train")
        if not self.keys.checkpoint_replay:
            warn("'algo.kwargs.checkpoint_replay' is false: checkpoints leave the replay memory out, so a resumed "
                 "run starts from an empty memory and does not continue exactly as an uninterrupted one")
        self.actions = None

    @property
    def agent(self):
        return self  # the loop's `agent` (tools that inspect the networks): the learner is the algorithm

    def act(self, obs: np.ndarray, counter) -> np.ndarray:
        """Random actions below learning_starts, else the algorithm's exploration with `behaviour` and the act_*
        streams."""
        self.memory.set_obs(obs)
        if self.schedule.random_actions(counter):  # the iteration starts below learning_starts
            self.actions = self.random_actions(self.cfg.num_envs)
        else:
            self.actions = self.explore(obs, counter)
        return self.to_env(self.actions)

    def observe(self, next_obs, rewards, terminated, truncated, final_obs, counter) -> None:
        self.memory.add(self.actions, rewards, terminated, truncated, final_obs, next_obs)

    def ready(self, counter) -> bool:
        s = self.schedule
        return counter.policy_step >= s.learning_starts and counter.policy_step % s.train_every == 0

    def resumable(self) -> bool:
        return True  # after any iteration: the memory is in the checkpoint (or knowingly left out)

    def train(self, counter) -> Phase | None:
        """One phase: its Phase, or None when it runs on the training thread (overlap; `settle` returns it)."""
        n, extra = self.schedule.gradient_steps_for(counter), self.phase_metrics(counter)
        self.before_phase(counter)
        if not self.overlap:
            return self.run_phase(n, None, extra)
        with torch.no_grad():  # the envs act with this phase's starting weights until the next phase starts
            torch._foreach_copy_(list(self.behaviour.parameters()), list(self.acting_module().parameters()))
        self.in_flight = self.pool.submit(self.run_phase, n, self.memory.view(self.ahead), extra)
        return None

    def run_phase(self, n: int, view, extra: dict) -> Phase:
        start = time.perf_counter()
        stats = [self.update_step(self.sample(view)) for _ in range(n)]
        # the means of every metric from one [steps, metrics] tensor, turned into Python floats at once: a phase
        # runs every few policy steps, and a reduction and a conversion per metric added up
        names = list(stats[0])
        means = torch.stack([s[k] for s in stats for k in names]).float().view(n, len(names)).mean(0).tolist()
        return Phase(n, {**dict(zip(names, means)), **extra}, seconds=time.perf_counter() - start)

    def settle(self) -> Phase | None:
        """The phase on the training thread, once it has finished (its error raised here); None if none runs."""
        future, self.in_flight = self.in_flight, None
        return future.result() if future is not None else None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def sample(self, view=None) -> dict:
        """algo.mini_batch_size transitions as tensors on the device (view: the memory's part fixed for a phase)."""
        batch = self.memory.sample(self.cfg.algo.mini_batch_size, self.rng, self.cfg.algo.gamma, self.n_step, view)
        return {k: torch.from_numpy(v).to(self.device) for k, v in batch.items()}

    n_step = 1

    def before_phase(self, counter) -> None:
        """Once per phase, before its updates (DQN: the target network)."""

    def phase_metrics(self, counter) -> dict:
        """Metrics of the phase known when it starts (DQN: epsilon)."""
        return {}

    def policy(self, obs: np.ndarray, generator=None) -> np.ndarray:
        return self.to_env(self.evaluate_actions(obs, generator))

    def policy_parts(self):
        """policy.pt's (acting network, normaliser): rlkit.load rebuilds the network with the algorithm's classmethod
        acting_network (rlkit.algos.base.Learner), which build() made it with."""
        return self.acting_module(), self.obs_norm

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        return actions

    # ------------------------------------------------------------------ ranks
    def replicate(self, world_size: int) -> None:
        """Every rank starts from rank 0's weights and averages each optimizer's gradients over the ranks (each
        rank samples its own memory, so a gradient step learns from every rank's transitions)."""
        broadcast_parameters(*self.modules())
        for target, source in self.targets():  # built as copies before the broadcast: copies of rank 0's now
            polyak(target, source, 1.0)
        self.sync = {name: GradientAverager(params, world_size) for name, params in self.trained_parameters().items()}

    def synced(self, name: str) -> None:
        """After a backward, before clipping and the step: the mean gradient over the ranks."""
        if name in self.sync:
            self.sync[name]()

    # ------------------------------------------------------------------ the gradient step
    def update_step(self, batch: dict) -> dict:
        """One gradient step on a sampled batch; returns {metric: 0-dim tensor}. The step's random draws come
        from self.generator here, outside the step, so that the compiled step is a function of its inputs."""
        return self.gradient_step(batch, *self.random_draws(batch))

    def step_function(self):
        """one_gradient_step, under bfloat16 autocast with algo.kwargs.precision bf16-mixed."""
        if self.keys.precision == "32-true":
            return self.one_gradient_step
        return in_bf16(self.one_gradient_step, self.device.type)

    def random_draws(self, batch: dict) -> tuple:
        """The random tensors one gradient step uses (SAC: the actor's Gaussian noise), drawn in a fixed order."""
        return ()

    def optimize(self, name: str, loss: torch.Tensor, optimizer: torch.optim.Adam, max_grad_norm=None):
        """One step of `optimizer` on the gradient of `loss` for its parameters (only those: the gradients of other
        networks the loss went through are not computed); clipped to max_grad_norm when given, after the ranks'
        average. Returns the gradient's norm before clipping, or None."""
        params = optimizer.param_groups[0]["params"]
        for p, g in zip(params, torch.autograd.grad(loss, params)):
            p.grad = g
        self.synced(name)
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm) if max_grad_norm is not None else None
        adam_step(optimizer)
        return norm

    def compiled_gradient_step(self):
        """one_gradient_step compiled by torch.compile (algo.kwargs.compile): one program per run, traced from the
        same code, the gradients included (dynamo's trace_autograd_ops) and Adam through torch's functional form
        (adam_step), since Optimizer.step ends a compiled graph. The optimizers' state is created up front, as
        their first step would, so that the traced program sees it."""
        for optimizer in self.optimizers().values():
            init_adam_state(optimizer)
        # torch.compile keeps its programs on the function's code, one per learner it has seen (each guarded on
        # that learner's objects) and falls back to eager after a few: a new learner drops the old learners'
        # programs (a learner still running recompiles once), so a process can train one run after another
        step = self.step_function()
        for function in (type(self).one_gradient_step, step):  # the step's code, and its bf16 wrapper's
            torch._dynamo.eval_frame.remove_from_cache(function)
        compiled = torch.compile(step)

        def gradient_step(*args):
            with torch._dynamo.config.patch(trace_autograd_ops=True):
                return compiled(*args)
        return gradient_step

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"agent": self.agent_state()}

    def local_state_dict(self) -> dict:
        """The replay memory is this rank's own (its envs' transitions); with overlap, so are the envs' acting
        network and streams."""
        state = {"replay": self.memory.state_dict() if self.keys.checkpoint_replay else None}
        if self.overlap:
            state["acting"] = {"behaviour": self.behaviour.state_dict(), "rng": self.act_rng.bit_generator.state,
                               "generator": self.act_generator.get_state()}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.load_agent_state(state["agent"])
        if state.get("replay") is not None:
            self.memory.load_state_dict(state["replay"])
        if self.overlap:
            acting = state["acting"]
            self.behaviour.load_state_dict(acting["behaviour"])
            self.act_rng.bit_generator.state = acting["rng"]
            self.act_generator.set_state(acting["generator"])

    @staticmethod
    def replicated(state: dict) -> dict:
        return {"agent": state["agent"]}

    # ------------------------------------------------------------------ what an algorithm defines
    # Also the classmethod acting_network(cfg, env_info) (rlkit.algos.base.Learner), with which build() makes
    # acting_module: not defined here, so that rlkit.load can tell an algorithm that has none.
    def build(self, env_info) -> None:
        raise NotImplementedError

    def acting_module(self) -> torch.nn.Module:
        """The network explore() acts with (SAC: the actor, DQN: the Q-network), built by acting_network; its
        weights are policy.pt's."""
        raise NotImplementedError

    def random_actions(self, n: int) -> np.ndarray:
        """n random actions from act_rng."""
        raise NotImplementedError

    def explore(self, obs: np.ndarray, counter) -> np.ndarray:
        """Exploration actions from `behaviour` and the act_* streams."""
        raise NotImplementedError

    def one_gradient_step(self, batch: dict, *draws) -> dict:
        """One gradient step on a sampled batch and its random draws (random_draws); returns {metric: 0-dim
        tensor}. Every optimizer step goes through `optimize`, so that the step also runs compiled."""
        raise NotImplementedError

    def evaluate_actions(self, obs: np.ndarray, generator=None) -> np.ndarray:
        raise NotImplementedError

    def modules(self) -> list:
        """The trained networks (the loop checks them for nan after each phase; a target network is an average
        of one of them, so it is checked through it)."""
        raise NotImplementedError

    def targets(self) -> list:
        """(target network, the network it follows) pairs."""
        return []

    def optimizers(self) -> dict:
        """{name: optimizer} (the names `optimize` is called with)."""
        raise NotImplementedError

    def trained_parameters(self) -> dict:
        """{optimizer name: its parameters}."""
        return {name: opt.param_groups[0]["params"] for name, opt in self.optimizers().items()}

    def agent_state(self) -> dict:
        raise NotImplementedError

    def load_agent_state(self, state: dict) -> None:
        raise NotImplementedError


def journal_chunk(cfg, world_size: int) -> int:
    """Slots the undo journal of a memory-mapped replay memory copies at a time: one checkpoint interval (its
    iterations, and the two slots a step writes ahead), so one chunk per checkpoint usually."""
    if not cfg.checkpoint_every:  # a checkpoint at the end only: the journal grows only in a resumed run
        return 256
    return math.ceil(cfg.checkpoint_every / (world_size * cfg.num_envs)) + 2


def adam(params, lr: float) -> torch.optim.Adam:
    """torch's Adam, its fused kernel where torch has one for the device: one call per step for all the
    parameters (the updates are those of the loop over them)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


def in_bf16(step, device_type: str):
    """step under torch.autocast to bfloat16. Autocast's cache of the parameters' bfloat16 copies stays off: a
    cached copy would outlive the optimizer's in-place update, and a later loss in the same step (SAC's actor,
    on the critics just updated) would see the parameters before it."""
    @functools.wraps(step)
    def in_bf16_step(*args):
        with torch.autocast(device_type, dtype=torch.bfloat16, cache_enabled=False):
            return step(*args)
    return in_bf16_step


def check_compile(world_size: int) -> None:
    """algo.kwargs.compile's needs, before the run: one rank, and the C++ compiler torch.compile builds its
    kernels with (a missing one would otherwise fail at the first gradient step, in many lines)."""
    if world_size > 1:
        raise ConfigError("'algo.kwargs.compile' runs on one rank (the ranks' gradient averaging is not part of a "
                          "compiled step): set algo.kwargs.compile: false, or run one rank")
    from torch._inductor.cpp_builder import get_cpp_compiler
    try:
        get_cpp_compiler()
    except Exception as e:  # noqa: BLE001 -- inductor raises several kinds; any means no usable compiler
        raise ConfigError(f"'algo.kwargs.compile' needs a C++ compiler for torch.compile, and none was found "
                          f"({type(e).__name__}): install one (Debian: apt-get install g++; or set CXX), or set "
                          "algo.kwargs.compile: false") from None


def adam_step(optimizer: torch.optim.Adam) -> None:
    """optimizer.step() on its parameters' .grad; inside torch.compile, the same update through torch's functional
    Adam (torch.optim.adam.adam, its foreach form) on the optimizer's own state and settings, because
    Optimizer.step ends a compiled graph."""
    if not torch.compiler.is_compiling():
        optimizer.step()
        return
    from torch.optim.adam import adam as functional_adam
    group = optimizer.param_groups[0]
    params = group["params"]
    states = [optimizer.state[p] for p in params]
    with torch.no_grad():
        functional_adam(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                        [s["exp_avg_sq"] for s in states], [], [s["step"] for s in states], foreach=True,
                        capturable=True, amsgrad=group["amsgrad"], beta1=group["betas"][0], beta2=group["betas"][1],
                        lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"],
                        maximize=group["maximize"])


def init_adam_state(optimizer: torch.optim.Adam) -> None:
    """The state Adam creates at its first step (a step count of 0, zero moments), created now by Adam's own
    initialisation; the state of a loaded checkpoint replaces it as ever."""
    group = optimizer.param_groups[0]
    params = [p for p in group["params"] if p.grad is None]
    for p in params:  # Adam initialises the state of the parameters that have a gradient
        p.grad = torch.zeros_like(p)
    optimizer._init_group(group, [], [], [], [], [], [])
    for p in params:
        p.grad = None


def load_modules(modules: dict, state: dict) -> None:
    """Load each named module's weights; a checkpoint of other networks fails in one line."""
    try:
        for name, module in modules.items():
            module.load_state_dict(state[name])
    except RuntimeError as e:
        raise ValueError("the checkpoint's networks do not fit this run's (another network?): "
                         f"{str(e).splitlines()[0]}; start the run over (--force)") from None


@torch.no_grad()
def polyak(target, source, tau: float) -> None:
    """target <- tau source + (1 - tau) target (tau 1: a copy); modules, or their parameter lists (SAC calls it
    every gradient step: walking the modules for their parameters each time costs more than the lerp)."""
    t, s = [list(m.parameters()) if isinstance(m, torch.nn.Module) else m for m in (target, source)]
    if tau == 1.0:
        torch._foreach_copy_(t, s)
    else:
        torch._foreach_lerp_(t, s, tau)
