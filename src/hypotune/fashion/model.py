"""Build a CNN from a `ModelConfig`; count its parameters and multiply-adds."""

from __future__ import annotations

import functools
import os
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from hypotune.errors import ArchitectureError
from hypotune.fashion.config import ModelConfig, Settings
from hypotune.fashion.layers import (
    ACTIVATIONS,
    DROPOUTS,
    NORMS,
    POOLS,
    ConvBlock,
    lookup,
    parse_block_order,
)

IMAGE_SIZE, IN_CHANNELS, NUM_CLASSES = 28, 1, 10


def check_model(config: ModelConfig) -> int:
    """Validate names and shapes without building; returns the final feature-map side."""
    for name, registry, key in (
        (config.norm, NORMS, "model.norm"),
        (config.activation, ACTIVATIONS, "model.activation"),
        (config.pool, POOLS, "model.pool"),
        (config.dropout_kind, DROPOUTS, "model.dropout_kind"),
    ):
        lookup(registry, name, key)
    order = parse_block_order(config.block_order)
    if config.residual and order[-1] != "pool":
        raise ArchitectureError("model.residual needs 'pool' last in model.block_order")
    if config.norm == "group":
        bad = sorted({w for w in config.widths if w % config.groups})
        if bad:
            raise ArchitectureError(f"model.groups = {config.groups} does not divide model.width {bad[0]}")
        if "norm" in order[: order.index("conv")] and IN_CHANNELS % config.groups:
            raise ArchitectureError("model.groups must divide the 1 input channel when norm precedes conv")
    side = IMAGE_SIZE
    key = "model.pool_after" if config.pool_after else "model.pools"
    for layer in config.pool_layers:
        if side < config.pool_size:
            fits = _poolings_that_fit(config.pool_size)
            raise ArchitectureError(
                f"{key}: pooling after layer {layer} shrinks a {side}x{side} map below "
                f"1 pixel; at most {fits} poolings of size {config.pool_size} fit 28x28"
            )
        side //= config.pool_size
    return side


def _poolings_that_fit(size: int) -> int:
    side, count = IMAGE_SIZE, 0
    while size > 1 and side >= size:
        side //= size
        count += 1
    return count


def build_model(config: ModelConfig) -> nn.Sequential:
    """The network: conv blocks, then the head. Raises ArchitectureError if it cannot exist."""
    side = check_model(config)
    order = parse_block_order(config.block_order)
    pool_after = set(config.pool_layers)
    blocks: list[tuple[str, nn.Module]] = []
    channels = IN_CHANNELS
    for layer, width in enumerate(config.widths, start=1):
        make_step = functools.partial(_make_step, config, channels, width, layer in pool_after)
        blocks.append((f"block{layer}", ConvBlock(channels, width, order, make_step, config.residual)))
        channels = width
    head: list[tuple[str, nn.Module]] = []
    if config.head == "gap":
        head.append(("pool", nn.AdaptiveAvgPool2d(1)))
        features = channels
    else:
        features = channels * side * side
    head.append(("flatten", nn.Flatten()))
    for index, hidden in enumerate((*config.head_hidden, NUM_CLASSES)):
        if config.head_dropout:
            head.append((f"dropout{index}", nn.Dropout(config.head_dropout)))
        head.append((f"linear{index}", nn.Linear(features, hidden)))
        if index < len(config.head_hidden):
            head.append((f"act{index}", ACTIVATIONS[config.activation]()))
        features = hidden
    features_net = nn.Sequential(OrderedDict(blocks))
    return nn.Sequential(OrderedDict(features=features_net, head=nn.Sequential(OrderedDict(head))))


