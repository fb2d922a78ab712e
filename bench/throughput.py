"""Training images per second: hypotune's loop vs a plain TensorDataset + DataLoader loop.

Both train the same model, same threads, batch 64, Adam, on real Fashion-MNIST, measured side
by side in one run (interleaved rounds, median of each), for the course baseline and for
6-layer, 64-filter models. Every measurement runs in a fresh process, as a notebook kernel and
a study worker each are one: what hypotune sets up for its process (threads, the allocator)
never leaks into the plain side. Prints the ratio per model; hypotune should never be the
slower one.

    .venv/bin/python bench/throughput.py [--threads 2] [--steps 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from hypotune.config import RunConfig, Runtime
from hypotune.fashion.config import DataConfig, ModelConfig, Settings, TrainConfig
from hypotune.fashion.data import make_dataset
from hypotune.fashion.model import build_model, flop_count
from hypotune.fashion.trainer import train

CORE_PEAK = 2 * 8 * 2 * 2.5e9  # FMA units x fp32 lanes x 2 flops x ~2.5 GHz, one core
WARMUP_STEPS = 10  # excluded from the clock on both sides: first steps build oneDNN kernels

MODELS = {
    "course baseline (93K)": ModelConfig(),
    "6 layers x 64 filters": ModelConfig(depth=6, width=64),
    "6x64 BatchNorm": ModelConfig(depth=6, width=64, norm="batch"),
}


def plain_loop(model_config: ModelConfig, steps: int, threads: int) -> float:
    """What a notebook does: float tensors, a DataLoader, a standard loop. Returns images/s."""
    torch.set_num_threads(threads)
    dataset = make_dataset(DataConfig(val_size=1000))
    images = dataset.train.images.unsqueeze(1).float() / 255.0
    labels = dataset.train.labels
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


def hypotune_loop(model_config: ModelConfig, steps: int, threads: int) -> float:
    """images/s of hypotune's second epoch, in steady state: the first absorbs the warm-up."""
    config = RunConfig(
        Settings(
            data=DataConfig(val_size=1000),
            model=model_config,
            train=TrainConfig(epochs=2, steps_per_epoch=steps, batch_size=64, schedule="constant"),
        )
    )
    dataset = make_dataset(config.data)
    result = train(config, dataset, Runtime(threads=threads))
    return result.epochs[1]["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    peak = CORE_PEAK * args.threads
    print(f"threads {args.threads}, batch 64, {args.steps} steps x {args.rounds} rounds (median)")
    for name, model_config in MODELS.items():
        plain, ours = [], []
        for _ in range(args.rounds):  # interleaved so drift on a shared machine hits both
            plain.append(in_fresh_process(plain_loop, model_config, args.steps, args.threads))
            ours.append(in_fresh_process(hypotune_loop, model_config, args.steps, args.threads))
        plain_rate, our_rate = statistics.median(plain), statistics.median(ours)
        # training ~ 3x the forward multiply-adds; 2 flops per multiply-add
        gflops = our_rate * 3 * 2 * flop_count(build_model(model_config)) / 1e9
        print(
            f"{name:24s} plain DataLoader {plain_rate:7.0f} img/s | hypotune {our_rate:7.0f} img/s | "
            f"ratio {our_rate / plain_rate:.2f} | {gflops:.0f} GFLOP/s of ~{peak / 1e9:.0f} peak"
        )
    # ru_maxrss of children: the largest of them, in KB on Linux
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak resident memory of a measuring process {child_peak:.0f} MB (target < 1,500)")


def in_fresh_process(function, *args):
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


if __name__ == "__main__":
    main()
