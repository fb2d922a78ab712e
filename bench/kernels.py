"""Layer and evaluation choices, measured side by side: which InstanceNorm, which eval batch.

Prints training images/s (batch 64) and evaluation images/s at several batch sizes, in both
memory layouts, for InstanceNorm written three ways: torch's InstanceNorm2d(affine=True),
GroupNorm(C, C) (what hypotune builds; the same function) and a var_mean expression; and for
the plain, BatchNorm and 6x64 models. Then max-pooling without gradients: torch's kernel
against hypotune's `MaxPool2d` (a maximum of strided views on contiguous inputs), per call and
inside the InstanceNorm model's evaluation, in interleaved rounds. Everything runs in this one
process, one after another.

    .venv/bin/python bench/kernels.py [--threads 1] [--part all|layers|pooling]
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from hypotune.fashion.config import ModelConfig
from hypotune.fashion.layers import MaxPool2d
from hypotune.fashion.model import build_model, memory_layout

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
EVAL_BATCHES = (32, 64, 128, 256, 1024)


class VarMeanInstanceNorm(nn.Module):
    """Instance normalization as a plain expression, for comparison."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, unbiased=False)
        return (x - mean) * torch.rsqrt(var + 1e-5) * self.weight + self.bias


def torch_instance_norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True)


def with_norm(model: nn.Module, make: Callable[[int], nn.Module] | None) -> nn.Module:
    """`model` with every instance norm (GroupNorm(C, C)) replaced by make(C) (None: leave it)."""
    if make is not None:
        for block in model.features:
            norm = block.body._modules.get("norm")
            if isinstance(norm, nn.GroupNorm) and norm.num_groups == norm.num_channels:
                block.body.norm = make(norm.num_channels)
    return model


def train_rate(model: nn.Module, layout: torch.memory_format, steps: int = 30, batch: int = 64) -> float:
    model = model.to(memory_format=layout).train()
    optimizer = torch.optim.Adam(model.parameters())
    x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=layout)
    y = torch.randint(0, 10, (batch,))
    for step in range(5 + steps):
        if step == 5:
            start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - start)


def eval_rate(model: nn.Module, layout: torch.memory_format, batch: int, images: int = 4096) -> float:
    model = model.to(memory_format=layout).eval()
    x = torch.randn(images, 1, 28, 28)
    with torch.inference_mode():
        model(x[:batch].contiguous(memory_format=layout))
        start = time.perf_counter()
        for first in range(0, images, batch):
            model(x[first : first + batch].contiguous(memory_format=layout))
    return images / (time.perf_counter() - start)


def milliseconds(run: Callable[[], object], calls: int = 100) -> float:
    for _ in range(5):
        run()
    start = time.perf_counter()
    for _ in range(calls):
        run()
    return (time.perf_counter() - start) / calls * 1e3


def with_torch_pooling(model: nn.Module) -> nn.Module:
    for module in model.modules():
        for name, child in module.named_children():
            if isinstance(child, MaxPool2d):
                setattr(module, name, nn.MaxPool2d(child.kernel_size))
    return model


def pooling(rounds: int = 3) -> None:
    print("max-pooling without gradients, ms per call (torch / hypotune), rounds side by side")
    with torch.inference_mode():
        for shape in ((64, 32, 28, 28), (64, 32, 14, 14), (64, 32, 7, 7), (64, 64, 28, 28)):
            for window in (2, 3):
                x = torch.randn(shape)
                for layout_name, layout in LAYOUTS.items():
                    data = x.contiguous(memory_format=layout)
                    theirs = functools.partial(F.max_pool2d, data, window)
                    ours = functools.partial(MaxPool2d(window), data)
                    assert torch.equal(ours(), theirs())
                    times = [
                        f"{milliseconds(theirs):6.2f} / {milliseconds(ours):6.2f}" for _ in range(rounds)
                    ]
                    print(f"  {str(shape):18s} {window}x{window} {layout_name:13s} " + " | ".join(times))
    print("evaluation images/s at batch 64 (torch / hypotune pooling), rounds side by side")
    family = dict(depth=4, width=32, pool_size=2, pools=3)
    for name, config in (
        ("4x32 InstanceNorm", ModelConfig(**family, norm="instance", dropout=0.1)),
        ("4x32 no norm", ModelConfig(**family)),
    ):
        torch.manual_seed(0)
        ours = build_model(config)
        theirs = with_torch_pooling(build_model(config))
        theirs.load_state_dict(ours.state_dict())
        layout = memory_layout(config)
        rates = [
            f"{eval_rate(theirs, layout, 64):6.0f} / {eval_rate(ours, layout, 64):6.0f}"
            for _ in range(rounds)
        ]
        print(f"  {name:22s} {layout}: " + " | ".join(rates))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--part", choices=("all", "layers", "pooling"), default="all")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.part != "layers":
        pooling()
    if args.part == "pooling":
        return
    print(f"{args.threads} thread(s); images/s; eval at batch " + ", ".join(map(str, EVAL_BATCHES)))
    instance = ModelConfig(depth=4, width=32, pool_size=2, pools=3, norm="instance", dropout=0.1)
    cases = [
        ("4x32 InstanceNorm2d", instance, torch_instance_norm),
        ("4x32 GroupNorm(C, C)", instance, None),
        ("4x32 var_mean", instance, VarMeanInstanceNorm),
        ("4x32 no norm", ModelConfig(depth=4, width=32, pool_size=2, pools=3), None),
        ("4x32 BatchNorm", ModelConfig(depth=4, width=32, pool_size=2, pools=3, norm="batch"), None),
        ("6x64 no norm", ModelConfig(depth=6, width=64, pool_size=2, pools=3), None),
    ]
    for name, config, make in cases:
        for layout_name, layout in LAYOUTS.items():
            torch.manual_seed(0)
            model = with_norm(build_model(config), make)
            evals = " ".join(f"{eval_rate(model, layout, b):6.0f}" for b in EVAL_BATCHES)
            print(f"{name:22s} {layout_name:13s} train {train_rate(model, layout):6.0f} | eval {evals}")


if __name__ == "__main__":
    main()
