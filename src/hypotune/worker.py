"""What runs inside a worker process: train trials, report events; never touches tracking."""

from __future__ import annotations

import functools
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

from hypotune.config import DataConfig, Runtime, run_config_from_dict
from hypotune.data import Dataset, make_dataset
from hypotune.errors import HypotuneError
from hypotune.events import Epoch, Failed, Finished, Started
from hypotune.trainer import TrialResult, serialize_weights, train


@functools.lru_cache(maxsize=8)
def cached_dataset(config: DataConfig, data_dir: str) -> Dataset:
    return make_dataset(config, data_dir)


def run_trial(
    key: str,
    config_dict: dict[str, Any],
    runtime: Runtime,
    emit: Callable[[Any], None],
    tuning: bool = False,
    should_stop: Callable[[int], bool] | None = None,
) -> None:
    """Train one task, emitting Started, an Epoch per epoch, then Finished or Failed.

    A tuning trial never sees the test split and keeps no weights; after each of its epochs
    `should_stop(epoch)` waits for the search's answer: go on, or stop there (pruned).
    """
    emit(Started(key, os.getpid()))

    def on_epoch(metrics: dict[str, float]) -> bool:
        emit(Epoch(key, metrics))
        return not (tuning and should_stop and should_stop(int(metrics["epoch"])))

    try:
        config = run_config_from_dict(config_dict)
        dataset = cached_dataset(config.data, runtime.data_dir)
        result = train(config, dataset, runtime, on_epoch=on_epoch, evaluate_test=not tuning)
        # Weights travel as bytes: tensors sent through a queue would share memory by file
        # descriptor, which the coordinator may read after the worker has moved on.
        payload = TrialResult(result.status, result.epochs, result.metrics, None, result.ran_with)
        weights = None if tuning else serialize_weights(result.state_dict)
        emit(Finished(key, payload, weights))
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
        os._exit(1)  # a trial in flight is lost anyway: its run is reaped on the next start

    threading.Thread(target=watch, name="coordinator-watch", daemon=True).start()


def worker_main(tasks: Any, events: Any, runtime: Runtime, slot: Any) -> None:
    """Take (key, config, tuning) tasks from this worker's inbox until None, and send events down
    its own pipe (`events`); the coordinator handles Ctrl-C and ends workers.

    The coordinator answers a tuning task's epochs in `slot`, as "<key>|<epoch>|<stop 0 or 1>".
    """
    exit_with_coordinator()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(runtime.threads)

    def read(key: str, epoch: int) -> bool | None:
        key_epoch, _, stop = slot.value.decode().rpartition("|")
        return stop == "1" if key_epoch == f"{key}|{epoch}" else None

    while (task := tasks.get()) is not None:
        key, config_dict, tuning = task
        should_stop = lambda epoch, k=key: await_decision(lambda: read(k, epoch))  # noqa: E731
        run_trial(key, config_dict, runtime, events.send, tuning, should_stop)
