"""The built-in trainable: a configurable CNN on Fashion-MNIST.

`config` (its settings), `data` (IDX files, splits, batches), `layers` and `model` (the network
from its settings), `trainer` (one training on one seed). `TRAINABLE` ties them to the engine's
protocol (`hypotune.trainables.load`). Importing this package does not import torch; training does.
"""

from __future__ import annotations

import math

from hypotune.config import RunConfig, Runtime
from hypotune.fashion.config import DataConfig, ModelConfig, Settings, TrainConfig
from hypotune.fashion.presets import TRAIN_PRESETS
from hypotune.trainables.protocol import Log, Result, Trainable

__all__ = ["TRAINABLE", "DataConfig", "ModelConfig", "Settings", "TrainConfig"]

FASHION_MNIST_TRAIN, FASHION_MNIST_TEST = 60_000, 10_000
CLASSES = 10


def train(settings: Settings, seed: int, log: Log) -> Result:
    """Train the CNN `settings` describe on `seed`, reporting each epoch to `log`."""
    from hypotune.fashion.data import cached_dataset
    from hypotune.fashion.trainer import mlflow_model, serialize_weights
    from hypotune.fashion.trainer import train as train_cnn

    dataset = cached_dataset(settings.data, log.runtime.data_dir)
    trained = train_cnn(
        RunConfig(settings, seed), dataset, log.runtime, on_epoch=lambda metrics: not log(metrics),
        evaluate_test=not log.tuning,
    )  # fmt: skip
    artifacts = {}
    if trained.state_dict is not None and not log.tuning:  # a finished final trial keeps its model
        artifacts["model.pt"] = serialize_weights(trained.state_dict)
        artifacts |= mlflow_model(settings, trained.state_dict)
    return Result(trained.metrics, trained.status, len(trained.epochs), trained.ran_with, artifacts)


def epochs(settings: Settings) -> int:
    return settings.train.epochs


def forward_passes(settings: Settings) -> int:
    """The images a trial pushes through its model, in forward passes: a training image counts
    three (forward and backward), an evaluated image one. Early stopping is not foreseen."""
    data, budget = settings.data, settings.train
    if data.validate_on_test:
        val, training = FASHION_MNIST_TEST, FASHION_MNIST_TRAIN
    else:  # the validation images are carved from the training split
        val, training = data.val_size, FASHION_MNIST_TRAIN - data.val_size
    per_epoch = budget.steps_per_epoch * budget.batch_size or data.train_subset or training
    evaluated = (settings.validations(val) + (data.test_size or FASHION_MNIST_TEST)) * (
        2 if data.eval_flip else 1
    )
    return 3 * per_epoch * budget.epochs + evaluated


def cost(settings: Settings) -> float:
    """A trial's compute, to start the longest first: its forward passes times the multiply-adds
    of one, weighted by how fast the model's kernels run here."""
    from hypotune.fashion.model import forward_cost

    return forward_cost(settings.model) * forward_passes(settings)


def check(settings: Settings) -> str:
    """An impossible or oversized model fails here, before any I/O; else its parameter count."""
    from hypotune.fashion.model import check_fits

    return f"{check_fits(settings).params:,} parameters" + evaluation_note(settings)


def evaluation_note(settings: Settings) -> str:
    """Where evaluation, not training, takes most of a run (the defaults: 19,200 images trained,
    24,000 evaluated), a clause that says so and names the cheap way; '' otherwise."""
    data, train = settings.data, settings.train
    if data.validate_on_test:
        return ""
    training_split = data.train_subset or 60_000 - data.val_size
    per_epoch = train.steps_per_epoch * train.batch_size if train.steps_per_epoch else training_split
    trained = per_epoch * train.epochs
    tested = data.test_size or 10_000
    validated = settings.validations(data.val_size)
    evaluated = validated + tested
    if evaluated <= trained:
        return ""
    return (
        f"; it trains on {trained:,} images and evaluates {evaluated:,} ({validated:,} validation "
        f"images over {train.epochs} epochs, {tested:,} test images at the end), which takes most "
        "of its time: the `try` preset answers in seconds"
    )


def prepare(runtime: Runtime) -> str:
    """Missing or corrupt data fails here, before anything starts."""
    from hypotune.fashion.data import read_raw

    raw = read_raw(runtime.data_dir)
    return f"Fashion-MNIST in {raw.source}: {len(raw.train):,} training and {len(raw.test):,} test images"


def recount(settings: Settings) -> dict[str, float]:
    """What the settings alone fix: the parameter count the audit checks each run's against."""
    from hypotune.fashion.model import model_size

    return {"param_count": float(model_size(settings.model).params)}


TRAINABLE = Trainable(
    name="fashion_mnist",
    settings=Settings,
    train=train,
    ref="hypotune.fashion:TRAINABLE",
    metrics={
        "val_loss": True,
        "best_val_loss": True,
        "val_acc": False,
        "test_loss": True,
        "test_acc": False,
        "train_loss": True,
    },  # fmt: skip
    deciding=("val_loss", "best_val_loss", "val_acc"),  # the test set never decides
    # A diverged run scores a uniform guess over the 10 classes (or the hypothesis's worst
    # finished run, where that is worse), so divergence counts as a failure.
    failure={"val_loss": math.log(CLASSES), "best_val_loss": math.log(CLASSES), "val_acc": 1 / CLASSES},
    epochs=epochs,
    cost=cost,
    check=check,
    prepare=prepare,
    recount=recount,
    budget=("train.epochs", "train.steps_per_epoch", "train.batch_size"),
    split=(
        "data.val_size",
        "data.split_seed",
        "data.train_subset",
        "data.test_size",
        "data.validate_on_test",
    ),  # fmt: skip
    biased="data.validate_on_test",
    split_seed="data.split_seed",
    presets=TRAIN_PRESETS,
    space={"train.lr": {"low": 1e-4, "high": 1e-2, "scale": "log"}},
    preload=("hypotune.fashion.trainer", "mlflow.pytorch"),
    doc="a configurable CNN on Fashion-MNIST (the built-in study's)",
    units={"loss": "cross-entropy", "acc": "fraction correct"},
    size="param_count",
    varies=("weight initialisation", "data order", "dropout masks and augmentation"),
    fixed=("the test set",),
)
