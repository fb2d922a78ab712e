"""What MLflow tracking costs: the same training with and without hypotune's Tracker.

Trains the course baseline on real Fashion-MNIST twice per round, once untracked and once
with everything `hypotune train` records (run, params, config, per-epoch metrics, final
metrics, weights) in a fresh SQLite store, interleaved over rounds. Prints the overhead as a
fraction of training time; the target is under 5%.

    .venv/bin/python bench/tracking_overhead.py [--epochs 3] [--steps 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from hypotune.config import RunConfig, Runtime
from hypotune.fashion.config import DataConfig, Settings, TrainConfig
from hypotune.fashion.data import make_dataset
from hypotune.fashion.trainer import serialize_weights, train
from hypotune.store.tags import PREFIX
from hypotune.store.tracker import Tracker


def tracked(
    config: RunConfig, dataset, runtime: Runtime, tracker: Tracker, experiment_id: str
) -> tuple[float, float]:
    """Wall time of a tracked training, and the part of it spent inside tracker calls."""
    in_tracker = 0.0

    def timed(call, *args):
        nonlocal in_tracker
        start = time.perf_counter()
        value = call(*args)
        in_tracker += time.perf_counter() - start
        return value

    start = time.perf_counter()
    run_id = timed(tracker.start_run, experiment_id, "bench", {f"{PREFIX}key": config.key()})
    timed(tracker.log_config, run_id, config, runtime)
    result = train(config, dataset, runtime, lambda m: timed(tracker.log_metrics, run_id, m, int(m["epoch"])))
    weights = serialize_weights(result.state_dict)
    timed(tracker.finish, run_id, result.status, result.metrics, {"model.pt": weights})
    return time.perf_counter() - start, in_tracker


def untracked(config: RunConfig, dataset, runtime: Runtime) -> float:
    start = time.perf_counter()
    result = train(config, dataset, runtime)
    serialize_weights(result.state_dict)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    config = RunConfig(
        Settings(
            data=DataConfig(val_size=2000), train=TrainConfig(epochs=args.epochs, steps_per_epoch=args.steps)
        )
    )
    dataset = make_dataset(config.data)
    runtime = Runtime(threads=args.threads)
    with tempfile.TemporaryDirectory() as folder:
        tracker = Tracker(store_dir=Path(folder) / "runs")  # store creation is a one-off, not timed
        experiment_id = tracker.experiment("bench")
        plain, with_tracking, in_tracker = [], [], []
        for _ in range(args.rounds):
            plain.append(untracked(config, dataset, runtime))
            total, tracking = tracked(config, dataset, runtime, tracker, experiment_id)
            with_tracking.append(total)
            in_tracker.append(tracking)
    base, total, tracking = (statistics.median(v) for v in (plain, with_tracking, in_tracker))
    print(f"course baseline, {args.epochs} epochs x {args.steps} steps, {args.rounds} rounds (median)")
    difference, share = (total - base) / base, tracking / total
    print(f"untracked {base:.2f} s | tracked {total:.2f} s | difference {difference:+.1%} (noise included)")
    print(f"time inside tracker calls: {tracking:.3f} s = {share:.2%} of the tracked run (target < 5%)")


if __name__ == "__main__":
    main()
