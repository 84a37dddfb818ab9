"""Experiments from params files: one per file, or one per point of a grid sweep.

A params file may carry a `sweep:` section, dotted key -> list of values; `rlkit run --grid key=v1,v2`
adds or replaces keys of it. The Cartesian product of the lists gives one experiment (a directory under
results/) per variant, named after the swept values:

    sweep:
      algo.beta: [0.0, 1.0, 4.0]      # -> sparse_mountaincar_rnd_beta__beta=0, ...__beta=1, ...__beta=4

Each variant is the params file without its `sweep:` section plus the variant's values as overrides,
so the kernel loads and resolves it exactly as it would the plain file.
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rlkit.config import ConfigError, parse_override, parse_yaml
# A sweep is expanded into this many experiments at most, before any is built: 9 keys of 9 values would
# otherwise be 43 million configs in memory. A larger search is several params files (or rlkit tune).
MAX_VARIANTS = 10_000
NAME_BYTES = 255  # an experiment is a directory: its name must fit the filesystem's limit for one name
# folders that rlkit report and rlkit tensorboard write into under a results directory
RESERVED = ("report", "tensorboard")

SWEEP_KEY = "sweep"


@dataclass
class Experiment:
    """What `rlkit run` runs once per seed: a params file plus overrides, in results/<name>/."""

    name: str
    config: Path  # the params file (its sweep section, if any, is ignored when the kernel loads it)
    overrides: dict = field(default_factory=dict)  # dotted key -> value, applied after the file
    swept: dict = field(default_factory=dict)  # the subset of overrides this variant's sweep chose


def read_params(path: str | Path) -> tuple[dict, dict]:
    """A params file as (config mapping without the sweep section, sweep mapping key -> list of values)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a params file; give a params/*.yaml file") from None
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path} (check the path; params files live in params/)") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {e.start} cannot be decoded); "
                          "give a YAML params file") from None
    except OSError as e:  # a symlink loop, a name too long, no permission
        raise ConfigError(f"{path}: cannot be read ({e.strerror}); check the path and its links") from None
    try:
        raw = parse_yaml(text) or {}  # the kit's YAML rules: 1e5 is a number, a key given twice is an error
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML: {' '.join(str(getattr(e, 'problem', e)).split())}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(raw).__name__}")
    sweep = raw.pop(SWEEP_KEY, None) or {}
    if not isinstance(sweep, dict):
        raise ConfigError(f"{path}: '{SWEEP_KEY}' must map dotted keys to lists of values, e.g. algo.beta: [0.5, 1.0]")
    for key, values in sweep.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: {SWEEP_KEY}.{key} must be a non-empty list of values, got {values!r}")
    return raw, sweep


def parse_grid(entries: list[str] | None) -> dict:
    """['algo.beta=0.5,1,2'] -> {'algo.beta': [0.5, 1, 2]}; values are YAML, commas inside [] or {} kept."""
    grid = {}
    for entry in entries or []:
        key, _, text = entry.partition("=")
        try:  # the params files' YAML rules: 3e-4 is a number
            values = [parse_yaml(v) for v in _split_top_level(text) if v.strip()]
        except (yaml.YAMLError, ConfigError):
            values = []
        if not key.strip() or not values:
            raise ConfigError(f"--grid '{entry}' must look like section.key=v1,v2,..., e.g. algo.beta=0.5,1,2 "
                              "(values are YAML; a list as [64,64])")
        grid[key.strip()] = values
    return grid


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return parts + [current]


def expand(config: str | Path, overrides: dict | None = None, grid: dict | None = None) -> list[Experiment]:
    """The experiments of one params file: itself, or one per point of its sweep (merged with `grid`)."""
    _, sweep = read_params(config)  # before resolve(): a symlink loop is one line, not a RuntimeError
    path = Path(config).resolve()
    sweep = {**sweep, **(grid or {})}
    if not sweep:
        return [_named(Experiment(path.stem, path, dict(overrides or {})))]
    keys = list(sweep)
    count = math.prod(len(sweep[k]) for k in keys)
    if count > MAX_VARIANTS:
        sizes = " x ".join(str(len(sweep[k])) for k in keys)
        raise ConfigError(f"{path}: the sweep has {sizes} = {count:,} variants, more than the {MAX_VARIANTS:,} one "
                          "batch takes (rlkit.experiments.sweep.MAX_VARIANTS); sweep fewer values, or split the "
                          "sweep over several params files (rlkit tune searches large spaces)")
    labels = _labels(keys)
    experiments = []
    for values in itertools.product(*(sweep[k] for k in keys)):
        swept = dict(zip(keys, values))
        name = "__".join([path.stem, *(f"{labels[k]}={_value_text(v)}" for k, v in swept.items())])
        experiments.append(_named(Experiment(name, path, {**(overrides or {}), **swept}, swept)))
    return experiments


def _named(exp: Experiment) -> Experiment:
    """The experiment, once its name is known to fit a directory name."""
    if exp.name in RESERVED:
        raise ConfigError(f"experiment name '{exp.name}': results/{exp.name}/ is where rlkit {exp.name} writes; "
                          "rename the params file")
    size = len(exp.name.encode())
    if size > NAME_BYTES:
        raise ConfigError(f"experiment name '{exp.name[:60]}...' is {size} bytes, more than the {NAME_BYTES} a "
                          "directory name may have; shorten the params file's name or the swept values")
    return exp


def _labels(keys: list[str]) -> dict:
    """Each key's last part (algo.beta -> beta) unless two keys share it; then the whole dotted key."""
    leaves = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: leaf if leaves.count(leaf) == 1 else k for k, leaf in zip(keys, leaves)}


def _value_text(value) -> str:
    """A swept value as a filesystem-safe part of a directory name: 0.0003 -> 0.0003, [64, 64] -> 64-64."""
    if isinstance(value, bool) or value is None:
        text = str(value).lower()
    elif isinstance(value, (int, float)):
        return f"{value:g}"  # digits, '.', '-', 'e', '+': already safe, and a leading minus must stay
    elif isinstance(value, (list, tuple)):
        text = "-".join(_value_text(v) for v in value)
    elif isinstance(value, dict):
        text = "-".join(f"{k}{_value_text(v)}" for k, v in value.items())
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-") or "empty"


def overrides_dict(overrides: dict | list | None) -> dict:
    """Overrides as a dict whichever form they came in (dict, or a list of "key=value")."""
    if isinstance(overrides, (list, tuple)):
        return dict(map(parse_override, overrides))
    return dict(overrides or {})


def load_variant(config: str | Path, overrides: dict | list | None = None):
    """The resolved Config of a params file plus overrides (the algorithm's part checked); a sweep section in the
    file is left out."""
    from rlkit.algos.base import check_config
    from rlkit.config import ConfigError, load_config

    raw, sweep = read_params(config)
    cfg = load_config(raw if sweep else Path(config), overrides)
    try:  # the algorithm's own keys and rules (PPO's rollout), before any run of a batch starts
        check_config(cfg)
    except ConfigError as e:
        raise ConfigError(f"{config}: {e}") from None
    return cfg
