"""Command trainables: a script run as a command logs into the run hypotune opened; failures,
timeouts, silence, pruning, Ctrl-C and kill -9 each end it, and leave no script running."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hypotune
from hypotune.config import Runtime
from hypotune.errors import CommandFailed, ConfigError, StudyError
from hypotune.store.tracker import Tracker
from hypotune.trainables.load import load
from hypotune.trainables.protocol import Log

from .helpers import default_sigint

LOGS = """
import sys, time
import mlflow
epochs, x, pause = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
for epoch in range(1, epochs + 1):
    mlflow.log_metric("val_loss", x / epoch if x >= 0 else float("inf"), step=epoch)
    time.sleep(pause)
mlflow.log_metric("test_loss", x, step=epochs)  # once, at the end: epochs go by val_loss alone
print("done")
"""

# Writes its pid, and that of a child it starts, then sleeps: to be caught in flight.
SLEEPS = """
import os, subprocess, sys, time
from pathlib import Path
child = subprocess.Popen(["sleep", "120"])
Path("pids").mkdir(exist_ok=True)
Path("pids", f"{os.getpid()}-{child.pid}").write_text("")
time.sleep(120)
"""

STUDY = """
name = "scripted"
[trainable]
command = ["python", "script.py", "{epochs}", "{x}", "{pause}"]
metrics = { val_loss = "minimize", test_loss = "minimize" }
deciding = ["val_loss"]
timeout = 60
epochs = "epochs"
[trainable.settings]
epochs = 3
x = 1.0
pause = 0.0

[presets.quick]
seeds = 2

[[hypotheses]]
id = "start"
statement = "starting at 1 beats starting at 3"
arms = { near = { x = 1.0 }, far = { x = 3.0 } }
prediction = { kind = "better", arm = "near", than = "far" }
"""


def write_study(folder: Path, script: str = LOGS, replace: dict[str, str] | None = None) -> Path:
    text = STUDY
    for old, new in (replace or {}).items():
        assert old in text
        text = text.replace(old, new)
    (folder / "script.py").write_text(script)
    path = folder / "study.toml"
    path.write_text(text)
    return path


def command(path: Path):
    return load(f"{path}:trainable")


def gone(pid: int, seconds: float = 15.0) -> bool:
    """The process has ended (a zombie awaiting its reaper counts as ended)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def test_a_script_logs_into_the_run_hypotune_opened_and_its_metrics_are_read_back(workdir):
    trainable = command(write_study(workdir))
    seen = []
    result = hypotune.train(trainable=trainable, x=2.0, on_epoch=seen.append)
    assert result.status == "finished" and result.metrics["val_loss"] == pytest.approx(2 / 3)
    assert [int(m["epoch"]) for m in seen] == [1, 2, 3]  # the steps it logged, reported as epochs
    client = Tracker().client
    history = client.get_metric_history(result.run_id, "val_loss")
    logged = [(m.step, m.value) for m in history]
    assert logged == [(1, 2.0), (2, 1.0), (3, pytest.approx(2 / 3))]  # each value once
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.params["x"] == "2.0"
    output = Path(client.download_artifacts(result.run_id, "command-output.txt", str(workdir))).read_text()
    assert output.startswith("$ ") and "script.py 3 2.0 0.0" in output and "done" in output


def test_an_infinite_loss_is_a_diverged_run(workdir):
    result = hypotune.train(trainable=command(write_study(workdir)), x=-1.0, epochs=1)
    assert result.status == "diverged" and result.metrics["val_loss"] == float("inf")


def test_a_failing_script_is_a_failed_run_that_keeps_its_stderr_tail(workdir):
    fails = "import sys\nprint('out')\nsys.stderr.write('noise\\n' * 30 + 'ValueError: bad x')\nsys.exit(3)"
    trainable = command(write_study(workdir, fails))
    with pytest.raises(CommandFailed, match="exited with status 3") as caught:
        hypotune.train(trainable=trainable)
    message = str(caught.value)
    assert message.endswith("ValueError: bad x") and message.count("noise") == 19  # its last 20 lines
    (run,) = Tracker().runs(Tracker().experiment("train"))
    assert run.info.status == "FAILED"


def test_a_script_that_logs_none_of_its_metrics_fails_and_says_what_is_missing(workdir):
    trainable = command(write_study(workdir, "print('trained, but logged nothing')\n"))
    with pytest.raises(CommandFailed, match="(?s)logged no val_loss, test_loss to its run .*logged nothing"):
        hypotune.train(trainable=trainable)


