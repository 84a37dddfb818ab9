"""The training loop: collect a rollout, train on it, log, evaluate, checkpoint — in policy steps.

Reads top to bottom: `train()` prepares the run directory, `Trainer.__init__` builds every
piece from the config, `Trainer.run()` is the loop. Files, progress bars and notebooks stay
out of the collection and update code (they live in rundir, metrics and the callbacks).
"""
from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

import numpy as np
import threadpoolctl
import torch

from rlkit.runs.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rlkit.config import Config, ConfigError, load_config
from rlkit.algos.base import HOOKS, agent_class, load, make_hooks
from rlkit.runs.distributed import check_replicas, digest, gather_to_rank0, process_group, rank_seed, replicate
from rlkit.envs.make import Episodes, make_env, probe_env, resolve_env_fields
from rlkit.loop.evaluate import Evaluator
from rlkit.loop.guards import Terminated, check_env_output, check_state, check_update, preflight, stop_on_sigterm
from rlkit.data.rollout import RolloutMemory
from rlkit.runs.metrics import MetricsWriter, count_rows
from rlkit.runs.policy_file import save_policy
from rlkit.data.normalize import ObsNormalizer, ReturnFilter
from rlkit.runs.rundir import RunLock, default_run_dir, git_commit, prepare, versions, write_status
from rlkit.steps import StepCounter, crossed, make_schedule
from rlkit.envs.vector import make_vector

VALUE_CHUNK = 4096  # rows per critic pass over a rollout: bounds the activations of a large CNN rollout


def train(config, run_dir=None, *, overrides=None, resume=False, force=False, progress=True, callbacks=(),
          actor=None, critic=None, loss=None) -> Path:
    """Train one run; returns its directory (config.yaml, metrics.csv, status.json, checkpoint.pt).

    actor, critic: your own nn.Modules in place of the networks algo.network builds (the forward contract
    is in rlkit.nn.networks); loss: your own PPO loss (rlkit.algos.ppo.PPOLoss says how). None: the built-in ones.

    Nothing in the run directory is touched before the config, the device, the env, its spaces and the
    network size have been checked (rlkit/loop/guards.py), so a bad command line never costs a run, --force
    included. Rank 0 then holds the directory's lock until the run ends (rlkit/runs/rundir.py), and a resume
    verifies the checkpoint and metrics.csv before it continues (rlkit/runs/checkpoint.py).

    Launched by torchrun (WORLD_SIZE > 1), every rank calls this: rank 0 alone decides about and writes the
    run directory (the others wait for its decision), logs, evaluates and calls the callbacks."""
    cfg = load_config(config, overrides)
    run_dir = Path(run_dir) if run_dir else default_run_dir(config, cfg.seed)
    with process_group(cfg.device) as ranks, stop_on_sigterm():
        resolve_device(cfg.device)
        info = preflight(cfg, ranks.world_size)
        rank0 = ranks.rank == 0
        lock = RunLock(run_dir) if rank0 else None
        ranks.on_rank0(lambda: lock.acquire())
        try:
            resuming = ranks.on_rank0(lambda: prepare(run_dir, resume, force, cfg.total_steps, say=_say))
            state = ranks.on_rank0(lambda: _resume_state(run_dir, cfg)) if resuming else None
            try:
                trainer = Trainer(cfg, run_dir, progress=progress and rank0, callbacks=callbacks, rank=ranks.rank,
                                  world_size=ranks.world_size, actor=actor, critic=critic, loss=loss, env_info=info)
            except BaseException as e:
                if rank0:
                    write_status(run_dir, state="failed", error=_describe(e))
                raise
            try:
                if trainer.evaluator is not None:  # evaluation envs hang like any others
                    trainer.evaluator.envs.step_timeout = cfg.env.step_timeout
                if state is not None:
                    envs_restored = _restore(trainer, state)
                    if rank0:
                        write_status(run_dir, envs_restored=envs_restored)
                if rank0:
                    (run_dir / "config.yaml").write_text(cfg.to_yaml())
                trainer.run()
            except BaseException as e:
                if rank0:
                    write_status(run_dir, state="failed", error=_describe(e), **trainer.counters())
                raise
            finally:
                trainer.close()
        finally:
            if lock is not None:
                lock.release()
    return run_dir


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _describe(e: BaseException) -> str:
    """status.json's error for an exception: what happened, and that the run can be resumed."""
    if isinstance(e, Terminated):
        return "terminated (SIGTERM); resume it with --resume, or re-run the batch"
    if isinstance(e, KeyboardInterrupt):
        return "interrupted (Ctrl-C); resume it with --resume, or re-run the batch"
    return f"{type(e).__name__}: {e}"


