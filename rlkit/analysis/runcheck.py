"""Is a run's metrics.csv readable, and which runs of one experiment really are the same experiment.

Both the report and the TensorBoard export read every run under a results directory; a run whose
metrics.csv is empty, not a metrics file, or all NaN must be named with that reason (not counted as
exported, not described as "no evaluation yet"), and runs that trained different configs must never be
aggregated as seeds of one experiment.
"""
from __future__ import annotations

import math
from pathlib import Path

import yaml

from rlkit.runs.metrics import COLUMNS


def metrics_problem(path: Path) -> str | None:
    """Why `path` (a run's metrics.csv) holds no usable rows, or None when it holds some.

    A torn last line (a run killed mid-write) is normal and not a problem; read_metrics drops it."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        return f"metrics.csv cannot be read ({e.strerror})"
    if not raw.strip():
        return "metrics.csv is empty"
    text = raw.decode("utf-8", errors="replace")
    lines = text[: text.rfind("\n") + 1].splitlines()
    if not lines or lines[0].strip() != ",".join(COLUMNS):
        return f"metrics.csv is not a metrics file (its first line is not the header {','.join(COLUMNS)})"
    rows = [line.split(",") for line in lines[1:] if line.count(",") == 5]
    if not rows:
        return "metrics.csv has a header but no complete row"
    if not any(_finite_row(r) for r in rows):
        return f"metrics.csv has {len(rows)} rows and none holds finite numbers (NaN or unreadable values)"
    return None


def _finite_row(fields: list[str]) -> bool:
    try:
        return all(math.isfinite(float(fields[i])) for i in (0, 1, 2, 3, 5))
    except ValueError:
        return False


def read_config(run_dir: Path) -> tuple[dict, str | None]:
    """A run's config.yaml as a mapping, and why it could not be read (None when it could, or is absent)."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        return {}, None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        return {}, f"config.yaml is not UTF-8 text (byte {e.start} cannot be decoded)"
    except yaml.YAMLError as e:
        return {}, f"config.yaml is malformed YAML ({' '.join(str(getattr(e, 'problem', e)).split())})"
    except OSError as e:
        return {}, f"config.yaml cannot be read ({e.strerror})"
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        return {}, f"config.yaml holds a {type(data).__name__}, not a config"
    return data, None


def without_seed(config: dict) -> dict:
    """What two runs must share to be seeds of one experiment: the whole resolved config but its seed."""
    return {k: v for k, v in config.items() if k != "seed"}


def flatten(d: dict, prefix: str = "") -> dict:
    """{'algo': {'beta': 1}} -> {'algo.beta': 1}; lists and other leaves stay as they are."""
    out = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out


def differences(old: dict, new: dict, ignore=("seed",)) -> list[str]:
    """'key: old -> new' for every dotted key whose value differs between two configs (nested mappings)."""
    a, b = flatten(old), flatten(new)
    keys = [k for k in dict.fromkeys([*a, *b]) if k not in ignore and a.get(k, "(unset)") != b.get(k, "(unset)")]
    return [f"{k}: {a.get(k, '(unset)')!r} -> {b.get(k, '(unset)')!r}" for k in keys]
