"""Executors run trials somewhere and report events; they know nothing of MLflow.

Every executor yields the same events for the same trials: ("started", key, worker),
("epoch", key, metrics), ("finished", key, (TrialResult, weights bytes)), ("failed", key, text).
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Iterator
from typing import Any, Protocol

from hypotune.config import RunConfig, Runtime

Event = tuple[str, str, Any]


class Executor(Protocol):
    def run(self, trials: list[tuple[str, RunConfig]]) -> Iterator[Event]: ...


class LocalExecutor:
    """A pool of long-lived worker processes on this machine, one torch thread each by default.

    Workers start from a forkserver that has already imported torch and hypotune, so a
    worker costs a fork, not a fresh interpreter; each keeps its datasets across trials.
    """

    def __init__(self, workers: int, runtime: Runtime, poll_seconds: float = 0.5) -> None:
        self.workers = workers
        self.runtime = runtime
        self.poll_seconds = poll_seconds

    def run(self, trials: list[tuple[str, RunConfig]]) -> Iterator[Event]:
        if not trials:
            return
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["hypotune.worker"])
        tasks, events = context.Queue(), context.Queue()
        for key, config in trials:
            tasks.put((key, config.to_dict()))
        processes = []

        def start_worker() -> None:
            from hypotune.worker import worker_main

            tasks.put(None)  # one stop sentinel per worker
            process = context.Process(target=worker_main, args=(tasks, events, self.runtime), daemon=True)
            process.start()
            processes.append(process)

        for _ in range(min(self.workers, len(trials))):
            start_worker()
        remaining = {key for key, _ in trials}
        running: dict[int, str] = {}  # worker pid -> trial key
        try:
            while remaining:
                try:
                    kind, key, payload = events.get(timeout=self.poll_seconds)
                except queue.Empty:
                    for process in [p for p in processes if not p.is_alive() and p.pid in running]:
                        key = running.pop(process.pid)
                        remaining.discard(key)
                        processes.remove(process)
                        yield ("failed", key, f"worker process died (exit code {process.exitcode})")
                        if remaining:
                            start_worker()
                    continue
                if kind == "started":
                    running[payload] = key
                elif kind in ("finished", "failed"):
                    remaining.discard(key)
                    running = {pid: k for pid, k in running.items() if k != key}
                yield kind, key, payload
        finally:
            for process in processes:
                if process.is_alive():
                    process.terminate()
            for process in processes:
                process.join(timeout=5)
            tasks.cancel_join_thread()
            events.cancel_join_thread()


class RayExecutor:
    """Trials as Ray tasks on a cluster (or a local Ray instance when no address is given).

    Workers stream their events through a Ray queue; the coordinator still writes MLflow
    alone. A task lost with its node is reported as failed, and the next run retries it.
    """

    def __init__(
        self, runtime: Runtime, address: str | None = None, cpus_per_trial: float = 1.0,
        gpus_per_trial: float = 0.0, poll_seconds: float = 0.5,
    ) -> None:  # fmt: skip
        self.runtime = runtime
        self.address = address
        self.cpus_per_trial = cpus_per_trial
        self.gpus_per_trial = gpus_per_trial
        self.poll_seconds = poll_seconds

    def run(self, trials: list[tuple[str, RunConfig]]) -> Iterator[Event]:
        if not trials:
            return
        ray = import_ray()
        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        from ray.util.queue import Empty, Queue

        from hypotune.worker import run_trial

        events = Queue()

        def remote_trial(key: str, config_dict: dict, runtime: Runtime, queue_handle: Any) -> str:
            import torch

            torch.set_num_threads(runtime.threads)
            run_trial(key, config_dict, runtime, queue_handle.put)
            return key

        # max_retries=0: a lost task is reported as failed and retried by the next run, as locally
        resources = dict(num_cpus=self.cpus_per_trial, num_gpus=self.gpus_per_trial, max_retries=0)
        task = ray.remote(**resources)(remote_trial)
        pending = {task.remote(key, config.to_dict(), self.runtime, events): key for key, config in trials}
        remaining = {key for key, _ in trials}
        try:
            while remaining:
                try:
                    kind, key, payload = events.get(timeout=self.poll_seconds)
                except Empty:
                    done, _ = ray.wait(list(pending), timeout=0, num_returns=len(pending))
                    for ref in done:
                        key = pending.pop(ref)
                        try:
                            ray.get(ref)
                        except Exception as error:  # the task, its worker or its node died
                            if key in remaining:
                                remaining.discard(key)
                                yield ("failed", key, f"Ray task lost: {type(error).__name__}: {error}")
                    continue
                if kind in ("finished", "failed"):
                    remaining.discard(key)
                yield kind, key, payload
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            events.shutdown()


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        from hypotune.errors import HypotuneError

        raise HypotuneError("the Ray executor needs Ray: pip install 'hypotune[ray]'") from None
    return ray