def _resume_state(run_dir: Path, cfg: Config) -> dict:
    """The checkpoint to resume from, once it and metrics.csv are known to be whole and to belong together."""
    _check_same_config(run_dir / "config.yaml", cfg)
    path = run_dir / "checkpoint.pt"
    state = load_checkpoint(path)  # CheckpointError names the file: truncated, changed, unreadable
    rows, covered = count_rows(run_dir / "metrics.csv"), state["metrics_rows"]
    if rows < covered:
        raise CheckpointError(f"{run_dir / 'metrics.csv'} has {rows} complete rows but {path.name} covers {covered}: "
                              "rows were lost and a resumed run would have a gap; restore metrics.csv from a backup, "
                              "or start over with --force")
    if state["memory_pos"] != 0:  # only a run's final checkpoint can end mid-rollout
        raise CheckpointError(f"{path} was written at the end of a run whose last rollout was partial (total_steps "
                              "is not a multiple of the rollout, algo.batch_size x ranks), so it cannot be extended "
                              "exactly; start a new run with the larger total_steps")
    return state


def _restore(trainer: "Trainer", state: dict) -> bool:
    """Restore the trainer; returns whether the envs themselves were restored (False: none were saved, as
    with the process backend or envs that cannot be pickled, and they continue from their re-seeded reset)."""
    local = state["ranks"][trainer.rank] if trainer.world_size > 1 else state
    restored = local["envs"] is not None
    if not restored:  # the checkpoint's observations belong to envs that no longer exist
        local.update(obs=trainer.obs.copy(), episode_return=np.zeros_like(trainer.episodes.returns),
                     episode_length=np.zeros_like(trainer.episodes.lengths))
    trainer.restore(state)
    return restored


def _check_same_config(path: Path, cfg: Config) -> None:
    """A resumed run must continue the same experiment; only total_steps may grow."""
    saved = load_config(path).to_dict()
    new = cfg.to_dict()
    saved["total_steps"] = new["total_steps"]
    diffs = [k for k in _flat(new) if _flat(saved).get(k) != _flat(new)[k]]
    if diffs:
        raise ConfigError(f"cannot resume {path.parent}: the configuration differs in {', '.join(diffs)}; "
                          "resume with the saved config.yaml (only total_steps may change), or start a new run "
                          "with --out or --force")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) and k != "kwargs" else {f"{prefix}{k}": v})
    return out


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"'device' is {name} but no CUDA device is available; set device: cpu or auto")
    return torch.device(name)