def test_a_script_past_its_timeout_is_stopped_with_what_it_started(workdir):
    trainable = command(write_study(workdir, SLEEPS, {"timeout = 60": "timeout = 2"}))
    with pytest.raises(CommandFailed, match="ran past its timeout of 2 s"):
        hypotune.train(trainable=trainable)
    (name,) = [p.name for p in (workdir / "pids").iterdir()]
    assert all(gone(int(pid)) for pid in name.split("-"))


def test_a_program_that_does_not_exist_is_named(workdir):
    trainable = command(write_study(workdir, replace={'"python", "script.py"': '"no-such-program"'}))
    with pytest.raises(ConfigError, match="no program 'no-such-program'"):
        hypotune.train(trainable=trainable)


def test_a_search_can_prune_a_script_that_logs_its_epochs(workdir):
    trainable = command(write_study(workdir))
    tracker = Tracker()
    run_id = tracker.start_run(tracker.experiment("t"), "pruned", {})
    events = []
    log = Log(
        lambda metrics, stored: events.append(stored),
        Runtime(),
        tuning=True,
        should_stop=lambda epoch: epoch >= 2,
        run_id=run_id,
        tracking_uri=tracker.uri,
    )
    result = trainable.run(trainable.settings(epochs=100, pause=0.2), 0, log)
    assert result.status == "pruned" and 2 <= result.epochs < 100
    assert events and all(events)  # the script logged them: not logged twice


@pytest.mark.parametrize(
    "replace, message",
    [
        ({"timeout = 60": "timout = 60"}, "unknown setting 'timout' (did you mean 'timeout'?)"),
        ({'"{pause}"]': '"{paus}"]'}, "unknown setting 'paus' (did you mean 'pause'?)"),
        ({'command = ["python"': 'command = [""'}, "command must be a list of non-empty strings"),
        ({"pause = 0.0": "pause = [0.0]"}, "setting 'pause': its default must be"),
        ({'epochs = "epochs"': 'epochs = "epoch"'}, "unknown setting 'epoch' (did you mean 'epochs'?)"),
        ({"timeout = 60": "timeout = -1"}, "timeout must be a number of seconds"),
        ({'val_loss = "minimize",': 'val_loss = "lower",'}, "'lower'; valid: minimize, maximize"),
        ({"pause = 0.0": "lambda = 0.0"}, "setting 'lambda': a name must be an identifier, not a Python"),
        ({'epochs = "epochs"': 'epochs = "x"'}, "the setting that counts epochs must be an integer"),
        ({'"{pause}"]': '"{pause:.2f}"]'}, "write {pause}, without a format or conversion"),
        ({"timeout = 60": "timeout = nan"}, "timeout must be a number of seconds"),
        ({"far = { x = 3.0 }": "far = { y = 3.0 }"}, "unknown setting 'hypotheses[0] (start).arms.far.y'"),
    ],
)
def test_a_mistake_in_a_command_trainable_is_one_line_naming_it(workdir, replace, message):
    with pytest.raises(StudyError, match=None) as caught:
        hypotune.load_study(write_study(workdir, replace=replace))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_its_settings_are_typed_by_their_defaults(workdir):
    study = hypotune.load_study(write_study(workdir))
    assert study.trainable.name == "python script.py"
    with pytest.raises(StudyError, match="x"):
        hypotune.load_study(write_study(workdir, replace={"x = 3.0": 'x = "far"'}))


@pytest.mark.parametrize("how", ["ctrl-c", "kill -9"])
def test_ctrl_c_or_kill_9_of_hypotune_leaves_no_script_running(workdir, how):
    path = write_study(workdir, SLEEPS)
    process = subprocess.Popen(
        [sys.executable, "-m", "hypotune.cli", "study", "run", str(path), "--workers", "2"],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while len(list((workdir / "pids").glob("*"))) < 2 and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    pids = [int(pid) for p in (workdir / "pids").iterdir() for pid in p.name.split("-")]
    assert len(pids) == 4  # two scripts in flight, each with a child
    process.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
    process.communicate(timeout=60)
    assert all(gone(pid) for pid in pids)
    if how == "ctrl-c":
        assert process.returncode == 130
        tracker = Tracker()
        assert not tracker.runs(tracker.experiment("scripted"), "attributes.status = 'RUNNING'")
    for pid in pids:  # should a check fail, leave nothing behind
        if not gone(pid, 0):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_the_command_line_trains_a_command_trainable_with_a_flag_per_setting(workdir, capsys):
    from hypotune.cli.parser import main

    write_study(workdir, replace={"pause = 0.0": "pause = 0.0\nthreads = 1"})  # named like --threads
    arguments = ["train", "--trainable", "study.toml:trainable", "--x", "3.0", "--epochs", "2"]
    assert main([*arguments, "--threads", "1", "--set", "threads=2"]) == 0
    assert "1.5" in capsys.readouterr().out  # val_loss 3.0 / 2, read back from the run
