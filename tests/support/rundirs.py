"""Helpers for the tests that guard run directories and bad input: a tiny run cut short, its files as bytes, the
CLI called in this process, and what "one line" means."""
import json

import pytest

from rlkit import train

CARTPOLE = "params/cartpole.yaml"


class Interrupt(Exception):
    pass


def stop_at(step):
    def callback(counters, metrics):
        if counters["policy_step"] >= step:
            raise Interrupt()
    return callback


def status(run):
    return json.loads((run / "status.json").read_text())


def snapshot(run):
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file() and p.name != ".lock"}


def one_line(out):
    lines = out.stderr.strip().splitlines()
    return len(lines) == 1 and "Traceback" not in out.stderr


def cut_run(tmp_path, tiny):
    """A tiny CartPole run stopped at policy step 400, after its checkpoint at 256."""
    run = tmp_path / "r"
    with pytest.raises(Interrupt):
        train(CARTPOLE, run, overrides=tiny, progress=False, callbacks=[stop_at(400)])
    return run


class CliResult:
    def __init__(self, returncode, stderr):
        self.returncode, self.stderr = returncode, stderr


@pytest.fixture
def cli(capsys):
    """`rlkit ARGS` in this process (a subprocess costs seconds of imports): exit code and stderr; an
    exception escaping main() is what would have been a traceback, and fails the test."""
    from rlkit.cli import main

    def call(*args):
        capsys.readouterr()
        code = main([str(a) for a in args])
        return CliResult(code, capsys.readouterr().err)
    return call