class Trainer:
    def __init__(self, cfg: Config, run_dir: Path, progress=True, callbacks=(), rank=0, world_size=1,
                 actor=None, critic=None, loss=None, env_info=None):
        self.cfg, self.run_dir, self.callbacks = cfg, Path(run_dir), list(callbacks)
        self.rank, self.world_size = rank, world_size
        self.device, self.rng, self.generator = _torch_setup(cfg, rank, world_size)

        info = env_info or probe_env(cfg.env)  # one env built, reset and stepped: the spaces; a bad env config fails here
        obs_space, action_space = info.obs_space, info.action_space
        resolve_env_fields(cfg, info)  # the inferred algo fields (action_dim, observ_dim, ...)

        p, n = cfg.parallel, cfg.num_envs
        self.counter = StepCounter(world_size, p.num_threads, p.envs_per_thread, cfg.env.action_repeat,
                                   info.frames_per_step)
        self.schedule = make_schedule(cfg, world_size)
        self.envs, self.evaluator = _make_envs(cfg, info, rank)
        self.obs_norm = ObsNormalizer(info.obs_shape, enabled=cfg.algo.normalize_obs)
        self.reward_filter = ReturnFilter(n, cfg.algo.gamma) if cfg.algo.normalize_reward else None

        # the parts: hooks (RND) ride along the rollout; the agent acts and learns
        self.hooks = make_hooks(cfg, info, n, self.device, self.schedule.train_every)
        heads = 1 + sum(hook.value_heads for hook in self.hooks)
        self.agent = agent_class(cfg.algo.name)(cfg.algo, obs_space, action_space, self.device, value_heads=heads,
                                                actor=actor, critic=critic, loss=loss)
        action_shape = info.action_shape
        self.memory = RolloutMemory(self.schedule.rollout_len, n, info.obs_shape, action_shape, obs_dtype=info.obs_dtype)
        for hook in self.hooks:
            hook.attach(self.agent, self.memory)

        self.obs = self.envs.reset()
        self.episodes = Episodes(n, info.true_returns)  # episode/return: the game's score (rlkit/envs/make.py)
        self.wall_offset = 0.0  # wall time of earlier sessions of a resumed run
        self.last = {"log": 0, "eval": 0, "checkpoint": 0}
        self.metrics = MetricsWriter(self.run_dir / "metrics.csv") if rank == 0 else None  # rank 0 writes
        self.progress = _progress_bar(cfg.total_steps) if progress else None
        if world_size > 1:
            self._join_ranks()

    def modules(self) -> list:
        """Every network of the run: the agent's and its hooks'."""
        return [*self.agent.modules(), *(m for hook in self.hooks for m in hook.modules())]

    def _join_ranks(self) -> None:
        """Several ranks (data-parallel): one model, replicated (rlkit.runs.distributed.replicate)."""
        stats = [self.obs_norm.rms] + ([self.reward_filter.rms] if self.reward_filter else [])
        replicate(self.world_size, self.agent, self.hooks, stats)

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        cfg, c, schedule = self.cfg, self.counter, self.schedule
        if self.rank == 0:
            write_status(self.run_dir, state="running", error=None, versions=versions(), git_commit=git_commit(),
                         world_size=self.world_size, **self.counters())
        self.start = time.perf_counter()
        self.sps_mark = (self.start, c.policy_step)
        while not schedule.done(c):
            self.collect_iteration()
            if self.memory.full:
                self.train_phase()
            if crossed(self.last["log"], c.policy_step, cfg.log_every):
                self.log_progress()
            if self.evaluator and crossed(self.last["eval"], c.policy_step, cfg.eval.every):
                self.evaluate()
            # checkpoints only between rollouts, when the memory holds nothing half-collected
            if self.memory.pos == 0 and crossed(self.last["checkpoint"], c.policy_step, cfg.checkpoint_every):
                self.save()
        # the last rows carry the final counters
        if self.evaluator and self.last["eval"] != c.policy_step:
            self.evaluate()
        self.log_progress()
        self.save()
        if self.rank == 0:
            write_status(self.run_dir, state="finished", error=None, **self.counters())

    def collect_iteration(self) -> None:
        """Every env takes one action: a batched forward for all of them, then the vector step."""
        c, mem, agent = self.counter, self.memory, self.agent
        random_phase = self.schedule.random_actions(c)
        if random_phase:  # learning_starts: random actions warm up the normalisers; the steps count
            actions = agent.random_actions(self.cfg.num_envs, self.rng)
        else:  # normalised straight into the memory (a copy: the vector overwrites its obs buffer in step())
            actions, logprobs = agent.act(self.obs_norm(self.obs, out=mem.obs[mem.pos]), self.generator)
        next_obs, rewards, terminated, truncated, final_obs = self.envs.step(agent.env_actions(actions))
        c.step_iteration()
        check_env_output(next_obs, rewards, c.policy_step)  # guard: a nan/inf from an env stops the run
        dones = terminated | truncated
        for episode in self.episodes.step(rewards, dones, self.envs.arrays["true_return"]):  # logged at the policy step the episode ends
            self.log(episode)
        self.obs_norm.update(next_obs)
        for hook in self.hooks:
            hook.on_step(mem, next_obs, final_obs, dones, warmup=random_phase)
        if not random_phase:
            t = mem.pos
            mem.actions[t], mem.logprobs[t] = actions, logprobs
            if self.reward_filter:
                self.reward_filter(rewards, dones, out=mem.rewards[t])
            else:
                mem.rewards[t] = rewards
            mem.dones[t], mem.truncated[t] = dones, truncated
            mem.final_values[t] = 0.0
            if np.count_nonzero(truncated):  # time limit: bootstrap from the true last observation
                mem.final_values[t, truncated] = agent.value(self.obs_norm(final_obs[truncated]))[:, 0]
            mem.pos += 1
        self.obs = next_obs

    def train_phase(self) -> None:
        c, cfg, mem = self.counter, self.cfg, self.memory
        start = time.perf_counter()
        # V(s_t) of every stored observation in one batched pass rather than one small pass per step: the weights
        # do not change during a rollout, so these are the values at collection
        values = self.rollout_values()  # [T, N, heads]
        last_values = self.agent.value(self.obs_norm(self.obs))  # [N, heads]
        mem.values[:] = values[..., 0]
        mem.compute_returns(last_values[:, 0], cfg.algo.gamma, cfg.algo.GAE_lambda)
        batch = mem.batch(self.device)
        batch["returns"], batch["values"] = batch["returns"][:, None], batch["values"][:, None]  # [N, heads]
        extra_losses, hook_stats = [], {}
        for hook in self.hooks:
            losses, stats = hook.extend_batch(batch, mem, values, last_values, c)
            extra_losses += losses
            hook_stats.update(stats)
        if cfg.algo.anneal_lr:
            self.agent.set_lr_fraction(max(0.0, 1.0 - c.policy_step / cfg.total_steps))
        n_updates = self.schedule.gradient_steps_for(c)
        stats = self.agent.update(batch, n_updates, self.rng, extra_losses)
        check_update(stats, c.policy_step, self.modules())  # guard: nan/inf losses or weights stop the run
        c.step_gradient(n_updates)
        c.step_update()
        mem.pos = 0
        stats["steps/replay_ratio"] = c.replay_ratio
        # the phase's wall seconds, GAE to the last Adam step: with perf/sps, how a run's time splits between
        # collecting and learning
        stats["perf/update_seconds"] = time.perf_counter() - start
        self.log({**stats, **hook_stats})

    def rollout_values(self) -> np.ndarray:
        """[T, N, heads]: the critic on the rollout's stored observations, in chunks of VALUE_CHUNK rows."""
        mem = self.memory
        obs = mem.obs.reshape(mem.rollout_len * mem.num_envs, *mem.obs.shape[2:])
        values = np.concatenate([self.agent.value(obs[i:i + VALUE_CHUNK]) for i in range(0, len(obs), VALUE_CHUNK)])
        return values.reshape(mem.rollout_len, mem.num_envs, -1)

    # ------------------------------------------------------------------ helpers
    def evaluate(self) -> None:
        agent, norm = self.agent, self.obs_norm
        if self.cfg.eval.deterministic:
            def act(obs):
                return agent.env_actions(agent.deterministic_action(norm(obs)))
        else:
            # a generator of its own, seeded by the policy step: the training stream is untouched and a resumed
            # run evaluates as the uninterrupted one did
            draws = torch.Generator(self.generator.device)
            draws.manual_seed(self.cfg.seed * 1_000_003 + self.counter.policy_step)

            def act(obs):
                return agent.env_actions(agent.act(norm(obs), draws)[0])

        save_policy(self.run_dir / "policy.pt", agent.actor, norm, self.counter.policy_step)  # what rlkit.load reads
        self.log(self.evaluator.run(act, self.cfg.env.max_episode_steps))
        self.last["eval"] = self.counter.policy_step

    def log_progress(self) -> None:
        now, step = time.perf_counter(), self.counter.policy_step
        mark_time, mark_step = self.sps_mark
        sps = (step - mark_step) / max(now - mark_time, 1e-9)
        self.sps_mark = (now, step)
        self.log({"perf/sps": sps, "steps/iteration": self.counter.iteration, "steps/update": self.counter.update})
        self.last["log"] = step
        if self.progress is not None:
            self.progress.update(step - self.progress.n)
            self.progress.set_postfix(sps=f"{sps:,.0f}", ret=f"{self.episodes.last_return:.1f}", refresh=False)

    def wall_time(self) -> float:
        return self.wall_offset + time.perf_counter() - self.start

    def counters(self) -> dict:
        c = getattr(self, "counter", None)
        return {**c.as_row(), "wall_time": round(self.wall_time(), 3)} if c and hasattr(self, "start") else {}

    def log(self, metrics: dict) -> None:
        if self.metrics is None:  # ranks other than 0 log nothing (episode metrics are rank 0's episodes)
            return
        counters = self.counters()
        self.metrics.log(counters, counters["wall_time"], metrics)
        for callback in self.callbacks:
            callback(counters, metrics)

    # ------------------------------------------------------------------ checkpoint / resume
    def save(self) -> None:
        """Every rank calls this. With several ranks it first checks that the replicas are identical (raising on
        every rank if not) and gathers each rank's own state (envs, random streams, episodes) to rank 0, which
        alone writes the checkpoint: a resumed run continues every rank exactly."""
        local = {  # what differs between ranks
            "rng": self.rng.bit_generator.state, "generator": self.generator.get_state(),
            "envs": self.envs.get_state(), "obs": self.obs.copy(),
            "episode_return": self.episodes.returns.copy(), "episode_length": self.episodes.lengths.copy(),
            "reward_filter": self.reward_filter.state_dict() if self.reward_filter else None,
            **dict.fromkeys(HOOKS), **{hook.name: hook.state_dict() for hook in self.hooks},
        }
        state = {"agent": self.agent.state_dict(), "obs_norm": self.obs_norm.state_dict(), **local,
                 "last": dict(self.last)}
        status = {}
        if self.world_size > 1:
            status["replica_sha256"] = replica_digest(state)
            check_replicas(status["replica_sha256"])
            state["ranks"] = gather_to_rank0(local)
        self.last["checkpoint"] = self.counter.policy_step
        if self.rank != 0:
            return
        state.update({"counter": self.counter.state_dict(), "last_return": self.episodes.last_return,
                      "wall_time": self.wall_time(), "metrics_rows": self.metrics.rows, "memory_pos": self.memory.pos})
        check_state(state, self.counter.policy_step)  # guard: never replace a good checkpoint with nan weights
        save_checkpoint(self.run_dir / "checkpoint.pt", state)
        save_policy(self.run_dir / "policy.pt", self.agent.actor, self.obs_norm, self.counter.policy_step)
        write_status(self.run_dir, **self.counters(), **status)

    def restore(self, state: dict) -> None:
        """Every rank restores the shared model, optimizer, normalisers and counters, and its own envs and
        random streams (a checkpoint of a W-rank run holds each rank's under "ranks")."""
        if state["memory_pos"] != 0:
            raise ValueError("checkpoint was taken mid-rollout; it cannot be resumed exactly")
        self.counter.load_state_dict(state["counter"])  # refuses another layout, world size included
        if self.world_size > 1:
            state = {**state, **state["ranks"][self.rank]}
        self.agent.load_state_dict(state["agent"])
        self.obs_norm.load_state_dict(state["obs_norm"])
        for name, part in [("reward_filter", self.reward_filter), *((hook.name, hook) for hook in self.hooks)]:
            if part is not None:
                part.load_state_dict(state[name])
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])
        if state["envs"] is not None:
            self.envs.set_state(state["envs"])
        self.obs[:] = state["obs"]
        self.episodes.returns[:], self.episodes.lengths[:] = state["episode_return"], state["episode_length"]
        self.episodes.last_return = state["last_return"]
        self.last, self.wall_offset = dict(state["last"]), state["wall_time"]
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = MetricsWriter(self.run_dir / "metrics.csv", keep_rows=state["metrics_rows"])
        if self.progress is not None:
            self.progress.update(self.counter.policy_step)

    def close(self) -> None:
        for part in (self.envs, self.evaluator, self.metrics, self.progress):
            if part is not None:
                part.close()


