"""A trainable with no torch and no data: a noisy loss that a setting moves, for engine tests.

Workers import it by its reference, "tests.toy:TOY", as they would a user's trainable.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass

from hypotune.config import setting
from hypotune.trainables.protocol import Log, Result, Trainable


@dataclass(frozen=True)
class Toy:
    x: float = setting(0.0, "where the toy model sits: the loss is lowest at 1")
    lr: float = setting(0.5, "a nuisance setting: the loss is lowest at 0.5")
    epochs: int = setting(3, "epochs")
    noise: float = setting(0.01, "seed-to-seed noise of the loss")
    fail: bool = setting(False, "raise instead of training")


def train(settings: Toy, seed: int, log: Log) -> Result | dict[str, float]:
    if settings.fail:
        raise RuntimeError("the toy was told to fail")
    arm = f"{seed} {settings.x} {settings.lr}"
    arm += f" {settings.best_lr}" if hasattr(settings, "best_lr") else ""
    rng = random.Random(arm)  # each arm its own noise
    loss = 0.0
    for epoch in range(1, settings.epochs + 1):
        step = abs(settings.lr - getattr(settings, "best_lr", 0.5))  # the nuisance's own cost
        loss = (settings.x - 1) ** 2 + step + 1 / epoch + rng.gauss(0, settings.noise)
        if log({"epoch": epoch, "val_loss": loss}):
            return Result({"val_loss": loss}, status="pruned", epochs=epoch)
    if loss > 100:
        return Result({"val_loss": loss}, status="diverged", epochs=settings.epochs)
    return {"val_loss": loss} if log.tuning else {"val_loss": loss, "test_loss": loss}  # no test in a search


TOY = Trainable(
    name="toy",
    settings=Toy,
    train=train,
    ref="tests.toy:TOY",
    metrics={"val_loss": True, "test_loss": True},
    deciding=("val_loss",),
    failure={"val_loss": 100.0},
    epochs=lambda settings: settings.epochs,
    cost=lambda settings: settings.epochs,
    budget=("epochs",),
)


@dataclass(frozen=True)
class SlowToy(Toy):
    pause: float = setting(0.5, "seconds each epoch takes: long enough to interrupt a trial in flight")


class SlowLog:
    """A trial's Log whose every epoch first takes `pause` seconds."""

    def __init__(self, log: Log, pause: float) -> None:
        self.log, self.pause, self.tuning = log, pause, log.tuning

    def __call__(self, metrics: dict[str, float]) -> bool:
        time.sleep(self.pause)
        return self.log(metrics)


def train_slowly(settings: SlowToy, seed: int, log: Log) -> Result | dict[str, float]:
    return train(settings, seed, SlowLog(log, settings.pause))  # type: ignore[arg-type]


# The toy with epochs that take time, for Ctrl-C and kill -9 (its own settings class, so that
# the toy's trial keys, and the stores written with them, stay as they are).
SLOW_TOY = dataclasses.replace(
    TOY, name="slow_toy", settings=SlowToy, train=train_slowly, ref="tests.toy:SLOW_TOY"
)


@dataclass(frozen=True)
class TunedToy(Toy):
    best_lr: float = setting(0.5, "the lr at which this arm's loss is lowest: arms may differ in it")


# The toy whose arms may want different step sizes, for searches that change a verdict.
TUNED_TOY = dataclasses.replace(TOY, name="tuned_toy", settings=TunedToy, ref="tests.toy:TUNED_TOY")


def train_with_size(settings: SlowToy, seed: int, log: Log) -> Result | dict[str, float]:
    """The slow toy that also logs a size, so that a report draws its size-vs-test Pareto view."""
    result = train_slowly(settings, seed, log)
    size = {"param_count": 1000 + 100 * settings.x}
    if isinstance(result, Result):
        return dataclasses.replace(result, metrics=result.metrics | size)
    return result | size


PLANTED_TOY = dataclasses.replace(
    SLOW_TOY,
    name="planted_toy",
    train=train_with_size,
    ref="tests.toy:PLANTED_TOY",
    metrics={"val_loss": True, "test_loss": True, "param_count": True},
    size="param_count",
)


def train_and_keep(settings: Toy, seed: int, log: Log) -> Result | dict[str, float]:
    """The toy that keeps its "weights" as a run artifact, as a model's trainer does."""
    result = train(settings, seed, log)
    if log.tuning or isinstance(result, Result):
        return result
    return Result(dict(result), artifacts={"model.pt": f"{settings} {seed}".encode()})


WEIGHTED_TOY = dataclasses.replace(
    TOY, name="weighted_toy", train=train_and_keep, ref="tests.toy:WEIGHTED_TOY"
)
