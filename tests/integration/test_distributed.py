"""Two ranks under torchrun (gloo on CPU): exact counters, one writer, identical replicas, a failing rank, exact resume.

Each test launches `python -m torch.distributed.run --standalone --nproc-per-node 2 ...` as a subprocess
(--standalone: torchrun picks a free port itself, so parallel test runs do not collide).
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import learned_rows
from rlkit.runs.checkpoint import load_checkpoint
from rlkit.runs.metrics import read_metrics
from rlkit.loop.trainer import replica_digest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
W, T, E = 2, 1, 2
BATCH, GRADIENT_STEPS = 64, 2 * 2  # per rank: k_epochs 2 x (64 / 32) minibatches
TINY = {"total_steps": 1024, "parallel.num_threads": T, "parallel.envs_per_thread": E, "algo.batch_size": BATCH,
        "algo.mini_batch_size": 32, "algo.k_epochs": 2, "eval.every": 0, "log_every": 128, "checkpoint_every": 256}
SETS = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]


def torchrun(*args, timeout=120):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(W),
                           *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def patched_cli(path, patch: str) -> str:
    """A script that patches the trainer, then runs `rlkit ...` with its arguments (to make one rank misbehave)."""
    path.write_text("import sys\nimport torch\nfrom rlkit.cli import main\nfrom rlkit.loop.trainer import Trainer\n"
                    + patch + "\nsys.exit(main(sys.argv[1:]))\n")
    return str(path)


def _status(run_dir):
    return json.loads((run_dir / "status.json").read_text())


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ddp") / "full"
    out = torchrun("-m", "rlkit", "train", "params/cartpole.yaml", "--out", str(run), "--no-progress", *SETS)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("run finished") == 1  # rank 0 alone prints
    return run


def test_two_ranks_counters_files_and_identical_replicas(full_run):
    run = full_run
    assert sorted(os.listdir(run)) == ["checkpoint.pt", "config.yaml", "metrics.csv", "policy.pt", "status.json"]
    text = (run / "metrics.csv").read_text()
    assert text.count("policy_step,env_step") == 1  # one header: one writer
    df = read_metrics(run / "metrics.csv")
    assert (df.policy_step % (W * T * E) == 0).all() and df.policy_step.is_monotonic_increasing
    iterations = df[df.metric == "steps/iteration"]
    assert (iterations.policy_step == W * T * E * iterations.value).all()  # policy_step += W*T*E per iteration
    # a rollout is batch_size x W = 128 policy steps; each rank makes 4 updates per phase -> gradient_step += 2*4
    losses = df[df.metric == "loss/policy"][["policy_step", "gradient_step"]].values.tolist()
    assert losses == [[128 * k, W * GRADIENT_STEPS * k] for k in range(1, 9)]  # once each: rank 1 writes no rows
    logged = df[~df.metric.str.match("steps/|perf/")]  # (the end repeats the progress rows of the last iteration)
    assert not logged.drop(columns=["wall_time"]).duplicated().any()
    s = _status(run)
    assert s["state"] == "finished" and s["world_size"] == W
    assert (s["policy_step"], s["env_step"], s["gradient_step"]) == (1024, 1024, W * GRADIENT_STEPS * 8)
    last = df.iloc[-1]
    assert (last.policy_step, last.gradient_step) == (1024, 64)
    # every checkpoint checks the replicas are identical (else the run fails); the digest is the checkpoint's model
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert s["replica_sha256"] == replica_digest(ckpt)
    ranks = ckpt["ranks"]
    assert len(ranks) == W and not np.array_equal(ranks[0]["obs"], ranks[1]["obs"])  # envs seeded apart
    assert not torch.equal(ranks[0]["generator"], ranks[1]["generator"])  # action sampling apart


def test_failing_rank_marks_the_run_failed_and_resume_is_exact(full_run, tmp_path):
    script = patched_cli(tmp_path / "fail.py", """
train_phase = Trainer.train_phase
def failing(self):  # rank 1 dies mid-run, after the checkpoint at 256; rank 0 is waiting in the all-reduce
    if self.rank == 1 and self.counter.policy_step >= 400:
        raise RuntimeError("injected failure on rank 1")
    train_phase(self)
Trainer.train_phase = failing""")
    run = tmp_path / "cut"
    out = torchrun(script, "train", "params/cartpole.yaml", "--out", str(run), "--no-progress", *SETS)
    assert out.returncode != 0 and "injected failure on rank 1" in out.stderr
    s = _status(run)
    assert s["state"] == "failed" and s["error"] and s["policy_step"] < 1024
    out = torchrun("-m", "rlkit", "train", "--resume", str(run), "--no-progress")
    assert out.returncode == 0, out.stderr[-3000:]
    assert learned_rows(run).equals(learned_rows(full_run))  # every rank's envs and streams continue exactly
    assert _status(run)["replica_sha256"] == _status(full_run)["replica_sha256"]


def test_diverging_replicas_are_detected(tmp_path):
    script = patched_cli(tmp_path / "diverge.py", """
