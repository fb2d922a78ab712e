"""What runs inside a worker process: train trials of any trainable, report events; never
touches tracking."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from hypotune.config import Runtime, run_config_from_dict
from hypotune.errors import HypotuneError
from hypotune.run.events import Epoch, Failed, Finished, Started
from hypotune.trainables.command import stop_all
from hypotune.trainables.load import load
from hypotune.trainables.protocol import Log


def run_trial(
    key: str,
    trainable_ref: str,
    config_dict: dict[str, Any],
    runtime: Runtime,
    emit: Callable[[Any], None],
    tuning: bool = False,
    should_stop: Callable[[int], bool] | None = None,
    run: tuple[str, ...] = (),
) -> None:
    """Train one task with the trainable `trainable_ref` names, emitting Started, an Epoch per
    epoch, then Finished or Failed.

    A tuning trial never sees the test split and keeps no artifacts; after each of its epochs
    `should_stop(epoch)` waits for the search's answer: go on, or stop there (pruned). `run` is
    (run id, tracking URI) of the MLflow run the trial is recorded in, for a trainable that logs
    to it itself.
    """
    emit(Started(key, os.getpid()))
    try:
        trainable = load(trainable_ref)
        config = run_config_from_dict(trainable.settings, config_dict)
        log = Log(
            lambda metrics, stored: emit(Epoch(key, metrics, stored)), runtime, tuning, should_stop, *run
        )
        result = trainable.run(config.settings, config.seed, log)
        if tuning:
            result.artifacts = {}
        # Artifacts travel as bytes: a trainable's tensors sent through a queue would share
        # memory by file descriptor, which the coordinator may read after the worker moved on.
        emit(Finished(key, result))
    except HypotuneError as error:
        emit(Failed(key, str(error)))
    except Exception:  # a bug or a resource problem: keep the traceback for the failed run
        emit(Failed(key, traceback.format_exc()))


def await_decision(read: Callable[[], bool | None], timeout: float = 120.0) -> bool:
    """Poll `read` until the coordinator has decided (True: stop); go on if it never does."""
    deadline = time.monotonic() + timeout
    while (decision := read()) is None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return decision


def exit_with_coordinator() -> None:
    """End this process as soon as the process that started it is gone.

    A coordinator killed with SIGKILL cannot end its workers; each one watches the pipe its
    coordinator holds open (multiprocessing's parent sentinel) and exits when it closes, so
    no worker lives on holding memory and a core.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        stop_all()  # a command trainable's script goes with its worker
        os._exit(1)  # a trial in flight is lost anyway: its run is reaped on the next start

    threading.Thread(target=watch, name="coordinator-watch", daemon=True).start()


def worker_main(tasks: Any, events: Any, runtime: Runtime, slot: Any) -> None:
    """Take (key, trainable reference, config, tuning) tasks from this worker's inbox until None,
    and send events down its own pipe (`events`); the coordinator handles Ctrl-C and ends workers.

    The coordinator answers a tuning task's epochs in `slot`, as "<key>|<epoch>|<stop 0 or 1>".
    """
    exit_with_coordinator()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The coordinator ends workers with SIGTERM: exit through the trial's `finally`s, so that a
    # command trainable's script is ended too rather than left running.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    def read(key: str, epoch: int) -> bool | None:
        key_epoch, _, stop = slot.value.decode().rpartition("|")
        return stop == "1" if key_epoch == f"{key}|{epoch}" else None

    while (task := tasks.get()) is not None:
        key, trainable_ref, config_dict, tuning, *run = task
        should_stop = lambda epoch, k=key: await_decision(lambda: read(k, epoch))  # noqa: E731
        run_trial(key, trainable_ref, config_dict, runtime, events.send, tuning, should_stop, tuple(run))