def _torch_setup(cfg: Config, rank: int, world_size: int):
    """(device, numpy rng, torch generator): threads, initial-weight seed and this rank's random streams."""
    device = resolve_device(cfg.device)
    if world_size > 1 and device.type == "cuda":  # rank r on cuda:LOCAL_RANK (rlkit.runs.distributed)
        device = torch.device("cuda", torch.cuda.current_device())
    if cfg.torch_threads:  # torch's intra-op threads and numpy's BLAS threads (rlkit/nn/numpy_mlp.py) alike
        torch.set_num_threads(cfg.torch_threads)
        threadpoolctl.threadpool_limits(cfg.torch_threads, user_api="blas")
    torch.manual_seed(cfg.seed)  # initial weights; with several ranks rank 0's are broadcast anyway
    seed = rank_seed(cfg.seed, rank)  # each rank its own random streams; rank 0's are those of a one-rank run
    rng = np.random.default_rng(seed)  # minibatch shuffles, random warm-up actions
    return device, rng, torch.Generator(device=device).manual_seed(seed)  # the generator: action sampling


def _make_envs(cfg: Config, info, rank: int):
    """(this rank's vector of T x E envs, the evaluator on rank 0 or None)."""
    p, n = cfg.parallel, cfg.num_envs
    env_fn = functools.partial(make_env, cfg.env)
    seeds = [cfg.seed * 100_003 + rank * n + i for i in range(n)]  # ranks and envs seeded apart
    # auto keeps torch's and BLAS's threads off one core: threads created later inherit the caller's core
    one_core = p.one_core if p.one_core != "auto" or cfg.torch_threads == 1 else False
    envs = make_vector(p.backend, [env_fn] * n, seeds, info.obs_shape, not info.has_continuous, p.num_threads, one_core,
                       cfg.env.step_timeout, info.obs_dtype)
    evaluator = Evaluator(env_fn, cfg.eval.episodes, 2**30 + cfg.seed * 1_000, info.obs_shape, not info.has_continuous,
                          info.obs_dtype, info.true_returns) if cfg.eval.every > 0 and rank == 0 else None
    return envs, evaluator


def replica_digest(state: dict) -> str:
    """sha256 of what every rank of a run holds identically, from a checkpoint-format state: the model, the
    optimizers and the running statistics (not the envs, random streams or per-env returns, which differ)."""
    shared = {"agent": state["agent"], "obs_norm": state["obs_norm"]}
    if state["reward_filter"] is not None:
        shared["reward_filter"] = state["reward_filter"]["rms"]
    for name, entry in HOOKS.items():
        if state.get(name) is not None:
            shared[name] = load(entry).replicated(state[name])
    return digest(shared)


def _progress_bar(total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", desc="policy steps", dynamic_ncols=True)
