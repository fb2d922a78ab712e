"""Training images per second: hypotune's loop vs a plain TensorDataset + DataLoader loop.

Both train the same model, same threads, batch 64, Adam, on real Fashion-MNIST, measured side
by side in one run (interleaved rounds, median of each), for the course baseline and for a
6-layer, 64-filter model. Prints the ratio per model; hypotune should never be the slower one.

    .venv/bin/python bench/throughput.py [--threads 2] [--steps 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from hypotune.config import DataConfig, ModelConfig, RunConfig, Runtime, TrainConfig
from hypotune.data import make_dataset
from hypotune.model import build_model, flop_count
from hypotune.train import peak_rss_mb, train

WARMUP_STEPS = 10  # excluded from the clock on both sides: first steps build oneDNN kernels

MODELS = {
    "course baseline (93K)": ModelConfig(),
    "6 layers x 64 filters": ModelConfig(depth=6, width=64),
    "6x64 BatchNorm": ModelConfig(depth=6, width=64, norm="batch"),
}


def plain_loop(model_config: ModelConfig, images: torch.Tensor, labels: torch.Tensor, steps: int) -> float:
    """What a notebook does: float tensors, a DataLoader, a standard loop. Returns images/s."""
    torch.manual_seed(0)
    model = build_model(model_config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    loader = DataLoader(TensorDataset(images, labels), batch_size=64, shuffle=True)
    batches = iter(loader)
    for step in range(WARMUP_STEPS + steps):
        if step == WARMUP_STEPS:  # steady state, as for hypotune's second epoch
            start = time.perf_counter()
        x, y = next(batches)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * 64 / (time.perf_counter() - start)


def hypotune_loop(model_config: ModelConfig, dataset, steps: int, threads: int) -> float:
    """images/s of hypotune's second epoch, in steady state: the first absorbs the warm-up."""
    config = RunConfig(
        data=DataConfig(val_size=1000),
        model=model_config,
        train=TrainConfig(epochs=2, steps_per_epoch=steps, batch_size=64, schedule="constant"),
    )
    result = train(config, dataset, Runtime(threads=threads))
    return result.epochs[1]["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = make_dataset(DataConfig(val_size=1000))
    images = dataset.train.images.unsqueeze(1).float() / 255.0
    labels = dataset.train.labels
    peak = 2 * 2 * 8 * 2 * 2.5e9 * args.threads / 2  # FMA units x fp32 lanes x 2 flops x ~2.5 GHz
    print(f"threads {args.threads}, batch 64, {args.steps} steps x {args.rounds} rounds (median)")
    for name, model_config in MODELS.items():
        plain, ours = [], []
        for _ in range(args.rounds):  # interleaved so drift on a shared machine hits both
            plain.append(plain_loop(model_config, images, labels, args.steps))
            ours.append(hypotune_loop(model_config, dataset, args.steps, args.threads))
        plain_rate, our_rate = statistics.median(plain), statistics.median(ours)
        # training ~ 3x the forward multiply-adds; 2 flops per multiply-add
        gflops = our_rate * 3 * 2 * flop_count(build_model(model_config)) / 1e9
        print(
            f"{name:24s} plain DataLoader {plain_rate:7.0f} img/s | hypotune {our_rate:7.0f} img/s | "
            f"ratio {our_rate / plain_rate:.2f} | {gflops:.0f} GFLOP/s of ~{peak / 1e9:.0f} peak"
        )
    print(f"peak resident memory {peak_rss_mb():.0f} MB (target < 1,500)")


if __name__ == "__main__":
    main()
