"""What runs inside a worker process: train trials, report events; never touches tracking."""

from __future__ import annotations

import functools
import os
import signal
import traceback
from typing import Any

import torch

from hypotune.config import DataConfig, Runtime, run_config_from_dict
from hypotune.data import Dataset, make_dataset
from hypotune.errors import HypotuneError
from hypotune.train import TrialResult, serialize_weights, train


@functools.lru_cache(maxsize=8)
def cached_dataset(config: DataConfig, data_dir: str) -> Dataset:
    return make_dataset(config, data_dir)


def run_trial(key: str, config_dict: dict[str, Any], runtime: Runtime, emit: Any) -> None:
    """Train one trial, emitting ("started" | "epoch" | "finished" | "failed", key, payload)."""
    emit(("started", key, os.getpid()))
    try:
        config = run_config_from_dict(config_dict)
        dataset = cached_dataset(config.data, runtime.data_dir)
        result = train(config, dataset, runtime, on_epoch=lambda metrics: emit(("epoch", key, metrics)))
        # Weights travel as bytes: tensors sent through a queue would share memory by file
        # descriptor, which the coordinator may read after the worker has moved on.
        payload = TrialResult(result.status, result.epochs, result.metrics, None)
        emit(("finished", key, (payload, serialize_weights(result.state_dict))))
    except HypotuneError as error:
        emit(("failed", key, str(error)))
    except Exception:  # a bug or a resource problem: keep the traceback for the failed run
        emit(("failed", key, traceback.format_exc()))


def worker_main(tasks: Any, events: Any, runtime: Runtime) -> None:
    """Take (key, config) tasks until None; the coordinator handles Ctrl-C and ends workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(runtime.threads)
    while (task := tasks.get()) is not None:
        run_trial(*task, runtime, events.put)
