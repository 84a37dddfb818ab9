"""Learning check: train a params file on several seeds and report eval/return at the budget.

    python benchmarks/learning.py params/acrobot.yaml --seeds 0-4 --threshold -90 [--set k=v ...]

Prints per seed the best and final eval/return and the wall time, and how many seeds reached
the threshold by total_steps; writes results/benchmarks/learning_<experiment>.csv.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd


def one_seed(args):
    config, seed, overrides, out = args
    import rlkit
    from rlkit.metrics import read_metrics

    start = time.perf_counter()
    run = rlkit.train(config, Path(out) / f"seed{seed}", overrides={**overrides, "seed": seed},
                      progress=False, force=True)
    df = read_metrics(run / "metrics.csv")
    evals = df[df.metric == "eval/return"]
    return {"seed": seed, "final": evals.value.iloc[-1], "best": evals.value.max(),
            "first_step_over": None, "wall_s": time.perf_counter() - start, "evals": evals}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--threshold", type=float, required=True)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    from rlkit.config import parse_override
    lo, _, hi = args.seeds.partition("-")
    seeds = list(range(int(lo), int(hi or lo) + 1))
    overrides = dict(parse_override(o) for o in args.overrides)
    os.environ["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory() as out, ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(one_seed, [(args.config, s, overrides, out) for s in seeds]))
    for r in rows:
        over = r.pop("evals")
        hit = over[over.value >= args.threshold]
        r["first_step_over"] = int(hit.policy_step.iloc[0]) if len(hit) else None
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    ok = (table.final >= args.threshold).sum()
    print(f"{Path(args.config).stem}: final eval/return >= {args.threshold} on {ok}/{len(seeds)} seeds "
          f"(median final {table.final.median():.1f}, median wall {table.wall_s.median():.0f} s)")
    dest = Path("results/benchmarks")
    dest.mkdir(parents=True, exist_ok=True)
    table.to_csv(dest / f"learning_{Path(args.config).stem}.csv", index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
