import math
import signal

import mlflow
import pytest

from hypotune.config import Runtime, read_metric
from hypotune.store.tags import PREFIX
from hypotune.store.tracker import Tracker, flat_params, interrupts_held, tag_filter

from .helpers import tiny_config  # settings in tables: what flat_params flattens


def test_a_trial_is_readable_with_search_runs(workdir):
    from hypotune.config import RunConfig
    from hypotune.trainables.protocol import Log, result_of

    from .toy import TOY, Toy

    tracker = Tracker()
    experiment_id = tracker.experiment("demo")
    assert tracker.experiment("demo") == experiment_id
    config = RunConfig(Toy(x=2.0), 4)
    run_id = tracker.start_run(experiment_id, "one", {f"{PREFIX}key": config.key()})
    tracker.log_config(run_id, config, Runtime())
    log = Log(lambda metrics, stored: tracker.log_metrics(run_id, metrics, int(metrics["epoch"])), Runtime())
    result = result_of(TOY.train(config.settings, config.seed, log))
    tracker.finish(run_id, result.status, result.metrics, {"model.pt": b"weights"})

    mlflow.set_tracking_uri(tracker.uri)
    runs = mlflow.search_runs(experiment_names=["demo"])
    row = runs.iloc[0]
    assert row["status"] == "FINISHED" and row[f"tags.{PREFIX}key"] == config.key()
    assert row["params.x"] == "2.0" and row["params.epochs"] == "3" and row["params.seed"] == "4"
    assert row["metrics.test_loss"] == result.metrics["test_loss"]
    history = tracker.client.get_metric_history(run_id, "val_loss")
    assert [m.step for m in history] == [1, 2, 3]
    artifacts = {a.path for a in tracker.client.list_artifacts(run_id)}
    assert {"config.toml", "model.pt"} <= artifacts
    assert (workdir / "runs" / "artifacts" / "demo").is_dir()


def test_infinite_metrics_read_back_as_infinite(workdir):
    tracker = Tracker()
    run_id = tracker.start_run(tracker.experiment("inf"), "d", {})
    tracker.finish(run_id, "diverged", {"val_loss": math.inf, "epochs_run": 1})
    stored = tracker.client.get_run(run_id).data.metrics["val_loss"]
    assert math.isinf(read_metric(stored))
    assert tracker.client.get_run(run_id).data.tags[f"{PREFIX}status"] == "diverged"


def test_stale_running_runs_are_marked_killed(workdir):
    tracker = Tracker()
    experiment_id = tracker.experiment("stale")
    orphan = tracker.start_run(experiment_id, "orphan", {})
    mine = tracker.start_run(experiment_id, "mine", {})
    assert tracker.reap_stale(experiment_id, keep=[mine]) == [orphan]
    assert tracker.client.get_run(orphan).info.status == "KILLED"
    assert tracker.client.get_run(mine).info.status == "RUNNING"


def test_params_cover_every_setting():
    params = flat_params(tiny_config())
    assert params["model.width"] == "8" and params["seed"] == "0"
    assert len(params) == 1 + sum(len(v) for v in tiny_config().to_dict().values() if isinstance(v, dict))


@pytest.fixture
def python_sigint():
    """Python's own Ctrl-C handler, which a test run as a background job (SIGINT ignored) lacks."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_inside_held_store_writes_takes_effect_when_they_end(workdir, python_sigint):
    tracker = Tracker()
    run_id = tracker.start_run(tracker.experiment("demo"), "one", {})
    with pytest.raises(KeyboardInterrupt), interrupts_held():
        signal.raise_signal(signal.SIGINT)
        tracker.log_metrics(run_id, {"loss": 1.0}, step=1)  # still runs, whole
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    tracker.fail(run_id, "interrupted", status="KILLED")  # the store is not left locked
    run = tracker.client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.metrics == {"loss": 1.0}
    with interrupts_held():  # nothing arrives: nothing is raised
        tracker.log_metrics(run_id, {"loss": 0.5}, step=2)


def test_held_store_writes_outside_the_main_thread_hold_nothing(python_sigint):
    import threading

    errors = []

    def write() -> None:
        try:
            with interrupts_held():  # signal.signal would raise here: only the main thread may
                pass
        except Exception as error:
            errors.append(error)

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
    assert errors == [] and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_every_filter_is_built_in_one_place_and_never_quotes_a_quote(workdir):
    tracker = Tracker()
    experiment_id = tracker.experiment("filters")
    wanted = tracker.start_run(experiment_id, "a", {f"{PREFIX}preset": "course", f"{PREFIX}kind": "trial"})
    tracker.start_run(experiment_id, "b", {f"{PREFIX}preset": "quick", f"{PREFIX}kind": "trial"})
    tracker.client.set_terminated(wanted, "FINISHED")
    query = tag_filter({f"{PREFIX}preset": "course", f"{PREFIX}kind": "trial"}, status="FINISHED")
    assert (
        query == f"attributes.status = 'FINISHED' and tags.`{PREFIX}preset` = 'course'"
        f" and tags.`{PREFIX}kind` = 'trial'"
    )
    assert [run.info.run_id for run in tracker.runs(experiment_id, query)] == [wanted]
    for value in ("it's", 'say "x"', "back\\slash", "tick`"):
        with pytest.raises(ValueError, match="cannot quote"):
            tag_filter({f"{PREFIX}preset": value})


def test_first_starts_at_once_on_a_fresh_store_all_succeed(tmp_path):
    import subprocess
    import sys

    store = str(tmp_path / "runs")
    code = (
        "from pathlib import Path; from hypotune.store.tracker import Tracker;"
        f"Tracker(store_dir=Path({store!r}))"
    )
    starts = [
        subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(3)
    ]
    errors = [start.communicate(timeout=120)[1] for start in starts]
    assert [start.returncode for start in starts] == [0, 0, 0], errors
