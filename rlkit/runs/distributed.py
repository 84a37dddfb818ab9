"""One run over several processes: `torchrun --nproc-per-node W -m rlkit train CONFIG` (data-parallel PPO).

torchrun starts W copies of the same command with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT set. Every rank collects with its own T x E envs and its own random streams, holds the
same weights (broadcast from rank 0 at the start) and applies the same update: gradients are
averaged over the ranks in one flat all-reduce before clipping and the optimizer step. Running
normaliser statistics are merged over the ranks' batches, so every rank normalises identically.
Rank 0 owns the run directory; the others write nothing.

Without those variables (or with WORLD_SIZE=1) nothing here touches torch.distributed: the
single-process path has no collective calls and no extra work.
"""
from __future__ import annotations

import hashlib
import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    def on_rank0(self, fn):
        """Run fn on rank 0 alone (run-directory decisions, reading files) and hand its result to every
        rank; an exception it raises is raised on every rank, so no rank waits for a peer that gave up."""
        if self.world_size == 1:
            return fn()
        result, error = None, None
        if self.rank == 0:
            try:
                result = fn()
            except Exception as e:  # noqa: BLE001 - handed to every rank, then raised
                error = e
        box = [result, error]
        dist.broadcast_object_list(box, src=0)
        if box[1] is not None:
            if self.rank == 0:
                raise error
            raise box[1]
        return box[0]


def launched_ranks() -> Ranks:
    """The layout torchrun set in the environment; Ranks() (one rank) when not launched by it."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Ranks()
    return Ranks(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def uses_cuda(device: str) -> bool:
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


@contextmanager
def process_group(device: str):
    """Yield this process's Ranks; under torchrun with WORLD_SIZE > 1 initialise the process group first and
    destroy it at the end. Backend: gloo on CPU; with CUDA, NCCL for CUDA tensors (gradients) and gloo for
    the few CPU ones (normaliser moments, checkpoint pieces). Rank r uses cuda:LOCAL_RANK. A group someone
    else initialised is used as it is and left alone."""
    ranks = launched_ranks()
    if ranks.world_size == 1:
        yield ranks
        return
    owner = not dist.is_initialized()
    if owner:
        # torch.distributed.nn's functions take `group=group.WORLD` as a default argument. Imported after the group
        # exists (torch.optim imports it on its first optimizer), those defaults keep the group alive past
        # destroy_process_group, and its gloo worker threads past the interpreter's shutdown, where a worker
        # releasing a finished collective's tensors may abort the process. Imported first, the defaults are None.
        import torch.distributed.nn  # noqa: F401
        if uses_cuda(device) and torch.cuda.is_available():  # (without CUDA the trainer names the config error)
            torch.cuda.set_device(ranks.local_rank)
            dist.init_process_group("cpu:gloo,cuda:nccl", device_id=torch.device("cuda", ranks.local_rank))
        else:
            dist.init_process_group("gloo")
    # torchrun stops the other ranks with SIGTERM when one fails: raise, so rank 0 marks the run failed
    previous = _raise_on_sigterm()
    try:
        yield ranks
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if owner:
            dist.destroy_process_group()


def _raise_on_sigterm():
    def handler(signum, frame):
        raise SystemExit(128 + signum)
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: keep the default
        return None


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank r's own random streams (action sampling, minibatch shuffles, random warm-up):
    rank 0 keeps `seed`, so a one-rank run is unchanged; the others get streams of their own."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint32)[0])


def replicate(world_size: int, agent, hooks=(), running_stats=()) -> None:
    """Make this rank's agent and hooks one replica of a data-parallel model, in one call at the start.

    Every rank takes rank 0's weights; the agent averages its gradients over the ranks after every backward,
    before clipping, so every rank applies the same update (a hook's network that trains in the agent's step,
    RND's predictor, is among the agent's parameters). Running statistics (observation normalisers, reward
    filters) merge every rank's batch moments before each update, so all ranks normalise identically: the
    statistics one process with all the envs would compute, and one normaliser in the checkpoint is right
    for every rank. The price is one small all-gather per statistic update, only for normalisers that are on."""
    broadcast_parameters(*agent.modules(), *(m for hook in hooks for m in hook.modules()))
    agent.sync_gradients = GradientAverager(agent.params, world_size)
    for rms in [*running_stats, *(rms for hook in hooks for rms in hook.running_stats())]:
        rms.sync = merge_moments


def broadcast_parameters(*modules) -> None:
    """Every rank takes rank 0's parameters and buffers (once, at the start)."""
    with torch.no_grad():
        for module in modules:
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor, src=0)


