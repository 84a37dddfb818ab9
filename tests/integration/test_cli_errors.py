"""Bad input and bad files end a real `rlkit` process with one line on stderr and no traceback: an unknown key
or env id (exit 2), a truncated or unreadable checkpoint on --resume (exit 1, naming the file and the fix)."""
from conftest import run_cli
from rundirs import cli, cut_run as _cut_run, one_line  # noqa: F401 (cli is a fixture)


def test_truncated_checkpoint_is_one_line_naming_the_file(tmp_path, tiny, cli):
    run = _cut_run(tmp_path, tiny)
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 3])
    out = run_cli("train", "--resume", str(run), "--no-progress")  # a real process: no traceback printed
    assert out.returncode == 1 and one_line(out), out.stderr
    assert "checkpoint.pt: truncated" in out.stderr and "--force" in out.stderr
    (run / "checkpoint.pt").write_bytes(b"\x00garbage" * 10)
    out = cli("train", "--resume", str(run), "--no-progress")
    assert out.returncode == 1 and one_line(out) and "checkpoint.pt: cannot be loaded" in out.stderr, out.stderr


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    out = run_cli("train", "params/cartpole.yaml", "--set", "algo.bach_size=3", "--out", str(tmp_path / "r"))
    assert out.returncode == 2
    assert "did you mean 'algo.batch_size'" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = run_cli("train", "params/cartpole.yaml", "--set", "env.id=Nope-v0", "--out", str(tmp_path / "r2"))
    assert out.returncode == 2 and "unknown environment 'Nope-v0'" in out.stderr and "Traceback" not in out.stderr
