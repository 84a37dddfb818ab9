"""Params files as people write them: numbers in scientific notation, a key given twice, files that are not
YAML text, seeds out of range, non-finite floats; each refused in one line naming the key or the file."""
import pytest

from rlkit import ConfigError, load_config
from rundirs import CARTPOLE, cli, one_line  # noqa: F401 (cli is a fixture)


def test_scientific_notation_is_a_number(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("total_steps: 1e5\nalgo:\n  actor_lr: 3e-4\n  critic_lr: 1.0e-3\n  k_epochs: 4.0\n")
    cfg = load_config(path, ["log_every=2.048e3"])
    assert (cfg.total_steps, cfg.algo.actor_lr, cfg.algo.critic_lr, cfg.algo.k_epochs, cfg.log_every) == \
        (100_000, 3e-4, 1e-3, 4, 2048)
    assert isinstance(cfg.total_steps, int) and isinstance(cfg.algo.k_epochs, int)
    with pytest.raises(ConfigError, match="'algo.k_epochs' must be int"):
        load_config({}, ["algo.k_epochs=2.5"])


def test_duplicate_keys_are_refused_naming_key_and_line(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("seed: 1\nalgo:\n  batch_size: 64\n  gamma: 0.9\n  batch_size: 128\n")
    with pytest.raises(ConfigError, match=r"exp.yaml: duplicate key 'batch_size' at line 5 \(first given at line 3\)"):
        load_config(path)


def test_unreadable_configs_are_one_line(tmp_path, cli):
    binary = tmp_path / "model.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("env: {id: 'Caf\xe9'}\n".encode("latin-1"))
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"seed: 1\x00\n")
    for path, expected in [(binary, "not a UTF-8 text file"), (latin, "not a UTF-8 text file"),
                           (nul, "malformed YAML"), (tmp_path, "is a directory")]:
        out = cli("train", str(path), "--out", str(tmp_path / "out"))
        assert out.returncode == 2 and one_line(out) and expected in out.stderr, out.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_non_finite_float_keys_are_refused(value):
    with pytest.raises(ConfigError, match="'algo.actor_lr' must be a finite number"):
        load_config({}, [f"algo.actor_lr={value}"])
    with pytest.raises(ConfigError, match="'algo.gamma' must be a finite number"):
        load_config({}, [f"algo.gamma={value}"])


@pytest.mark.parametrize("seed", [-1, 2**32, 2**70])
def test_seed_out_of_range_is_refused(seed):
    with pytest.raises(ConfigError, match=r"'seed' must be in \[0, 4294967295\]"):
        load_config({"seed": seed})


def test_cli_seed_errors_are_one_line(tmp_path, cli):
    out = cli("train", CARTPOLE, "--set", "seed=-3", "--out", str(tmp_path / "r"))
    assert out.returncode == 2 and one_line(out) and "'seed' must be in" in out.stderr, out.stderr
