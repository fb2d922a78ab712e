"""Executors run trials somewhere and report events; they know nothing of MLflow.

Every executor yields the same events (`hypotune.run.events`) for the same tasks: Started, an
Epoch per epoch, then Finished (the result, and weights as bytes) or Failed (a message).
Tasks are pulled from a source as capacity frees up, so a search can decide its next trial
after seeing the last one. After each epoch of a tuning task the worker waits for
`decide(key, epoch, stop)`: go on, or stop there (pruned). Waiting for the answer, rather than
checking a flag later, makes a search's pruning independent of timing, so it reproduces.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from hypotune.config import RunConfig, Runtime
from hypotune.errors import HypotuneError, WorkerError
from hypotune.run.events import ENDS, Event, Failed, Started

SLOT_BYTES = 96  # room for "<task key>|<epoch>|<0 or 1>" in a worker's decision slot


@dataclass(frozen=True)
class Task:
    key: str  # unique among the tasks of one run; names its events
    config: RunConfig
    trainable: str  # the reference a worker loads the trainable by (hypotune.trainables.load.load)
    tuning: bool = False  # a tuning trial: validation only (no test set, no weights); may be stopped
    run_id: str = ""  # the MLflow run it is recorded in, opened as it is handed out
    tracking_uri: str = ""  # the store that run lies in

    def message(self) -> tuple[Any, ...]:
        """What a worker is sent: plain values, for a pipe or a Ray task."""
        return (self.key, self.trainable, self.config.to_dict(), self.tuning, self.run_id, self.tracking_uri)


class TaskSource(Protocol):
    def next_task(self) -> Task | None: ...  # a task to start now, or None: nothing now

    def exhausted(self) -> bool: ...  # nothing more will ever come


class Executor(Protocol):
    def run(self, source: TaskSource) -> Iterator[Event]: ...

    def decide(self, key: str, epoch: int, stop: bool) -> None: ...


def decision_text(key: str, epoch: int, stop: bool) -> str:
    return f"{key}|{epoch}|{int(stop)}"


def stalled(source: TaskSource) -> RuntimeError:
    return RuntimeError("the task source has nothing to start and nothing running, yet is not exhausted")


def check_main_is_guarded() -> None:
    """Raise if trials are started from a script's top-level code outside an `if __name__ ==
    "__main__":` block. Each local worker process begins by importing the script that started it
    (as `__mp_main__`, so only guarded code is skipped): unguarded, every worker would run the
    script again, start the study again, and die before taking a trial. Nothing has started yet
    when this raises. Scripts run with `python -c`, notebooks and the `hypotune` command are not
    imported again and pass."""
    import ast
    import sys
    from multiprocessing import spawn

    main = sys.modules.get("__main__")
    prepared = spawn.get_preparation_data("hypotune")
    path = getattr(main, "__file__", None)
    if main is None or not path or not {"init_main_from_path", "init_main_from_name"} & prepared.keys():
        return
    frame = sys._getframe()
    while frame is not None and not (frame.f_globals is vars(main) and frame.f_code.co_name == "<module>"):
        frame = frame.f_back
    if frame is None:
        return
    line = frame.f_lineno
    try:
        with open(path, encoding="utf-8") as source:
            tree = ast.parse(source.read())
    except (OSError, SyntaxError, ValueError):
        return
    for statement in tree.body:
        if statement.lineno <= line <= (statement.end_lineno or statement.lineno):
            guard = isinstance(statement, ast.If) and any(
                isinstance(node, ast.Name) and node.id == "__name__" for node in ast.walk(statement.test)
            )
            if not guard:
                raise HypotuneError(
                    f"{path}, line {line}, starts trials from the script's top level, and each worker "
                    'process imports the script again: put its work under `if __name__ == "__main__":` '
                    "(see docs/api.md)"
                )
            return


class LocalExecutor:
    """A pool of long-lived worker processes on this machine, one thread each by default.

    Workers start from a forkserver that has already imported hypotune and the trainable's
    `preload` modules (torch), so a worker costs a fork, not a fresh interpreter; each keeps
    what its trainable caches (datasets) across trials.
    """

    def __init__(
        self,
        workers: int,
        runtime: Runtime,
        poll_seconds: float = 0.5,
        target: Any = None,
        preload: tuple[str, ...] = (),
    ) -> None:
        self.workers = workers
        self.preload = preload  # modules the forkserver imports once for all workers (torch)
        self.runtime = runtime
        self.poll_seconds = poll_seconds
        self.target = target  # the worker's main function (default: hypotune.run.worker.worker_main)
        self.slots: dict[str, Any] = {}  # running task key -> its worker's decision slot

    def decide(self, key: str, epoch: int, stop: bool) -> None:
        slot = self.slots.get(key)
        if slot is not None:
            slot.value = decision_text(key, epoch, stop).encode()

    def run(self, source: TaskSource) -> Iterator[Event]:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["hypotune.run.worker", *self.preload])
        # Each worker has its own inbox and its own pipe back, and is handed one task at a time:
        # the coordinator always knows which task a worker holds, so one that dies, even between
        # taking a task and saying it started, is reported as failed instead of waited for; and
        # no lock is shared, so a worker killed mid-message (kill -9, the OOM killer) cannot
        # block the others' events, as it could with one queue for all.
        workers: dict[int, tuple[Any, Any, Any]] = {}  # pid -> (process, decision slot, inbox)
        pipes: dict[Any, int] = {}  # the read end of each worker's pipe -> its pid
        in_flight: dict[str, int] = {}  # task key -> the worker it was handed to
        served: set[int] = set()  # workers that have started a task
        failed_starts = 0

        def start_worker() -> int:
            from hypotune.run.worker import worker_main

            slot = context.Array("c", SLOT_BYTES, lock=False)
            inbox = context.SimpleQueue()
            reader, writer = context.Pipe(duplex=False)
            process = context.Process(
                target=self.target or worker_main, args=(inbox, writer, self.runtime, slot), daemon=True
            )
            process.start()
            writer.close()  # the worker holds the only write end: its death reads as end of file
            workers[process.pid] = (process, slot, inbox)
            pipes[reader] = process.pid
            return process.pid

        def receive() -> Iterator[Event]:
            """Events from every worker with something to say; a pipe at its end is a worker gone."""
            for reader in multiprocessing.connection.wait(list(pipes), timeout=self.poll_seconds):
                try:
                    yield reader.recv()
                except (EOFError, OSError):  # dead; dead_workers reports its task
                    del pipes[reader]
                    reader.close()

        def feed() -> None:
            while len(in_flight) < self.workers and (task := source.next_task()) is not None:
                busy = set(in_flight.values())
                idle = [pid for pid in workers if pid not in busy]
                pid = idle[0] if idle else start_worker()
                workers[pid][2].put(task.message())
                in_flight[task.key] = pid

        try:
            feed()
            while in_flight:
                received = list(receive())
                if not received:
                    lost, dead_on_start = dead_workers(workers, in_flight, served)
                    failed_starts += dead_on_start
                    if failed_starts >= 3:  # a broken environment, not a bad trial
                        raise WorkerError("worker processes exit before taking a trial; run one "
                                          "trial with `hypotune train` to see why") from None  # fmt: skip
                    for key, exitcode in lost:
                        del in_flight[key]
                        self.slots.pop(key, None)
                        yield Failed(key, f"worker process died (exit code {exitcode})")
                    feed()
                    continue
                for event in received:
                    if isinstance(event, Started):
                        served.add(event.worker)
                        self.slots[event.key] = workers[event.worker][1]
                    elif isinstance(event, ENDS):
                        in_flight.pop(event.key, None)
                        self.slots.pop(event.key, None)
                    yield event
                    if isinstance(event, ENDS):
                        feed()
            if not source.exhausted():
                raise stalled(source)
        finally:
            for process, _, _ in workers.values():
                if process.is_alive():
                    process.terminate()
            for process, _, _ in workers.values():
                process.join(timeout=5)
            for reader in pipes:
                reader.close()
            self.slots.clear()


def dead_workers(
    workers: dict[int, tuple[Any, ...]], in_flight: dict[str, int], served: set[int]
) -> tuple[list[tuple[str, int]], int]:
    """Forget exited workers: the (task key, exit code) each was handed, and how many never started one."""
    lost, dead_on_start = [], 0
    for pid, (process, *_) in list(workers.items()):
        if process.is_alive():
            continue
        del workers[pid]
        dead_on_start += pid not in served
        lost += [(key, process.exitcode) for key, owner in in_flight.items() if owner == pid]
    return lost, dead_on_start


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
        self.board: Any = None  # the actor that holds the decisions on tuning tasks' epochs

    def decide(self, key: str, epoch: int, stop: bool) -> None:
        if self.board is not None:
            self.board.decide.remote(decision_text(key, epoch, stop))

    def capacity(self, ray: Any) -> int:
        """How many trials the cluster can run at once; more would only queue in Ray."""
        resources = ray.cluster_resources()
        slots = resources.get("CPU", 1) / max(self.cpus_per_trial, 1e-9)
        if self.gpus_per_trial:
            slots = min(slots, resources.get("GPU", 0) / self.gpus_per_trial)
        return max(1, int(slots))

    def run(self, source: TaskSource) -> Iterator[Event]:
        ray = import_ray()
        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        from ray.util.queue import Empty, Queue

        from hypotune.run.worker import await_decision, run_trial

        events = Queue()

        @ray.remote(num_cpus=0)
        class DecisionBoard:
            def __init__(self) -> None:
                self.decisions: set[str] = set()

            def decide(self, text: str) -> None:
                self.decisions.add(text)

            def decision(self, key: str, epoch: int) -> bool | None:
                for stop in (False, True):
                    if decision_text(key, epoch, stop) in self.decisions:
                        return stop
                return None

        self.board = DecisionBoard.remote()

        def remote_trial(message: tuple[Any, ...], runtime: Runtime, handles: Any) -> str:
            key, trainable, config_dict, tuning, *run = message
            queue_handle, board = handles

            def should_stop(epoch: int) -> bool:
                return await_decision(lambda: ray.get(board.decision.remote(key, epoch)))

            run_trial(key, trainable, config_dict, runtime, queue_handle.put, tuning, should_stop, tuple(run))
            return key

        # max_retries=0: a lost task is reported as failed and retried by the next run, as locally
        resources = dict(num_cpus=self.cpus_per_trial, num_gpus=self.gpus_per_trial, max_retries=0)
        remote = ray.remote(**resources)(remote_trial)
        capacity = self.capacity(ray)
        pending: dict[Any, str] = {}  # object ref -> task key
        remaining: set[str] = set()

        def feed() -> None:
            while len(remaining) < capacity and (task := source.next_task()) is not None:
                handles = (events, self.board)
                ref = remote.remote(task.message(), self.runtime, handles)
                pending[ref] = task.key
                remaining.add(task.key)

        try:
            feed()
            while remaining:
                try:
                    event = events.get(timeout=self.poll_seconds)
                except Empty:
                    done, _ = ray.wait(list(pending), timeout=0, num_returns=len(pending))
                    for ref in done:
                        key = pending.pop(ref)
                        try:
                            ray.get(ref)
                        except Exception as error:  # the task, its worker or its node died
                            if key in remaining:
                                remaining.discard(key)
                                yield Failed(key, f"Ray task lost: {type(error).__name__}: {error}")
                    feed()
                    continue
                if isinstance(event, ENDS):
                    remaining.discard(event.key)
                yield event
                if isinstance(event, ENDS):
                    feed()
            if not source.exhausted():
                raise stalled(source)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            events.shutdown()
            self.board = None


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise HypotuneError("the Ray executor needs Ray: pip install 'hypotune[ray]'") from None
    return ray
