"""Learning check: train a params file on several seeds and report eval/return at the budget.

    python benchmarks/learning.py params/acrobot.yaml --seeds 0-4 --threshold -90 [--set k=v ...]

Prints per seed the best and final eval/return and the wall time as each seed finishes, then how many
seeds reached the threshold by total_steps and the median final; writes
results/benchmarks/learning_<experiment>[__<key>=<value> for each --set].csv after every seed (so a stopped
check keeps the seeds it finished), with the git commit it ran at; seeds already in that CSV from another
invocation stay (the summary covers them all), and a seed run again replaces its row. --out keeps the run directories (metrics.csv of every seed).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import pandas as pd


def one_seed(config, seed, overrides, out):
    import rlkit
    from rlkit.runs.metrics import read_metrics

    start = time.perf_counter()
    run = rlkit.train(config, Path(out) / f"seed{seed}", overrides={**overrides, "seed": seed},
                      progress=False, force=True)
    df = read_metrics(run / "metrics.csv")
    evals = df[df.metric == "eval/return"]
    return {"seed": seed, "final": evals.value.iloc[-1], "best": evals.value.max(),
            "first_step_over": None, "wall_s": time.perf_counter() - start, "evals": evals}


def setup(args):
    """(seeds, overrides, experiment name, git commit, results/benchmarks) from --seeds A-B, --set k=v and the
    params file; one BLAS thread per process, as every seed runs in a process of its own."""
    from rlkit.config import parse_override
    from rlkit.runs.rundir import git_commit

    lo, _, hi = args.seeds.partition("-")
    os.environ["OMP_NUM_THREADS"] = "1"
    dest = Path("results/benchmarks")
    dest.mkdir(parents=True, exist_ok=True)
    return (list(range(int(lo), int(hi or lo) + 1)), dict(parse_override(o) for o in args.overrides),
            Path(args.config).stem, git_commit(), dest)


def results_csv(dest: Path, name: str, overrides: list[str]) -> Path:
    """One CSV per params file and set of --set overrides (in any order): a check at other settings never
    replaces this one's rows."""
    return dest / f"learning_{name}{''.join(f'__{o}' for o in sorted(set(overrides)))}.csv"


def seed_pool(jobs: int) -> ProcessPoolExecutor:
    """A process per seed, each killed with this script (a killed script must not leave its seeds training)."""
    from rlkit.experiments.launch import die_with_parent

    return ProcessPoolExecutor(jobs, initializer=die_with_parent, initargs=(os.getpid(),))


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--threshold", type=float, required=True)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default=None, help="keep the run directories here (default: a temporary one)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    seeds, overrides, name, commit, dest = setup(args)
    csv = results_csv(dest, name, args.overrides)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, seed_pool(args.jobs) as pool:
        out = args.out or tmp
        futures = [pool.submit(one_seed, args.config, s, overrides, out) for s in seeds]
        for future in as_completed(futures):
            r = future.result()
            over = r.pop("evals")
            hit = over[over.value >= args.threshold]
            r["first_step_over"] = int(hit.policy_step.iloc[0]) if len(hit) else None
            r["commit"] = commit
            rows.append(r)
            print(f"{name} seed {r['seed']}: final {r['final']:.4g}, best {r['best']:.4g}, "
                  f"first over {r['first_step_over']}, {r['wall_s']:.0f} s", flush=True)
            # seeds of other invocations (run earlier, e.g. --seeds 0-2 then 3-4, or running beside this one) stay,
            # read again before each write; these seeds replace theirs
            kept = pd.read_csv(csv) if csv.exists() else pd.DataFrame(columns=["seed"])
            kept = kept[~kept.seed.isin(seeds)]
            table = pd.concat([kept, pd.DataFrame(rows)]) if len(kept) else pd.DataFrame(rows)
            table.sort_values("seed").to_csv(csv, index=False)
    table = table.sort_values("seed")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    ok = (table.final >= args.threshold).sum()
    print(f"{name} ({', '.join(sorted(set(c[:7] for c in table.commit.astype(str))))}): final eval/return >= "
          f"{args.threshold} on {ok}/{len(table)} seeds (median final {table.final.median():.4g}, "
          f"median wall {table.wall_s.median():.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
