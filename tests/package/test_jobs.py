"""The spark-submit jobs declare no option of their own beyond what only a job needs: they reuse the
click options of the commands they mirror (names, types, choices, defaults)."""
import importlib.util
from pathlib import Path

import pytest

from sparkad.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]


def _job(name):
    spec = importlib.util.spec_from_file_location(f"job_{name}", ROOT / "jobs" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _options(command) -> dict:
    return {p.name: (tuple(p.opts), repr(p.type), p.default, p.required) for p in command.params}


@pytest.mark.parametrize("job,command,job_only,command_only", [
    ("score", "score", {"master"}, {"engine", "master", "workers", "scheduler"}),
    ("monitor", "monitor", {"master"}, set()),
    ("train", "train", {"workers", "master"}, {"quiet"}),
])
def test_job_options_are_the_commands_options(job, command, job_only, command_only):
    mod = _job(job)
    job_cmd = getattr(mod, f"{job}_job")
    mine, theirs = _options(job_cmd), _options(cli.commands[command])
    assert set(mine) - set(theirs) <= job_only
    shared = set(theirs) - command_only
    assert shared <= set(mine)
    for name in shared:
        assert mine[name] == theirs[name], name


def test_job_usage_errors_and_exit_codes(tmp_path, capsys):
    mod = _job("monitor")
    assert mod.main(["--scores", str(tmp_path), "--out", str(tmp_path / "m"), "--threshold", "1", "--ppm", "10"]) == 2
    assert "either --threshold or --ppm" in capsys.readouterr().err
    assert _job("score").main(["--hlf", "x"]) == 2  # click's usage error: missing --model
