"""Executors: worker processes that die, are killed, or outlive their coordinator (on the toy)."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from hypotune.config import RunConfig, Runtime
from hypotune.run.events import Failed, Finished, Started
from hypotune.run.executors import LocalExecutor

from .helpers import (
    TOY_STUDY,
    ListSource,
    session_commands,
    slow_study,
    start_cli_study,
    wait_for_finished_runs,
)
from .toy import SLOW_TOY, TOY, SlowToy, Toy


def test_workers_exit_within_seconds_when_the_coordinator_is_killed(workdir):
    path = slow_study(workdir)
    process = start_cli_study(workdir, path)
    try:
        wait_for_finished_runs(workdir / "runs" / "mlflow.db", 1)
        helpers = set(session_commands(process.pid)) - {process.pid}
        assert len(helpers) >= 3  # the forkserver and two workers, busy with trials
        os.kill(process.pid, signal.SIGKILL)  # the coordinator alone: nobody tells the workers
        process.wait(timeout=30)
        deadline = time.monotonic() + 15
        while session_commands(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not session_commands(process.pid), "worker processes outlived their coordinator"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def test_a_worker_killed_mid_trial_fails_that_trial_and_the_rest_go_on():
    from hypotune.run.executors import Task

    tasks = [Task(f"t{i}", RunConfig(SlowToy(epochs=2, pause=0.3), i), SLOW_TOY.ref) for i in range(3)]
    executor = LocalExecutor(1, Runtime(), poll_seconds=0.2)
    outcome = {}
    for event in executor.run(ListSource(tasks)):
        if isinstance(event, Started) and event.key == "t0":
            os.kill(event.worker, signal.SIGKILL)
        if isinstance(event, (Finished, Failed)):
            outcome[event.key] = "finished" if isinstance(event, Finished) else event.message
    assert outcome == {"t0": "worker process died (exit code -9)", "t1": "finished", "t2": "finished"}


def test_a_worker_that_dies_before_saying_it_started_is_not_waited_for():
    from hypotune.run.executors import Task

    from .helpers import take_a_task_and_die

    executor = LocalExecutor(1, Runtime(), target=take_a_task_and_die)
    task = Task("only", RunConfig(Toy(), 0), TOY.ref)
    events = list(executor.run(ListSource([task])))  # hung forever before
    assert events == [Failed("only", "worker process died (exit code 3)")]


@pytest.mark.parametrize("workers", [0])
def test_workers_must_be_positive(workdir, workers):
    command = [
        sys.executable,
        "-m",
        "hypotune.cli",
        "study",
        "run",
        str(TOY_STUDY),
        "--workers",
        str(workers),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2 and "argument --workers: must be at least 1" in result.stderr
