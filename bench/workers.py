"""Study throughput with 1 and with 2 (or N) workers: the same trials, timed side by side.

Runs a subset of a study's hypotheses twice, each time into a fresh store, once per worker
count, and prints trials per hour and the speed-up. Training, evaluation, tracking and
worker start-up are all inside the clock.

    .venv/bin/python bench/workers.py [--study FILE] [--preset quick]
        [--hypotheses dropout_rate,normalization] [--workers 1,2] [--executor local|ray]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from hypotune.config import Runtime
from hypotune.fashion import TRAINABLE
from hypotune.run.executors import LocalExecutor, RayExecutor
from hypotune.run.runner import run_study
from hypotune.store.tracker import Tracker
from hypotune.study.file import built_in_studies, load_study
from hypotune.study.model import plan

BUILT_IN = built_in_studies()["fashion_mnist_synergy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=BUILT_IN)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--hypotheses", default="dropout_rate,normalization")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--executor", choices=("local", "ray"), default="local")
    parser.add_argument("--address", help="Ray address, with --executor ray")
    args = parser.parse_args()
    study = load_study(args.study)
    chosen = set(args.hypotheses.split(","))
    study = dataclasses.replace(
        study, hypotheses=tuple(h for h in study.hypotheses if h.id in chosen), reference=()
    )
    trials = len(plan(study, args.preset))
    print(f"{study.name} [{', '.join(sorted(chosen))}], preset {args.preset}: {trials} trials, "
          f"{args.executor} executor, one torch thread per trial")  # fmt: skip
    rates = {}
    for workers in (int(w) for w in args.workers.split(",")):
        with tempfile.TemporaryDirectory() as folder:
            tracker = Tracker(store_dir=Path(folder) / "runs")
            tracker.experiment(study.name)  # store creation is a one-off, outside the clock
            if args.executor == "ray":
                executor = RayExecutor(Runtime(), args.address, cpus_per_trial=2 / workers)
            else:
                executor = LocalExecutor(workers, Runtime(), preload=TRAINABLE.preload)
            start = time.perf_counter()
            summary = run_study(study, args.preset, executor, tracker)
            seconds = time.perf_counter() - start
        assert summary.finished == trials, summary
        rates[workers] = trials / seconds * 3600
        print(f"  {workers} worker(s): {seconds:6.1f} s, {rates[workers]:6.0f} trials/hour")
    first = min(rates)
    for workers, rate in rates.items():
        if workers != first:
            print(f"speed-up {first} -> {workers} workers: {rate / rates[first]:.2f}x")


if __name__ == "__main__":
    main()
