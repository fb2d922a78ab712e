"""Small registries that turn names into modules, and the convolutional block built from them."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from hypotune.errors import ArchitectureError

# Each norm takes (channels, groups). "layer" normalises over (C, H, W) like LayerNorm, via
# GroupNorm(1, C), so it needs no fixed spatial size; its affine is per channel. "instance" is
# GroupNorm(C, C): the same function as InstanceNorm2d(C, affine=True) (per image and channel
# over H x W, then a per-channel affine), with the same weights, but its CPU kernels train
# 1.1-1.35x and evaluate 1.25-1.5x faster (docs/performance.md).
NORMS: dict[str, Callable[[int, int], nn.Module] | None] = dict(
    none=None,
    batch=lambda channels, groups: nn.BatchNorm2d(channels),
    instance=lambda channels, groups: nn.GroupNorm(channels, channels),
    layer=lambda channels, groups: nn.GroupNorm(1, channels),
    group=lambda channels, groups: nn.GroupNorm(groups, channels),
)
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = dict(
    relu=nn.ReLU, gelu=nn.GELU, silu=nn.SiLU, leaky_relu=nn.LeakyReLU, elu=nn.ELU, tanh=nn.Tanh
)


class MaxPool2d(nn.MaxPool2d):
    """nn.MaxPool2d, evaluated faster on contiguous CPU tensors.

    PyTorch's CPU max-pooling always computes the argmax indices as well, and in the contiguous
    (NCHW) layout it walks one plane at a time: it took a third of the evaluation time of the
    study's InstanceNorm models, which stay contiguous. Without gradients, k x k windows with
    stride k are the elementwise maximum of k * k strided views of the input: exactly the same
    values (NaN included), 1.5-8x faster there (docs/performance.md). Training, channels_last
    inputs and any other setting use PyTorch's kernel.
    """

    def forward(self, x: Tensor) -> Tensor:
        k = self.kernel_size
        if (
            (torch.is_grad_enabled() and x.requires_grad)
            or x.device.type != "cpu"
            or x.dim() != 4
            or not x.is_contiguous()
            or not isinstance(k, int)
            or self.stride != k
            or self.padding != 0
            or self.dilation != 1
            or self.ceil_mode
            or self.return_indices
            or min(x.shape[-2:]) < k
        ):
            return super().forward(x)
        rows, cols = x.shape[-2] // k * k, x.shape[-1] // k * k
        views = [x[..., i:rows:k, j:cols:k] for i in range(k) for j in range(k)]
        out = views[0]
        for view in views[1:]:
            out = torch.maximum(out, view)
        return out.contiguous()


POOLS: dict[str, Callable[[int], nn.Module]] = dict(max=MaxPool2d, avg=nn.AvgPool2d)
DROPOUTS: dict[str, Callable[[float], nn.Module]] = dict(spatial=nn.Dropout2d, element=nn.Dropout)
BLOCK_OPS = ("conv", "norm", "act", "dropout", "pool")


def lookup(registry: dict[str, Any], name: str, key: str) -> Any:
    """registry[name], or an error naming the setting and the valid choices."""
    if name not in registry:
        raise ArchitectureError(f"{key} is '{name}'; valid: {', '.join(registry)}")
    return registry[name]


def parse_block_order(order: str) -> tuple[str, ...]:
    ops = tuple(part.strip() for part in order.split("-"))
    unknown = [op for op in ops if op not in BLOCK_OPS]
    if unknown:
        raise ArchitectureError(
            f"model.block_order has unknown step '{unknown[0]}'; steps: {', '.join(BLOCK_OPS)}"
        )
    if sorted(ops) != sorted(BLOCK_OPS):
        raise ArchitectureError(
            f"model.block_order '{order}' must list each of {', '.join(BLOCK_OPS)} exactly once"
        )
    return ops


class ConvBlock(nn.Module):
    """One conv layer with its norm, activation, dropout and pooling, in a configurable order.

    With a residual connection, the pooling step is applied after the sum, and a 1x1
    convolution projects the input when the channel count changes.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        order: tuple[str, ...],
        make_step: Callable[[str, int], nn.Module | None],
        residual: bool,
    ) -> None:
        super().__init__()
        steps: list[tuple[str, nn.Module]] = []
        channels = in_channels
        pool: nn.Module | None = None
        for op in order:
            if op == "conv":
                channels = out_channels
            module = make_step(op, channels)
            if module is None:
                continue
            if op == "pool" and residual:
                pool = module
            else:
                steps.append((op, module))
        self.body = nn.Sequential(OrderedDict(steps))
        self.residual = residual
        self.shortcut: nn.Module | None = None
        if residual and in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        if self.residual:
            out = out + (x if self.shortcut is None else self.shortcut(x))
        if self.pool is not None:
            out = self.pool(out)
        return out
