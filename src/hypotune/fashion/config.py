"""The built-in trainable's settings: data split, model and training budget of the CNN.

Each is a frozen dataclass of `setting`s (default and one-line help); `Settings` gathers them
as the [data], [model] and [train] tables a study or `--config` file sets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hypotune.config import MAX_SEED, check, choice, setting


@dataclass(frozen=True)
class DataConfig:
    val_size: int = setting(10_000, "images carved from the training set for validation (stratified)")
    split_seed: int = setting(0, "seed of the train/validation split (vary_split studies: the trial seed)")
    train_subset: int = setting(0, "training images used, stratified subset (0 = the whole split)")
    test_size: int = setting(0, "test images for the final evaluation, stratified subset (0 = all 10,000)")
    epoch_val_size: int = setting(
        2_000,
        "validation images evaluated after each epoch but the last, for the curves and pruning "
        "(0 = all); the last epoch, and every epoch when the schedule or early stopping reads the "
        "loss, uses the whole validation set",
        keyed=False,
    )
    validate_on_test: bool = setting(
        False, "course protocol: validate on the official test set (biased; logged as such)"
    )
    normalize: str = setting("scale", "pixel scaling: 'scale' (x/255) or 'standardize'")
    flip: bool = setting(False, "augment with random horizontal flips")
    translate: int = setting(0, "augment with random shifts of up to this many pixels")
    eval_flip: bool = setting(
        False, "evaluate each image and its mirror image, averaging the predicted probabilities"
    )

    def __post_init__(self) -> None:
        check(self.val_size >= 0, "data.val_size", "must be >= 0")
        check(self.train_subset >= 0, "data.train_subset", "must be >= 0")
        check(self.test_size >= 0, "data.test_size", "must be >= 0")
        check(self.epoch_val_size >= 0, "data.epoch_val_size", "must be >= 0")
        check(0 <= self.split_seed <= MAX_SEED, "data.split_seed", f"must be between 0 and {MAX_SEED}")
        choice("data.normalize", self.normalize, ("scale", "standardize"))
        check(0 <= self.translate <= 8, "data.translate", "must be between 0 and 8 pixels")
        check(
            self.validate_on_test or self.val_size > 0,
            "data.val_size",
            "must be > 0 unless data.validate_on_test is set",
        )


@dataclass(frozen=True)
class ModelConfig:
    depth: int = setting(10, "number of convolutional layers")
    width: int | tuple[int, ...] = setting(32, "filters per conv layer: one number, or one per layer")
    kernel_size: int = setting(3, "convolution kernel size (odd; 'same' padding)")
    norm: str = setting("none", "normalization: none, batch, instance, layer, group")
    groups: int = setting(8, "group count for norm = group; must divide every width")
    activation: str = setting("relu", "activation: relu, gelu, silu, leaky_relu, elu, tanh")
    dropout: float = setting(0.0, "dropout rate inside each conv block (0 = none)")
    dropout_kind: str = setting("spatial", "'spatial' (Dropout2d, whole channels) or 'element'")
    block_order: str = setting(
        "conv-norm-act-dropout-pool", "order of operations inside a block, joined by '-'"
    )
    pool: str = setting("max", "pooling kind: max or avg")
    pool_size: int = setting(3, "pooling window and stride")
    pools: int = setting(2, "poolings spread evenly over the layers (when pool_after is empty)")
    pool_after: tuple[int, ...] = setting((), "1-based conv layers followed by pooling (overrides pools)")
    residual: bool = setting(False, "add skip connections around each conv block")
    head: str = setting("flatten", "classifier head: 'flatten' or 'gap' (global average pool)")
    head_hidden: tuple[int, ...] = setting((32,), "hidden dense layers of the head")
    head_dropout: float = setting(0.0, "element-wise dropout before each dense layer of the head")

    def __post_init__(self) -> None:
        check(1 <= self.depth <= 64, "model.depth", "must be between 1 and 64")
        if isinstance(self.width, tuple):
            check(
                len(self.width) == self.depth,
                "model.width",
                f"lists {len(self.width)} widths for {self.depth} layers",
            )
        check(all(1 <= w <= 4096 for w in self.widths), "model.width", "must be between 1 and 4096")
        odd = self.kernel_size % 2 == 1
        check(odd and 1 <= self.kernel_size <= 27, "model.kernel_size", "must be odd, from 1 to 27")
        check(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")
        check(0.0 <= self.head_dropout < 1.0, "model.head_dropout", "must be in [0, 1)")
        choice("model.dropout_kind", self.dropout_kind, ("spatial", "element"))
        choice("model.head", self.head, ("flatten", "gap"))
        check(self.pool_size >= 1, "model.pool_size", "must be >= 1")
        hidden_ok = all(1 <= h <= 65_536 for h in self.head_hidden)
        check(hidden_ok, "model.head_hidden", "sizes must be from 1 to 65536")
        if not self.pool_after:
            check(0 <= self.pools <= self.depth, "model.pools", f"must be between 0 and depth {self.depth}")
        bad = [i for i in self.pool_after if not 1 <= i <= self.depth]
        check(not bad, "model.pool_after", f"names layers {bad} outside 1..{self.depth}")
        # Names (norm, activation, pool, block_order) are checked against the layer registries
        # when the model is built; `hypotune.fashion.model.check_model` runs that without building.

    @property
    def pool_layers(self) -> tuple[int, ...]:
        """The layers followed by pooling: pool_after, or `pools` spread evenly (10 layers: 4, 8)."""
        if self.pool_after:
            return tuple(sorted(set(self.pool_after)))
        return tuple(math.ceil(self.depth * i / (self.pools + 0.5)) for i in range(1, self.pools + 1))

    @property
    def widths(self) -> tuple[int, ...]:
        return self.width if isinstance(self.width, tuple) else (self.width,) * self.depth


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = setting(3, "training epochs")
    steps_per_epoch: int = setting(100, "batches per epoch (0 = one full pass over the training split)")
    batch_size: int = setting(64, "images per batch")
    optimizer: str = setting("adam", "adam, adamw or sgd (with Nesterov momentum)")
    lr: float = setting(1e-3, "peak learning rate")
    weight_decay: float = setting(1e-5, "weight decay (L2 for adam/sgd, decoupled for adamw)")
    momentum: float = setting(0.9, "momentum for sgd")
    schedule: str = setting("plateau", "constant, cosine, onecycle or plateau (on validation loss)")
    plateau_factor: float = setting(0.1, "plateau: multiply the learning rate by this")
    plateau_patience: int = setting(10, "plateau: epochs without improvement before a cut")
    label_smoothing: float = setting(0.0, "label smoothing of the training loss")
    early_stopping: int = setting(0, "stop after this many epochs without a better val loss (0 = off)")

    @property
    def loss_steers(self) -> bool:
        """Whether an epoch's validation loss can change the training: early stopping picks an
        epoch by it, and a plateau schedule cuts the rate once it has not improved for more than
        `plateau_patience` epochs, which a run of that many epochs plus one can never see."""
        return bool(self.early_stopping) or (
            self.schedule == "plateau" and self.epochs > self.plateau_patience + 1
        )

    def __post_init__(self) -> None:
        check(self.epochs >= 1, "train.epochs", "must be >= 1")
        check(self.steps_per_epoch >= 0, "train.steps_per_epoch", "must be >= 0")
        check(1 <= self.batch_size <= 65_536, "train.batch_size", "must be between 1 and 65536")
        choice("train.optimizer", self.optimizer, ("adam", "adamw", "sgd"))
        choice("train.schedule", self.schedule, ("constant", "cosine", "onecycle", "plateau"))
        check(self.lr > 0, "train.lr", "must be > 0")
        check(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        check(0 <= self.momentum < 1, "train.momentum", "must be in [0, 1)")
        check(0 < self.plateau_factor < 1, "train.plateau_factor", "must be in (0, 1)")
        check(0 <= self.label_smoothing < 1, "train.label_smoothing", "must be in [0, 1)")
        check(self.early_stopping >= 0, "train.early_stopping", "must be >= 0")


@dataclass(frozen=True)
class Settings:
    """Everything that determines one training of the CNN, but the seed."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validations(self, val: int) -> int:
        """Validation images a trial evaluates over its epochs, of a validation split of `val`:
        the subset after each epoch but the last, unless the loss steers the training."""
        epochs = self.train.epochs
        if self.train.loss_steers or not self.data.epoch_val_size:
            return val * epochs
        return min(self.data.epoch_val_size, val) * (epochs - 1) + val