def _make_step(
    config: ModelConfig, in_channels: int, width: int, pooled: bool, op: str, channels: int
) -> nn.Module | None:
    """The module for one step of a block, or None when that step is switched off."""
    if op == "conv":
        return nn.Conv2d(in_channels, width, config.kernel_size, padding=config.kernel_size // 2)
    if op == "norm":
        factory = NORMS[config.norm]
        return None if factory is None else factory(channels, config.groups)
    if op == "act":
        return ACTIVATIONS[config.activation]()
    if op == "dropout":
        return DROPOUTS[config.dropout_kind](config.dropout) if config.dropout else None
    return POOLS[config.pool](config.pool_size) if pooled else None


@dataclass(frozen=True)
class ModelSize:
    """What a model costs, worked out from its config without building it."""

    params: int  # trainable parameters
    macs: int  # multiply-adds of one image's forward pass (conv and linear layers)
    activations: int  # floats one image's forward pass keeps for the backward pass

    def training_bytes(self, batch_size: int) -> int:
        """Memory to train at `batch_size`: weights, gradients and two optimiser moments, plus the
        activations of a batch and their gradients."""
        return 4 * (4 * self.params + 2 * batch_size * self.activations)


def model_size(config: ModelConfig) -> ModelSize:
    """Parameters, multiply-adds and activations of the network `build_model` would build,
    counted from the config alone, so that a model too big to exist is never allocated.
    Raises ArchitectureError if it cannot exist."""
    side = check_model(config)
    order = parse_block_order(config.block_order)
    pool_after = set(config.pool_layers)
    params = macs = 0
    activations = IN_CHANNELS * IMAGE_SIZE * IMAGE_SIZE
    channels, size = IN_CHANNELS, IMAGE_SIZE
    k = config.kernel_size
    for layer, width in enumerate(config.widths, start=1):
        pooled, block_in, block_channels = layer in pool_after, size, channels
        current = channels
        for op in order:  # as ConvBlock builds it; a step that is switched off keeps nothing
            if op == "conv":
                params += channels * width * k * k + width
                macs += size * size * width * k * k * channels
                current = width
            elif op == "norm":
                if NORMS[config.norm] is None:
                    continue
                params += 2 * current  # every norm here has a per-channel weight and bias
            elif op == "dropout":
                if not config.dropout:
                    continue
            elif op == "pool":
                if not pooled or config.residual:  # a residual block pools after its sum
                    continue
                size //= config.pool_size
            activations += current * size * size
        if config.residual:
            if block_channels != width:
                params += block_channels * width
                macs += block_in * block_in * block_channels * width
            activations += width * size * size
            if pooled:
                size //= config.pool_size
                activations += width * size * size
        channels = width
    features = channels if config.head == "gap" else channels * side * side
    for hidden in (*config.head_hidden, NUM_CLASSES):
        params += features * hidden + hidden
        macs += features * hidden
        activations += 2 * hidden
        features = hidden
    return ModelSize(params, macs, activations)


def check_fits(config: Settings, memory: int | None = None) -> ModelSize:
    """The model's size; ArchitectureError if training it would need more than this machine's
    memory (or `memory` bytes), named with the estimate, before anything is allocated."""
    size = model_size(config.model)
    memory = memory or machine_memory()
    need = size.training_bytes(config.train.batch_size)
    if need > memory:
        raise ArchitectureError(
            f"the model ({size.params:,} parameters) needs about {need / 2**30:.1f} GiB to train at "
            f"batch {config.train.batch_size}; this machine has {memory / 2**30:.1f} GiB"
        )
    return size


def machine_memory() -> int:
    """Physical memory in bytes (assumed large where the system does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**62


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def flop_count(model: nn.Module) -> int:
    """Multiply-adds of one image's forward pass through the conv and linear layers."""
    total = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += output[0].numel() * kernel
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, IN_CHANNELS, IMAGE_SIZE, IMAGE_SIZE, device=next(model.parameters()).device))
    model.train(was_training)
    for hook in hooks:
        hook.remove()
    return total


# Per multiply-add, the models kept in contiguous layout (InstanceNorm, GroupNorm) run about
# 1.5x slower than the others: a `course` trial of the 4x32 family took 44-49 s with
# InstanceNorm against 28-35 s without (bench/study_throughput.py).
CONTIGUOUS_COST = 1.5


@functools.cache
def forward_cost(config: ModelConfig) -> float:
    """One image's forward pass in multiply-adds, weighted by how fast its kernels run here."""
    weight = CONTIGUOUS_COST if memory_layout(config) == torch.contiguous_format else 1.0
    return model_size(config).macs * weight


def memory_layout(config: ModelConfig) -> torch.memory_format:
    """channels_last, except where PyTorch's CPU kernels are slower with it.

    Measured at batch 64, one thread (docs/performance.md): channels_last trains the plain
    4x32 model 1.5x and 6x64 1.16x faster, BatchNorm and LayerNorm models faster too, but
    InstanceNorm models 0.88x and GroupNorm ones no faster.
    """
    return torch.contiguous_format if config.norm in ("instance", "group") else torch.channels_last
