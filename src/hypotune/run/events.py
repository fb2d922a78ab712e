"""What an executor reports about a task, in the order it happens: started, an epoch at a time,
then finished or failed. Plain frozen dataclasses: they cross process pipes and Ray queues."""

from __future__ import annotations

from dataclasses import dataclass

from hypotune.trainables.protocol import Result


@dataclass(frozen=True)
class Started:
    key: str  # the task's key
    worker: int  # the process id of the worker that took it


@dataclass(frozen=True)
class Epoch:
    key: str
    metrics: dict[str, float]  # this epoch's metrics, "epoch" among them
    stored: bool = False  # already in the task's run: a command logged them itself


@dataclass(frozen=True)
class Finished:
    key: str
    result: Result  # status, metrics, how it ran, artifacts to keep


@dataclass(frozen=True)
class Failed:
    key: str
    message: str  # one line for a person, or a traceback for a bug

    @property
    def last_line(self) -> str:
        lines = self.message.strip().splitlines()
        return lines[-1] if lines else "no message"


Event = Started | Epoch | Finished | Failed
ENDS = (Finished, Failed)  # the events that end a task