class GradientAverager:
    """Callable that replaces every rank's gradients by their mean over the ranks in one all-reduce: the
    gradients are copied into one flat buffer, summed, divided by W and copied back. Called after
    backward(), before clipping and the optimizer step, so clipping sees the averaged gradient."""

    def __init__(self, parameters, world_size: int):
        self.params = [p for p in parameters if p.requires_grad]
        self.world_size = world_size
        first = self.params[0]
        if any(p.dtype != first.dtype or p.device != first.device for p in self.params):
            raise TypeError("gradient averaging needs every parameter on one device with one dtype")
        self.flat = torch.zeros(sum(p.numel() for p in self.params), dtype=first.dtype, device=first.device)
        self.views = [v.view_as(p) for v, p in zip(self.flat.split([p.numel() for p in self.params]), self.params)]

    @torch.no_grad()
    def __call__(self) -> None:
        for p, v in zip(self.params, self.views):
            if p.grad is None:  # unused on this rank: contributes zero, receives the mean
                v.zero_()
            else:
                v.copy_(p.grad)
        dist.all_reduce(self.flat, op=dist.ReduceOp.SUM)
        self.flat.div_(self.world_size)
        for p, v in zip(self.params, self.views):
            if p.grad is None:
                p.grad = v.clone()
            else:
                p.grad.copy_(v)


def merge_moments(mean: np.ndarray, var: np.ndarray, count: int):
    """(mean, var, count) of this rank's batch -> those of the union of every rank's batch.

    The ranks' moments are all-gathered and merged in rank order with Chan et al.'s formula, so every rank
    gets the same numbers: the statistics a single process would have computed from all W batches."""
    mean, var = np.asarray(mean, np.float64), np.asarray(var, np.float64)
    local = torch.from_numpy(np.concatenate([[float(count)], mean.ravel(), var.ravel()]))
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, local)
    d = mean.size
    m, v, n = None, None, 0.0
    for part in parts:
        p = part.numpy()
        pn, pm, pv = p[0], p[1:1 + d], p[1 + d:]
        if m is None:
            m, v, n = pm, pv, pn
            continue
        delta, total = pm - m, n + pn
        m = m + delta * pn / total
        v = (v * n + pv * pn + delta**2 * n * pn / total) / total
        n = total
    return m.reshape(mean.shape), v.reshape(var.shape), int(n)


def digest(obj) -> str:
    """sha256 over nested dicts / lists of tensors, arrays and scalars: equal digests = bit-identical contents."""
    h = hashlib.sha256()

    def feed(x):
        if isinstance(x, dict):
            for key, value in x.items():
                h.update(repr(key).encode())
                feed(value)
        elif isinstance(x, (list, tuple)):
            for value in x:
                feed(value)
        elif isinstance(x, torch.Tensor):
            h.update(x.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(x, np.ndarray):
            h.update(np.ascontiguousarray(x).tobytes())
        else:
            h.update(repr(x).encode())

    feed(obj)
    return h.hexdigest()


def check_replicas(local_digest: str) -> None:
    """Raise on every rank if the ranks' digests differ (data-parallel replicas must stay identical)."""
    digests = [None] * dist.get_world_size()
    dist.all_gather_object(digests, local_digest)
    if len(set(digests)) != 1:
        raise RuntimeError("the replicas differ across ranks: weights, optimizer or normaliser statistics (sha256 per rank: "
                           + ", ".join(f"{r}: {d[:12]}" for r, d in enumerate(digests)) + ")")


def gather_to_rank0(obj):
    """[obj of rank 0, obj of rank 1, ...] on rank 0, None elsewhere."""
    out = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out