join_ranks = Trainer._join_ranks
def diverging(self):
    join_ranks(self)
    if self.rank == 1:
        with torch.no_grad():
            next(self.agent.actor.parameters()).add_(1.0)
Trainer._join_ranks = diverging""")
    run = tmp_path / "r"
    out = torchrun(script, "train", "params/cartpole.yaml", "--out", str(run), "--no-progress", *SETS,
                   "--set", "total_steps=256")
    assert out.returncode != 0
    s = _status(run)
    assert s["state"] == "failed" and "replicas differ" in s["error"]


def test_rank0_refusal_stops_every_rank(full_run):
    before = (full_run / "metrics.csv").read_bytes()
    out = torchrun("-m", "rlkit", "train", "params/cartpole.yaml", "--out", str(full_run), "--no-progress", *SETS)
    assert out.returncode != 0
    assert out.stderr.count("holds a finished run") == 1  # both ranks exit with it, rank 0 prints it
    assert (full_run / "metrics.csv").read_bytes() == before


def test_two_ranks_with_rnd_average_the_predictor_too(tmp_path):
    """RND's predictor trains in the agent's Adam step: its gradients join the same all-reduce, and the
    replicas (predictor, target, RND normalisers included) stay identical."""
    run = tmp_path / "rnd"
    sets = [*SETS, "--set", "algo.use_RND=true", "--set", "learning_starts=128", "--set", "exploration_steps=256"]
    out = torchrun("-m", "rlkit", "train", "params/cartpole.yaml", "--out", str(run), "--no-progress", *sets)
    assert out.returncode == 0, out.stderr[-3000:]
    status = _status(run)
    assert status["state"] == "finished" and status["world_size"] == W
    state = load_checkpoint(run / "checkpoint.pt")
    assert status["replica_sha256"] == replica_digest(state)
    df = read_metrics(run / "metrics.csv")
    losses = df[df.metric == "rnd/predictor_loss"]
    assert len(losses) == 7 and (losses.value > 0).all()  # one row per phase after the 128 warm-up steps
    assert (df[df.metric == "rnd/phase_switch"].policy_step == 384).all()


@pytest.mark.parametrize("name, params, extra", [
    ("sac", "params/pendulum_sac.yaml", {"train_every": 8}),
    ("dqn", "params/cartpole_dqn.yaml", {"train_every": 8, "algo.kwargs.target_update_interval": 64})])
def test_two_ranks_off_policy_count_exactly_and_stay_replicas(tmp_path, name, params, extra):
    """Each rank fills its own replay memory and samples it; the gradients are averaged, so the networks stay
    identical, and gradient_step = W (P + G (n - 1))."""
    P, G, starts = 3, 2, 64
    sets = {"total_steps": 256, "parallel.num_threads": 1, "parallel.envs_per_thread": 2, "learning_starts": starts,
            "algo.per_rank_pretrain_steps": P, "algo.per_rank_gradient_steps": G, "algo.mini_batch_size": 16,
            "algo.buffer_size": 1000, "algo.hidden_sizes": "[16,16]", "eval.every": 0, "checkpoint_every": 128,
            **extra}
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    run = tmp_path / name
    out = torchrun("-m", "rlkit", "train", params, "--out", str(run), "--no-progress", *args)
    assert out.returncode == 0, out.stderr[-3000:]
    status = _status(run)
    n = len([s for s in range(starts, 257) if s % sets["train_every"] == 0])
    assert (status["state"], status["world_size"], status["policy_step"]) == ("finished", W, 256)
    assert status["gradient_step"] == W * (P + G * (n - 1))
    state = load_checkpoint(run / "checkpoint.pt")
    assert status["replica_sha256"] == replica_digest(state, name)
    memories = [r["replay"]["obs"] for r in state["ranks"]]
    assert memories[0].shape == memories[1].shape and not np.array_equal(*memories)  # each rank's own envs


def test_the_process_group_and_its_threads_end_with_the_run(tmp_path):
    """An optimizer built inside the group (as every learner does) must not keep the group alive: its gloo worker
    threads are gone when `process_group` exits, so none is left to race the interpreter's shutdown."""
    script = tmp_path / "group.py"
    script.write_text("""
import os
import torch
from rlkit.runs.distributed import process_group

def threads():
    return [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]

with process_group("cpu") as ranks:
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))])
    inside = threads()
print(f"rank {ranks.rank}: inside {'pt_gloo_runloop' in inside}, after {'pt_gloo_runloop' in threads()}")
""")
    out = torchrun(str(script))
    assert out.returncode == 0, out.stderr[-3000:]
    for rank in range(W):
        assert f"rank {rank}: inside True, after False" in out.stdout, out.stdout
