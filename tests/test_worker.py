"""Inside a worker process: one task of any trainable becomes Started, Epochs, then Finished or
Failed; a tuning trial waits for the coordinator's answer after each epoch."""

from __future__ import annotations

import os

from hypotune.config import Runtime
from hypotune.run.events import Epoch, Failed, Finished, Started
from hypotune.run.worker import await_decision, run_trial

from .toy import TOY


def events_of(config: dict, tuning: bool = False, should_stop=None, ref: str = TOY.ref) -> list:
    events: list = []
    run_trial("k", ref, config, Runtime(), events.append, tuning, should_stop)
    return events


def test_a_trial_reports_its_start_each_epoch_and_its_result():
    events = events_of({"x": 1.0, "epochs": 3, "seed": 2})
    assert events[0] == Started("k", os.getpid())
    assert [e.metrics["epoch"] for e in events[1:-1]] == [1.0, 2.0, 3.0] and all(
        isinstance(e, Epoch) for e in events[1:-1]
    )
    assert isinstance(events[-1], Finished) and events[-1].result.status == "finished"
    assert events[-1].result.metrics["val_loss"] == events[-2].metrics["val_loss"]


def test_a_tuning_trial_stops_where_the_search_says_and_keeps_no_artifacts():
    events = events_of({"epochs": 5}, tuning=True, should_stop=lambda epoch: epoch == 2)
    assert [e.metrics["epoch"] for e in events if isinstance(e, Epoch)] == [1.0, 2.0]
    assert events[-1].result.status == "pruned" and events[-1].result.artifacts == {}


def test_a_mistake_is_one_line_and_a_bug_keeps_its_traceback():
    (started, failed) = events_of({"depth": 3})
    assert isinstance(failed, Failed) and failed.message.startswith("unknown setting 'depth'")
    *_, bug = events_of({"fail": True})
    assert isinstance(bug, Failed) and "Traceback" in bug.message and bug.last_line.endswith("told to fail")
    *_, missing = events_of({}, ref="tests.toy:NOTHING")
    assert missing.message.endswith("tests.toy has no Trainable or training function named 'NOTHING'")


def test_a_decision_never_given_means_go_on():
    answers = iter([None, None, True])
    assert await_decision(lambda: next(answers), timeout=5) is True
    assert await_decision(lambda: None, timeout=0.05) is False
