"""The training loop: act, step the envs, let the learner train when it says so, log, evaluate, checkpoint —
in policy steps.

Reads top to bottom: `train()` prepares the run directory, `Trainer.__init__` builds the envs and the
learner (rlkit.algos.base.Learner: PPO's and A2C's is rlkit.algos.onpolicy), `Trainer.run()` is the loop.
Files, progress bars and notebooks stay out of the collection and update code (they live in rundir,
metrics and the callbacks).
"""
from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

import numpy as np
import threadpoolctl
import torch

from rlkit.algos.base import check_config, learner_class
from rlkit.config import Config, ConfigError, load_config
from rlkit.envs.make import Episodes, make_env, probe_env, resolve_env_fields
from rlkit.envs.vector import make_vector
from rlkit.loop.evaluate import Evaluator
from rlkit.loop.progress import ProgressBar
from rlkit.notices import note
from rlkit.loop.guards import Terminated, check_env_output, check_state, check_update, preflight, stop_on_sigterm
from rlkit.loop.phase_means import PhaseMeans
from rlkit.runs.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rlkit.runs.distributed import check_replicas, digest, gather_to_rank0, process_group, rank_seed
from rlkit.runs.metrics import MetricsWriter, count_rows
from rlkit.runs.policy_file import save_policy
from rlkit.runs.rundir import RunLock, default_run_dir, git_commit, prepare, versions, write_status
from rlkit.steps import StepCounter, crossed


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
        info = preflight(cfg, ranks.world_size, run_dir)
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
                interrupt = interrupt_behind(e)
                if rank0:
                    write_status(run_dir, state="failed", error=_describe(interrupt or e), **trainer.counters())
                if interrupt is not None:  # what the callers' Ctrl-C handling (CLI, notebook, tune) catches
                    raise interrupt from None
                raise
            finally:
                trainer.close()
        finally:
            if lock is not None:
                lock.release()
    return run_dir


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def interrupt_behind(e: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C behind `e`, if it is one that landed inside a numba-compiled call: numba's dispatcher then
    raises SystemError ("... returned a result with an exception set"), caused by a SystemError of its own,
    caused by the KeyboardInterrupt. None for anything else."""
    while isinstance(e, SystemError):
        e = e.__cause__ or e.__context__
    return e if isinstance(e, KeyboardInterrupt) else None


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
                              "is not a multiple of train_every, the rollout x ranks), so it cannot be extended "
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
    """The loop any Learner (rlkit.algos.base) plugs into: it steps the envs, counts the steps, and logs,
    evaluates and checkpoints at their policy steps; what is collected and when it trains is the learner's."""

    def __init__(self, cfg: Config, run_dir: Path, progress=True, callbacks=(), rank=0, world_size=1,
                 actor=None, critic=None, loss=None, env_info=None):
        self.cfg, self.run_dir, self.callbacks = cfg, Path(run_dir), list(callbacks)
        self.rank, self.world_size = rank, world_size
        self.device, self.rng, self.generator = _torch_setup(cfg, rank, world_size)

        info = env_info or probe_env(cfg.env)  # one env built, reset and stepped: the spaces; a bad env config fails here
        resolve_env_fields(cfg, info)  # the inferred algo fields (action_dim, observ_dim, ...)
        check_config(cfg, world_size)  # the algorithm's defaults and keys (a no-op after preflight)
        p, n = cfg.parallel, cfg.num_envs
        self.counter = StepCounter(world_size, p.num_threads, p.envs_per_thread, cfg.env.action_repeat,
                                   info.frames_per_step)
        self.envs, self.evaluator = _make_envs(cfg, info, rank)
        self.learner = learner_class(cfg.algo.name)(cfg, info, self.device, self.rng, self.generator,
                                                    world_size=world_size,
                                                    parts={"actor": actor, "critic": critic, "loss": loss},
                                                    run_dir=self.run_dir, rank=rank)
        self.obs = self.envs.reset()
        self.episodes = Episodes(n, info.true_returns)  # episode/return: the game's score (rlkit/envs/make.py)
        self.wall_offset = 0.0  # wall time of earlier sessions of a resumed run
        self.last = {"log": 0, "eval": 0, "checkpoint": 0}
        self.metrics = MetricsWriter(self.run_dir / "metrics.csv") if rank == 0 else None  # rank 0 writes
        self.progress = ProgressBar(cfg.total_steps) if progress else None  # a callback on the logged rows
        self.update_path = None  # the update's code path as last written to status.json
        # off-policy phases (every few policy steps) are averaged into the log_every rows (rlkit/loop/phase_means.py)
        self.phase_means = PhaseMeans() if getattr(self.learner, "average_phases", False) else None
        if world_size > 1:
            self._join_ranks()

    @property
    def agent(self):
        """The on-policy learner's agent (tools and tests inspect its networks)."""
        return self.learner.agent

    def _join_ranks(self) -> None:
        """Several ranks (data-parallel): one model, replicated (rlkit.runs.distributed.replicate)."""
        self.learner.replicate(self.world_size)

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        cfg, c, learner = self.cfg, self.counter, self.learner
        if self.rank == 0:
            write_status(self.run_dir, state="running", error=None, versions=versions(), git_commit=git_commit(),
                         world_size=self.world_size, **self.counters())
        self.record_update_path()
        self.start = time.perf_counter()
        self.sps_mark = (self.start, c.policy_step)
        while c.policy_step < cfg.total_steps:  # stops at the first iteration boundary at or past total_steps
            self.collect_iteration()
            if learner.ready(c):
                self.train_phase()
            if crossed(self.last["log"], c.policy_step, cfg.log_every):
                self.log_progress()
            if self.evaluator and crossed(self.last["eval"], c.policy_step, cfg.eval.every):
                self.evaluate()
            if learner.resumable() and crossed(self.last["checkpoint"], c.policy_step, cfg.checkpoint_every):
                self.save()
        self.settle()  # the last rows carry the final counters
        if self.evaluator and self.last["eval"] != c.policy_step:
            self.evaluate()
        self.log_progress()
        self.save()
        if self.rank == 0:
            write_status(self.run_dir, state="finished", error=None, **self.counters())

    def collect_iteration(self) -> None:
        """Every env takes one action: the learner chooses them in one batched call, then the vector steps."""
        c = self.counter
        actions = self.learner.act(self.obs, c)
        next_obs, rewards, terminated, truncated, final_obs = self.envs.step(actions)
        c.step_iteration()
        check_env_output(next_obs, rewards, c.policy_step)  # guard: a nan/inf from an env stops the run
        dones = terminated | truncated
        for episode in self.episodes.step(rewards, dones, self.envs.arrays["true_return"]):  # logged at the policy step the episode ends
            self.log(episode)
        self.learner.observe(next_obs, rewards, terminated, truncated, final_obs, c)
        self.obs = next_obs

    def train_phase(self) -> None:
        self.settle()
        start = time.perf_counter()
        self.count_phase(self.learner.train(self.counter), start)

    def settle(self) -> None:
        """A phase running on the learner's own thread (parallel.overlap) finishes, and is counted and logged."""
        settle = getattr(self.learner, "settle", None)  # optional: a learner whose phases all run in train() has none
        if settle is not None:
            self.count_phase(settle(), None)

    def count_phase(self, phase, start: float | None) -> None:
        if phase is None:  # none ran, or it runs on the learner's thread until settle()
            return
        c = self.counter
        # guard: nan/inf losses or weights stop the run
        check_update(phase.metrics, c.policy_step, self.learner.modules())
        c.step_gradient(phase.updates)
        c.step_update()
        self.record_update_path()
        # the phase's wall seconds: with perf/sps, how a run's time splits between collecting and learning
        seconds = phase.seconds if phase.seconds is not None else time.perf_counter() - start
        if self.phase_means is not None:
            self.phase_means.add({**phase.metrics, **phase.hook_metrics}, phase.updates, seconds)
            return
        self.log({**phase.metrics, "steps/replay_ratio": c.replay_ratio, "perf/update_seconds": seconds,
                  **phase.hook_metrics})

    # ------------------------------------------------------------------ helpers
    def record_update_path(self) -> None:
        """status.json says which code path trains (numpy or autograd, and why), whenever it changes."""
        path = getattr(self.learner, "update_path", None)
        if path != self.update_path and self.rank == 0:
            if self.update_path is None and path and path.startswith("autograd: ") and self.device.type == "cpu" \
                    and "numpy_gradient is false" not in path:  # a CPU fast path stepped aside: say why, once
                note(f"the update runs through {path}")
            self.update_path = path
            write_status(self.run_dir, update_path=path)

    def evaluate(self) -> None:
        self.settle()  # the policy evaluated is the one trained up to this policy step
        learner, draws = self.learner, None
        if not self.cfg.eval.deterministic:
            # a generator of its own, seeded by the policy step: the training stream is untouched and a resumed
            # run evaluates as the uninterrupted one did
            draws = torch.Generator(self.generator.device)
            draws.manual_seed(self.cfg.seed * 1_000_003 + self.counter.policy_step)
        self.save_policy()  # the file rlkit.load reads; a video of this evaluation is recorded from it
        self.log(self.evaluator.run(lambda obs: learner.policy(obs, draws), self.cfg.env.max_episode_steps))
        self.last["eval"] = self.counter.policy_step

    def log_progress(self) -> None:
        now, step = time.perf_counter(), self.counter.policy_step
        mark_time, mark_step = self.sps_mark
        # no steps since the last row (the run's last row, right after a logged one): no speed to measure, not 0
        speed = {"perf/sps": (step - mark_step) / max(now - mark_time, 1e-9)} if step > mark_step else {}
        self.sps_mark = (now, step)
        phases = self.phase_means.pop() if self.phase_means is not None else {}
        if phases:  # the phases since the last row, averaged, before the replay ratio as a phase's row has it
            seconds = phases.pop("perf/update_seconds")
            self.log({**phases, "steps/replay_ratio": self.counter.replay_ratio, "perf/update_seconds": seconds})
        self.log({**speed, "steps/iteration": self.counter.iteration, "steps/update": self.counter.update})
        self.last["log"] = step

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
        for callback in (*self.callbacks, *([self.progress] if self.progress else [])):
            callback(counters, metrics)

    # ------------------------------------------------------------------ checkpoint / resume
    def save(self) -> None:
        """Every rank calls this. With several ranks it first checks that the replicas are identical (raising on
        every rank if not) and gathers each rank's own state (envs, random streams, episodes) to rank 0, which
        alone writes the checkpoint: a resumed run continues every rank exactly."""
        self.settle()
        self.last["checkpoint"] = self.counter.policy_step  # before the state: a resumed run's next is the next one
        local = {  # what differs between ranks
            "rng": self.rng.bit_generator.state, "generator": self.generator.get_state(),
            "envs": self.envs.get_state(), "obs": self.obs.copy(),
            "episode_return": self.episodes.returns.copy(), "episode_length": self.episodes.lengths.copy(),
            **self.learner.local_state_dict(),
        }
        state = {**self.learner.state_dict(), **local, "last": dict(self.last)}
        if self.phase_means is not None:  # the phases not yet in a row: the resumed run writes the same rows
            state["phase_means"] = self.phase_means.state_dict()
        status = {}
        if self.world_size > 1:
            status["replica_sha256"] = replica_digest(state, self.cfg.algo.name)
            check_replicas(status["replica_sha256"])
            state["ranks"] = gather_to_rank0(local)
        if self.rank != 0:
            return
        state.update({"counter": self.counter.state_dict(), "last_return": self.episodes.last_return,
                      "wall_time": self.wall_time(), "metrics_rows": self.metrics.rows,
                      "memory_pos": 0 if self.learner.resumable() else 1})  # 1: taken mid-rollout (a run's last)
        check_state(state, self.counter.policy_step)  # guard: never replace a good checkpoint with nan weights
        save_checkpoint(self.run_dir / "checkpoint.pt", state)
        self.save_policy()
        write_status(self.run_dir, **self.counters(), **status)

    def save_policy(self) -> None:
        """policy.pt: the acting network's weights and the observation statistics only (rlkit/runs/policy_file.py), read
        without unpickling anything."""
        parts = getattr(self.learner, "policy_parts", lambda: None)()  # (actor, obs normaliser), if it has one
        if self.rank == 0 and parts is not None:
            save_policy(self.run_dir / "policy.pt", *parts, self.counter.policy_step, self.cfg.algo.name)

    def restore(self, state: dict) -> None:
        """Every rank restores the shared model, optimizer, normalisers and counters, and its own envs and
        random streams (a checkpoint of a W-rank run holds each rank's under "ranks")."""
        if state["memory_pos"] != 0:
            raise ValueError("checkpoint was taken mid-rollout; it cannot be resumed exactly")
        self.counter.load_state_dict(state["counter"])  # refuses another layout, world size included
        if self.world_size > 1:
            state = {**state, **state["ranks"][self.rank]}
        self.learner.load_state_dict(state)
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])
        if state["envs"] is not None:
            self.envs.set_state(state["envs"])
        self.obs[:] = state["obs"]
        self.episodes.returns[:], self.episodes.lengths[:] = state["episode_return"], state["episode_length"]
        self.episodes.last_return = state["last_return"]
        self.last, self.wall_offset = dict(state["last"]), state["wall_time"]
        if self.phase_means is not None and "phase_means" in state:
            self.phase_means.load_state_dict(state["phase_means"])
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = MetricsWriter(self.run_dir / "metrics.csv", keep_rows=state["metrics_rows"])

    def close(self) -> None:
        for part in (self.learner, self.envs, self.evaluator, self.metrics, self.progress):
            if getattr(part, "close", None) is not None:
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


def replica_digest(state: dict, algo_name: str = "ppo") -> str:
    """sha256 of what every rank of a run holds identically, from a checkpoint-format state (the learner says
    what that is: the model, the optimizers and the running statistics, not the envs or random streams)."""
    return digest(learner_class(algo_name).replicated(state))

