"""Several seeds in one pass: training S seeds of one arm stacked (torch.func.stack_module_state
and vmap, one process) against today's pool (one process per seed, one thread each).

Both sides train the same model (the study's 4x32 base arm: no normalization, no dropout, which
vmap handles without special randomness or running statistics), batch 64, Adam, on real
Fashion-MNIST, each seed on its own batches. The pool side runs S fresh processes side by side,
one thread each; the stacked side one fresh process with S threads. Each side is timed over the
same steps after a warm-up, interleaved over `--rounds` rounds (median); printed: training
images per second of all seeds together, and the ratio. Kept only if the stacked side is at
least 1.3x on this machine.

    .venv/bin/python bench/stacked_seeds.py [--seeds 2] [--steps 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import torch
from torch.nn import functional as F

from hypotune.fashion.config import DataConfig, ModelConfig
from hypotune.fashion.data import make_dataset
from hypotune.fashion.model import build_model
from throughput import in_fresh_process  # bench/, the script's own folder

MODEL = ModelConfig(depth=4, width=32, pool_size=2, pools=3, head="flatten", head_hidden=(32,))
WARMUP = 10


def batches(seed: int, steps: int):
    dataset = make_dataset(DataConfig(val_size=1000))
    images = dataset.train.images.unsqueeze(1).float() / 255.0
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        index = torch.randint(len(images), (64,), generator=generator)
        yield images[index], dataset.train.labels[index]


def one_seed(seed: int, steps: int, start_at: float) -> float:
    """One seed in its own process, one thread: seconds for `steps` after the warm-up."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    model = build_model(MODEL)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    data = list(batches(seed, WARMUP + steps))
    while time.time() < start_at:  # every process of the pool starts its clock together
        time.sleep(0.001)
    for step, (x, y) in enumerate(data):
        if step == WARMUP:
            started = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def pool(seeds: int, steps: int) -> float:
    """Images per second of `seeds` one-thread processes training side by side."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=seeds, mp_context=context) as executor:
        start_at = time.time() + 20  # after every process has loaded the data
        times = list(executor.map(one_seed, range(seeds), [steps] * seeds, [start_at] * seeds))
    return seeds * steps * 64 / max(times)


def stacked(seeds: int, steps: int) -> float:
    """Images per second of `seeds` models trained as one stacked model, `seeds` threads."""
    from torch.func import functional_call, stack_module_state

    torch.set_num_threads(seeds)
    models = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        models.append(build_model(MODEL))
    params, buffers = stack_module_state(models)
    base = build_model(MODEL).to("meta")
    leaves = list(params.values())
    optimizer = torch.optim.Adam(leaves, lr=1e-3, weight_decay=1e-5)  # elementwise: one Adam per seed

    def loss_of(p, b, x, y):
        return F.cross_entropy(functional_call(base, (p, b), (x,)), y)

    each = torch.vmap(loss_of)
    streams = [list(batches(seed, WARMUP + steps)) for seed in range(seeds)]
    for step in range(WARMUP + steps):
        if step == WARMUP:
            started = time.perf_counter()
        x = torch.stack([stream[step][0] for stream in streams])
        y = torch.stack([stream[step][1] for stream in streams])
        loss = each(params, buffers, x, y).sum()  # the sum's gradient is each seed's own
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return seeds * steps * 64 / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ours, theirs = [], []
    for _ in range(args.rounds):  # interleaved so drift on a shared machine hits both
        ours.append(pool(args.seeds, args.steps))
        theirs.append(in_fresh_process(stacked, args.seeds, args.steps))
    pooled, vmapped = statistics.median(ours), statistics.median(theirs)
    print(f"{args.seeds} seeds of the 4x32 arm, batch 64, {args.steps} steps x {args.rounds} rounds (median)")
    print(f"pool of {args.seeds} one-thread processes: {pooled:7.0f} img/s")
    print(f"stacked (vmap), one process, {args.seeds} threads: {vmapped:7.0f} img/s")
    verdict = "keep" if vmapped >= 1.3 * pooled else "not kept (below 1.3x)"
    print(f"ratio stacked / pool: {vmapped / pooled:.2f} -> {verdict}")


if __name__ == "__main__":
    main()
