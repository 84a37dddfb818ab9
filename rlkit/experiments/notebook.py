"""What train.ipynb calls: the params file and seed to a run directory, and training with the live plot.

    cfg, run_dir = resolve_run("params/cartpole.yaml", seed=0)
    train_in_notebook(cfg, run_dir)   # progress bar + live plot; a finished run is shown, not retrained
"""
from __future__ import annotations

import html
from pathlib import Path

from rlkit.analysis.live import DRAWN, LivePlot, show_run  # noqa: F401 (show_run: the old rlkit.live had it)

REPO_ROOT = Path(__file__).resolve().parents[2]


def repo_path(path) -> Path:
    """A relative path means one inside the repository, whatever the kernel's working directory is."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def resolve_run(config: str | Path, seed: int, overrides=None, run_dir=None):
    """Load the params file with overrides and seed -> (Config, run_dir).

    Relative paths are inside the repository (JupyterLab may run the kernel in notebooks/ or anywhere);
    without a run_dir the run goes to <repo>/results/<stem>/seed<k>, where `rlkit run` puts it too, so a
    notebook run and a batch run resume each other. A sweep section in the params file is left out.
    """
    from rlkit.experiments.runner import with_seed
    from rlkit.experiments.sweep import load_variant

    path = repo_path(config)
    cfg = load_variant(path, with_seed(overrides_of(overrides), seed))
    return cfg, repo_path(run_dir) if run_dir else REPO_ROOT / "results" / path.stem / f"seed{seed}"


def overrides_of(value):
    """The notebook's `overrides` parameter as a dict or a list of "key=value". papermill's `-p` passes a
    string ('{"total_steps": 4096}'): it is read with the params files' YAML rules (JSON is YAML)."""
    from rlkit.config import ConfigError, parse_yaml

    if not isinstance(value, str):
        return value
    try:
        parsed = parse_yaml(value) if value.strip() else {}
    except Exception:  # noqa: BLE001 -- yaml's errors and ConfigError alike: say what was expected
        parsed = None
    if not isinstance(parsed, (dict, list)):
        raise ConfigError(f"overrides {value!r}: expected a mapping of dotted keys, e.g. "
                          "-p overrides '{\"total_steps\": 4096}' (or -y 'overrides: {total_steps: 4096}')")
    return parsed


def changed_from_defaults(cfg) -> dict:
    """The dotted keys whose resolved values differ from rlkit's defaults (seed included)."""
    from rlkit.config import Config
    from rlkit.analysis.report import flatten

    mine, defaults = flatten(cfg.to_dict()), flatten(Config().to_dict())
    return {k: v for k, v in mine.items() if defaults.get(k, object()) != v}


def config_html(cfg) -> str:
    """The config, compactly: a table of what differs from the defaults, the full YAML one click away."""
    esc = html.escape
    rows = "".join(f"<tr><td><code>{esc(k)}</code></td><td><code>{esc(str(v))}</code></td></tr>"
                   for k, v in changed_from_defaults(cfg).items())
    return (f"<table><tr><th>key</th><th>value (differs from the default)</th></tr>{rows}</table>"
            f"<details><summary>full resolved config</summary><pre>{esc(cfg.to_yaml())}</pre></details>")


def train_in_notebook(cfg, run_dir, *, resume=True, force=False, progress=True, live_plot=True):
    """Train with a progress bar and the live plot; a finished run (and no force) is left as it is.

    Returns the run directory. Run All on a finished run thus shows its summary and curves (show_run)
    instead of the RunExistsError that `rlkit.train` raises. Kernel > Interrupt stops the run with one line
    saying where it stopped and where Run All resumes it, not a traceback through the training loop."""
    import rlkit
    from rlkit.runs.checkpoint import read_header
    from rlkit.runs.rundir import read_status, write_status

    run_dir = Path(run_dir)
    if read_status(run_dir).get("state") == "finished" and not force:
        print(f"{run_dir} holds a finished run: showing it (set force = True to train it again)")
        DRAWN.discard(run_dir.resolve())  # no live plot this time: show_run draws the curves
        return run_dir
    plot = LivePlot(title=f"{cfg.env.id}, seed {cfg.seed}", run_dir=run_dir) if live_plot else None
    try:
        return rlkit.train(cfg, run_dir, resume=resume, force=force, progress=progress,
                           callbacks=[plot] if plot else [])
    except KeyboardInterrupt:
        stopped = read_status(run_dir).get("policy_step")
        checkpoint = run_dir / "checkpoint.pt"
        saved = read_header(checkpoint).get("policy_step") if checkpoint.exists() else None
        where = f"the checkpoint at policy step {saved:,}" if saved else "the start (no checkpoint was written yet)"
        write_status(run_dir, error=f"interrupted in the notebook at policy step {stopped:,}; Run All resumes it "
                                    f"from {where}" if stopped is not None else "interrupted in the notebook")
        print(f"stopped at policy step {stopped:,}; Run All resumes from {where}" if stopped is not None else
              f"stopped; Run All resumes from {where}")
        return run_dir
    finally:
        if plot:
            plot.close()


def latest_video(run_dir):
    """The run's latest video (videos/<policy_step>.mp4, from eval.video_every or `rlkit video`) to show inline,
    embedded so that the executed notebook carries it; a line saying how to get one when there is none."""
    from IPython.display import Markdown, Video

    videos = [p for p in (Path(run_dir) / "videos").glob("*.mp4") if p.stem.isdigit()]
    if not videos:
        return Markdown("No video yet: set `eval.video_every` (policy steps) in the params file, or run "
                        f"`rlkit video {run_dir}`.")
    latest = max(videos, key=lambda p: int(p.stem))
    return Video(str(latest), embed=True, mimetype="video/mp4", html_attributes="controls muted loop autoplay")
