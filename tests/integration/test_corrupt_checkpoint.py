"""A truncated or unreadable checkpoint stops `rlkit train --resume` with one line naming the file and the fix:
once in a real process (no traceback printed), once through the CLI in this process."""
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
