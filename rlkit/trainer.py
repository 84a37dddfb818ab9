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

from rlkit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rlkit.config import Config, ConfigError, load_config
from rlkit.distributed import (GradientAverager, broadcast_parameters, check_replicas, digest, gather_to_rank0,
                               merge_moments, process_group, rank_seed)
from rlkit.envs import inspect_env, make_env, resolve_env_fields
from rlkit.evaluate import Evaluator
from rlkit.guards import Terminated, check_env_output, check_state, check_update, preflight, stop_on_sigterm
from rlkit.memory import RolloutMemory
from rlkit.metrics import MetricsWriter, count_rows
from rlkit.normalize import ObsNormalizer, ReturnFilter
from rlkit.policies import ActionScaler
from rlkit.ppo import PPO
from rlkit.rnd import MEMORY_FIELDS, RND, PredictorLoss, true_next_obs, two_head_gae
from rlkit.rundir import RunLock, default_run_dir, git_commit, prepare, versions, write_status
from rlkit.steps import StepCounter, crossed, make_schedule
from rlkit.vector import make_vector


def train(config, run_dir=None, *, overrides=None, resume=False, force=False, progress=True, callbacks=()) -> Path:
    """Train one run; returns its directory (config.yaml, metrics.csv, status.json, checkpoint.pt).

    Nothing in the run directory is touched before the config, the device, the env, its spaces and the
    network size have been checked (rlkit/guards.py), so a bad command line never costs a run, --force
    included. Rank 0 then holds the directory's lock until the run ends (rlkit/rundir.py), and a resume
    verifies the checkpoint and metrics.csv before it continues (rlkit/checkpoint.py).

    Launched by torchrun (WORLD_SIZE > 1), every rank calls this: rank 0 alone decides about and writes the
    run directory (the others wait for its decision), logs, evaluates and calls the callbacks."""
    cfg = load_config(config, overrides)
    run_dir = Path(run_dir) if run_dir else default_run_dir(config, cfg.seed)
    with process_group(cfg.device) as ranks, stop_on_sigterm():
        resolve_device(cfg.device)
        preflight(cfg, ranks.world_size)
        rank0 = ranks.rank == 0
        lock = RunLock(run_dir) if rank0 else None
        ranks.on_rank0(lambda: lock.acquire())
        try:
            resuming = ranks.on_rank0(lambda: prepare(run_dir, resume, force, cfg.total_steps, say=_say))
            state = ranks.on_rank0(lambda: _resume_state(run_dir, cfg)) if resuming else None
            try:
                trainer = Trainer(cfg, run_dir, progress=progress and rank0, callbacks=callbacks,
                                  rank=ranks.rank, world_size=ranks.world_size)
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
        local.update(obs=trainer.obs.copy(), episode_return=np.zeros_like(trainer.episode_return),
                     episode_length=np.zeros_like(trainer.episode_length))
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
    def __init__(self, cfg: Config, run_dir: Path, progress=True, callbacks=(), rank=0, world_size=1):
        self.cfg, self.run_dir, self.callbacks = cfg, Path(run_dir), list(callbacks)
        self.rank, self.world_size = rank, world_size
        self.device = resolve_device(cfg.device)
        if world_size > 1 and self.device.type == "cuda":  # rank r on cuda:LOCAL_RANK (rlkit.distributed)
            self.device = torch.device("cuda", torch.cuda.current_device())
        if cfg.torch_threads:  # torch's intra-op threads and numpy's BLAS threads (rlkit/fused.py's products) alike
            torch.set_num_threads(cfg.torch_threads)
            threadpoolctl.threadpool_limits(cfg.torch_threads, user_api="blas")
        torch.manual_seed(cfg.seed)  # initial weights; with several ranks rank 0's are broadcast anyway
        seed = rank_seed(cfg.seed, rank)  # each rank its own random streams; rank 0's are those of a one-rank run
        self.rng = np.random.default_rng(seed)  # minibatch shuffles, random warm-up actions
        self.generator = torch.Generator(device=self.device).manual_seed(seed)  # action sampling

        # Spaces -> the seed's inferred parameters (has_continuous, action_dim, observ_dim, action_scaling)
        probe = make_env(cfg.env)
        self.info = info = inspect_env(probe)
        probe.close()
        resolve_env_fields(cfg, info)

        p = cfg.parallel
        self.counter = StepCounter(world_size, p.num_threads, p.envs_per_thread, cfg.env.action_repeat)
        self.schedule = make_schedule(cfg, world_size)
        env_fn = functools.partial(make_env, cfg.env)
        n = cfg.num_envs
        seeds = [cfg.seed * 100_003 + rank * n + i for i in range(n)]  # ranks and envs seeded apart
        # auto keeps torch's and BLAS's threads off one core: threads created later inherit the caller's core
        one_core = p.one_core if p.one_core != "auto" or cfg.torch_threads == 1 else False
        self.envs = make_vector(p.backend, [env_fn] * n, seeds, info.obs_shape, not info.has_continuous,
                                p.num_threads, one_core, step_timeout=cfg.env.step_timeout)  # guard: hung envs
        self.evaluator = Evaluator(env_fn, cfg.eval.episodes, 2**30 + cfg.seed * 1_000, info.obs_shape,
                                   not info.has_continuous) if cfg.eval.every > 0 and rank == 0 else None
        self.scale_actions = ActionScaler(info.action_low, info.action_high) if info.has_continuous else None

        self.obs_norm = ObsNormalizer(info.obs_shape, enabled=cfg.algo.normalize_obs)
        self.reward_filter = ReturnFilter(n, cfg.algo.gamma) if cfg.algo.normalize_reward else None
        use_rnd = cfg.algo.use_RND
        self.agent = PPO(cfg.algo, info.observ_dim, self.device, value_heads=2 if use_rnd else 1)
        # RND: None when off, so plain PPO pays one `is None` test per iteration and nothing else
        self.rnd = RND(info.obs_shape, cfg.algo, n, self.device) if use_rnd else None
        if use_rnd:
            self.agent.add_param_group(self.rnd.predictor.parameters(), cfg.algo.rnd_lr)
        action_shape = (info.action_dim,) if info.has_continuous else ()
        self.memory = RolloutMemory(self.schedule.rollout_len, n, info.obs_shape, action_shape,
                                    extra_fields=MEMORY_FIELDS if use_rnd else ())
        if use_rnd:  # raw s_{t+1}: the intrinsic reward and the predictor's data, computed once per rollout
            self.memory.extra["next_obs"] = np.zeros((self.schedule.rollout_len, n, *info.obs_shape), np.float32)

        self.obs = self.envs.reset()
        self.episode_return = np.zeros(n)
        self.episode_length = np.zeros(n, np.int64)
        self.wall_offset = 0.0  # wall time of earlier sessions of a resumed run
        self.last = {"log": 0, "eval": 0, "checkpoint": 0}
        self.metrics = MetricsWriter(self.run_dir / "metrics.csv") if rank == 0 else None  # rank 0 writes
        self.progress = _progress_bar(cfg.total_steps) if progress else None
        self.last_return = float("nan")
        if world_size > 1:
            self._join_ranks()

    def _join_ranks(self) -> None:
        """Several ranks (data-parallel): one model, replicated. Every rank starts from rank 0's weights and
        applies the same update, its gradients averaged over the ranks before clipping and the step.

        Running statistics (observation normalisers, the reward filters' return std) are updated with the
        moments of every rank's batch, so all ranks normalise identically: the policy sees the same input
        scaling on every rank, the statistics are those one process with all W*T*E envs would compute, and
        the one normaliser in the checkpoint is right for every rank. The price is one small all-gather per
        statistic update (per iteration; RND's per rollout), and only when that normaliser is on (plain PPO has none)."""
        W, nets = self.world_size, [self.agent.actor, self.agent.critic]
        if self.rnd is not None:  # the predictor trains in the agent's Adam step: its gradients are averaged with theirs
            nets.append(self.rnd.predictor)
        broadcast_parameters(*nets, *([self.rnd.target] if self.rnd else []))
        self.agent.average_gradients = GradientAverager([p for net in nets for p in net.parameters()], W)
        stats = [self.obs_norm.rms] + ([self.reward_filter.rms] if self.reward_filter else [])
        if self.rnd is not None:
            stats += [self.rnd.obs_norm.rms, self.rnd.return_filter.rms]
        for rms in stats:
            rms.sync = merge_moments

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
        c, mem = self.counter, self.memory
        obs_in = self.obs_norm(self.obs)
        random_phase = self.schedule.random_actions(c)
        if random_phase:  # learning_starts: random actions warm up the normalisers; the steps count
            actions = self._random_actions()
        else:
            actions, logprobs, values = self.agent.act(obs_in, self.generator)
            mem.obs[mem.pos] = obs_in  # copied now: the vector overwrites its obs buffer in step()
        env_actions = self.scale_actions(actions) if self.scale_actions else actions
        next_obs, rewards, terminated, truncated, final_obs = self.envs.step(env_actions)
        c.step_iteration()
        check_env_output(next_obs, rewards, c.policy_step)  # guard: a nan/inf from an env stops the run
        dones = terminated | truncated
        self._track_episodes(rewards, dones)
        self.obs_norm.update(next_obs)
        if self.rnd is not None:  # the RND normaliser warms up in the random phase too; -> extrinsic values
            values = self._rnd_collect(next_obs, final_obs, dones, None if random_phase else values)
        if not random_phase:
            t = mem.pos
            mem.actions[t], mem.logprobs[t], mem.values[t] = actions, logprobs, values
            mem.rewards[t] = self.reward_filter(rewards, dones) if self.reward_filter else rewards
            mem.dones[t], mem.truncated[t] = dones, truncated
            mem.final_values[t] = 0.0
            if truncated.any():  # time limit: bootstrap from the true last observation
                final_values = self.agent.value(self.obs_norm(final_obs[truncated]))
                mem.final_values[t, truncated] = final_values if self.rnd is None else final_values[:, 0]
            mem.pos += 1
        self.obs = next_obs

    def train_phase(self) -> None:
        c, cfg, mem = self.counter, self.cfg, self.memory
        last_values = self.agent.value(self.obs_norm(self.obs))
        if self.rnd is None:
            mem.compute_returns(last_values, cfg.algo.gamma, cfg.algo.GAE_lambda)
            batch, aux, rnd_stats = mem.batch(self.device), None, {}
        else:
            batch, aux, rnd_stats = self._rnd_batch(last_values)
        if cfg.algo.anneal_lr:
            self.agent.set_lr_fraction(max(0.0, 1.0 - c.policy_step / cfg.total_steps))
        n_updates = self.schedule.gradient_steps_for(c)
        stats = self.agent.update(batch, n_updates, self.rng, aux)
        check_update(stats, c.policy_step, self.agent, self.rnd)  # guard: nan/inf losses or weights stop the run
        c.step_gradient(n_updates)
        c.step_update()
        mem.pos = 0
        stats["steps/replay_ratio"] = c.replay_ratio
        self.log({**stats, **rnd_stats})

    # ------------------------------------------------------------------ RND (Burda et al., 2018; rlkit/rnd.py)
    def _rnd_collect(self, next_obs, final_obs, dones, values):
        """Keep s_{t+1} for the intrinsic reward (computed per rollout in _rnd_batch) and the intrinsic value;
        in the random warm-up phase (values None) feed s_{t+1} to the RND normaliser. Returns the extrinsic values."""
        s_next = true_next_obs(next_obs, final_obs, dones)
        if values is None:
            self.rnd.obs_norm.update(s_next)
            return None
        self.memory.extra["next_obs"][self.memory.pos] = s_next
        self.memory.extra["int_values"][self.memory.pos] = values[:, 1]
        return values[:, 0]

    def exploring(self) -> bool:
        """The phase at this policy step optimises the intrinsic reward alone: its whole rollout lies within
        the first exploration_steps policy steps."""
        return self.counter.policy_step <= self.cfg.exploration_steps

    def _rnd_batch(self, last_values):
        """Two GAE passes, the combined advantage, the predictor's data and the phase's RND metrics."""
        cfg, a, c, mem, x = self.cfg, self.cfg.algo, self.counter, self.memory, self.memory.extra
        x["int_rewards_raw"], x["int_rewards"] = self.rnd.intrinsic_rewards(x["next_obs"])
        two_head_gae(mem, last_values, a.gamma, a.gamma_int, a.GAE_lambda)
        exploring = self.exploring()
        int_coef = 1.0 if a.beta is None else a.beta
        if exploring:  # intrinsic reward alone; its weight is 1 so that beta 0 ("explore, then task only") explores
            advantages = x["int_advantages"]
        else:
            advantages = a.ext_coef * mem.advantages + int_coef * x["int_advantages"]

        def flat(array):
            return torch.as_tensor(array.reshape(-1, *array.shape[2:]), device=self.device)

        batch = mem.batch(self.device, fields=("obs", "actions", "logprobs"))
        batch["advantages"] = flat(advantages)
        batch["returns"] = flat(np.stack([mem.returns, x["int_returns"]], -1))
        batch["values"] = flat(np.stack([mem.values, x["int_values"]], -1))
        rnd_obs = flat(self.rnd.obs_norm(x["next_obs"]))  # the predictor learns on this rollout's s_{t+1}
        rnd_targets = self.rnd.target_features(rnd_obs)
        aux = PredictorLoss(self.rnd, rnd_obs, rnd_targets)  # the predictor trains in PPO's minibatch steps
        stats = {"rnd/exploring": float(exploring),
                 "rnd/intrinsic_reward": x["int_rewards_raw"].mean(), "rnd/intrinsic_reward_norm": x["int_rewards"].mean(),
                 "value/extrinsic": mem.values.mean(), "value/intrinsic": x["int_values"].mean(),
                 "return/extrinsic": mem.returns.mean(), "return/intrinsic": x["int_returns"].mean(),
                 **self.rnd.stats()}
        # the first phase after the switch (phases are train_every apart; update 0 has no earlier phase)
        previous = c.policy_step - self.schedule.train_every
        if cfg.exploration_steps > 0 and not exploring and (c.update == 0 or previous <= cfg.exploration_steps):
            stats["rnd/phase_switch"] = 1.0
        return batch, aux, stats

    # ------------------------------------------------------------------ helpers
    def _random_actions(self) -> np.ndarray:
        n, info = self.cfg.num_envs, self.info
        if info.has_continuous:
            return self.rng.uniform(-1, 1, (n, info.action_dim)).astype(np.float32)
        return self.rng.integers(0, info.action_dim, n)

    def _track_episodes(self, rewards, dones) -> None:
        self.episode_return += rewards
        self.episode_length += 1
        if dones.any():
            for i in np.flatnonzero(dones):  # logged at the policy step the episode ends
                self.last_return = float(self.episode_return[i])
                self.log({"episode/return": self.episode_return[i], "episode/length": self.episode_length[i]})
            self.episode_return[dones] = 0.0
            self.episode_length[dones] = 0

    def evaluate(self) -> None:
        def greedy(obs):
            actions = self.agent.deterministic_action(self.obs_norm(obs))
            return self.scale_actions(actions) if self.scale_actions else actions

        self.log(self.evaluator.run(greedy, self.cfg.env.max_episode_steps))
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
            self.progress.set_postfix(sps=f"{sps:,.0f}", ret=f"{self.last_return:.1f}", refresh=False)

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
        """Every rank calls this. With several ranks it first checks that the replicas are identical (weights,
        optimizers, normaliser statistics; raising on every rank if not) and gathers each rank's own state (envs, random streams, episode
        bookkeeping) to rank 0, which alone writes the checkpoint: a resumed run continues every rank exactly."""
        local = {  # what differs between ranks
            "rng": self.rng.bit_generator.state, "generator": self.generator.get_state(),
            "envs": self.envs.get_state(), "obs": self.obs.copy(),
            "episode_return": self.episode_return.copy(), "episode_length": self.episode_length.copy(),
            "reward_filter": self.reward_filter.state_dict() if self.reward_filter else None,
            "rnd": self.rnd.state_dict() if self.rnd else None,
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
        state.update({"counter": self.counter.state_dict(), "last_return": self.last_return,
                      "wall_time": self.wall_time(), "metrics_rows": self.metrics.rows, "memory_pos": self.memory.pos})
        check_state(state, self.counter.policy_step)  # guard: never replace a good checkpoint with nan weights
        save_checkpoint(self.run_dir / "checkpoint.pt", state)
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
        if self.reward_filter:
            self.reward_filter.load_state_dict(state["reward_filter"])
        if self.rnd:
            self.rnd.load_state_dict(state["rnd"])
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])
        if state["envs"] is not None:
            self.envs.set_state(state["envs"])
        self.obs[:] = state["obs"]
        self.episode_return[:], self.episode_length[:] = state["episode_return"], state["episode_length"]
        self.last, self.last_return, self.wall_offset = dict(state["last"]), state["last_return"], state["wall_time"]
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = MetricsWriter(self.run_dir / "metrics.csv", keep_rows=state["metrics_rows"])
        if self.progress is not None:
            self.progress.update(self.counter.policy_step)

    def close(self) -> None:
        self.envs.close()
        if self.evaluator:
            self.evaluator.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.progress is not None:
            self.progress.close()


def replica_digest(state: dict) -> str:
    """sha256 of what every rank of a run holds identically, from a checkpoint-format state: the model, the
    optimizers and the running statistics (not the envs, random streams or per-env returns, which differ)."""
    shared = {"agent": state["agent"], "obs_norm": state["obs_norm"]}
    if state["reward_filter"] is not None:
        shared["reward_filter"] = state["reward_filter"]["rms"]
    if state["rnd"] is not None:
        rnd = state["rnd"]
        shared["rnd"] = {**{k: rnd[k] for k in ("target", "predictor", "obs_norm")},  # its Adam state is in "agent"
                         "return_filter": rnd["return_filter"]["rms"]}
    return digest(shared)


def _progress_bar(total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", desc="policy steps", dynamic_ncols=True)
