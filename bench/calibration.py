"""Calibration of hypotune's verdicts, measured by simulating studies through the real decision code.

Each simulated study is a study file (parsed by `load_study`) whose arms get Gaussian per-seed
results with a planted effect, fed to `verdicts.evaluate`; under a seed plan from min to max the
seeds come in rounds exactly as `study run` adds them (`verdicts.next_seeds`). Printed per kind of
prediction and planted effect (in standard deviations of the per-seed comparison):

- the family-wise rate of false decisions (a verdict the truth contradicts), which must stay
  at or under alpha = 5%, with its Monte Carlo standard error;
- the share of predictions decided (power), and the mean seeds per arm it took;
- for the adaptive plan, the trials it spent against a fixed plan at the maximum.

    .venv/bin/python bench/calibration.py                 # the full table (a few minutes)
    .venv/bin/python bench/calibration.py --studies 200   # quicker, noisier
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hypotune.analysis import ArmData, StudyData, TrialRecord
from hypotune.studyfile import load_study
from hypotune.verdicts import DECIDED, evaluate, next_seeds

MARGIN = 0.5  # the smallest effect of interest, in standard deviations of the per-seed comparison

# One hypothesis per kind; every arm's per-seed result is a loss (lower is better).
KINDS = {
    "better": """
arms.a = {}
arms.b = { model = { width = 16 } }
prediction = { kind = "better", arm = "a", than = "b" }
""",
    "best": """
factors = { "model.width" = [8, 12, 16] }
prediction = { kind = "best", arm = "width=8" }
""",
    "synergy": """
factors = { "model.dropout" = [0.0, 0.1], "model.norm" = ["none", "instance"] }
prediction = { kind = "synergy" }
""",
    "trend": """
factors = { "model.dropout" = [0.1, 0.3, 0.5] }
prediction = { kind = "trend", factor = "model.dropout", direction = "increasing" }
""",
    "reaches": """
arms.a = {}
prediction = { kind = "reaches", arm = "a", value = 1.0 }
""",
    "three_better": """
arms.a = {}
arms.b = { model = { width = 16 } }
arms.c = { model = { width = 24 } }
arms.d = { model = { width = 32 } }
predictions = [
    { kind = "better", arm = "a", than = "b" },
    { kind = "better", arm = "c", than = "b" },
    { kind = "better", arm = "d", than = "b" },
]
""",
}

STUDY = """
name = "calibration"
[base.model]
depth = 2
width = 8
pool_size = 2
head_hidden = []
[statistics]
margin = {margin}
[presets.fixed]
seeds = {max}
[presets.adaptive]
seeds = {{ min = {min}, max = {max} }}
[[hypotheses]]
id = "h"
statement = "simulated"
{body}
"""


@dataclass
class Truth:
    """The planted loss of each arm (mean), and each prediction's true effect in its favour."""

    means: dict[str, float]
    effects: list[float]  # per prediction, in favour of it, in its own units
    thresholds: list[float]  # a threshold claim's true effect is judged against this (0 otherwise)


def planted(kind: str, arms: list[str], effect: float) -> Truth:
    """Arm means that give every prediction of `kind` a true effect of `effect` (in per-seed sd)."""
    means = dict.fromkeys(arms, 1.0)
    if kind == "better":
        means["a"] -= effect
        return Truth(means, [effect], [0.0])
    if kind == "best":  # the arm beats both rivals by `effect`
        means["width=8"] -= effect
        return Truth(means, [effect], [0.0])
    if kind == "synergy":  # interaction contrast on the goodness scale
        means["dropout=0.1, norm=instance"] -= effect
        return Truth(means, [effect], [0.0])
    if kind == "trend":  # the loss rises by `effect` per step
        for step, arm in enumerate(("dropout=0.1", "dropout=0.3", "dropout=0.5")):
            means[arm] += effect * step
        return Truth(means, [effect], [0.0])
    if kind == "reaches":  # the arm's loss is `effect` below the value 1.0
        means["a"] -= effect
        return Truth(means, [effect], [0.0])
    # three_better: a beats b by `effect`; c and d tie with b
    means["a"] -= effect
    return Truth(means, [effect, 0.0, 0.0], [0.0, 0.0, 0.0])


def noise_scale(kind: str) -> float:
    """Per-arm seed noise that makes the per-seed comparison's sd equal to 1."""
    return {
        "better": 1 / math.sqrt(2),
        "best": 1 / math.sqrt(2),
        "three_better": 1 / math.sqrt(2),
        "synergy": 0.5,  # four cells
        "trend": math.sqrt(2),  # the slope over 3 even steps is (y3 - y1) / 2: sd of sigma / sqrt(2)
        "reaches": 1.0,
    }[kind]


def false_decision(verdict: str, effect: float, margin: float) -> bool:
    if verdict == "supported":
        return effect <= 0
    if verdict == "refuted":
        return effect >= 0
    if verdict == "equivalent":
        return abs(effect) >= margin
    return False


def simulate(study, preset: str, truth: Truth, scale: float, rng: np.random.Generator) -> tuple:
    """One study: seeds in rounds until next_seeds asks for no more; returns verdicts and trials."""
    hypothesis = study.hypotheses[0]
    draws = {arm: rng.normal(truth.means[arm], scale, 1000) for arm in hypothesis.arms}
    seeds = study.presets[preset].seeds.min
    while True:
        data: StudyData = {(hypothesis.id, arm): ArmData(hypothesis.id, arm) for arm in hypothesis.arms}
        for arm in hypothesis.arms:
            for seed in range(seeds):
                metrics = {"val_loss": float(draws[arm][seed])}
                data[hypothesis.id, arm].records[seed] = TrialRecord(
                    "", "", seed, "finished", metrics, {}, {}
                )
        wanted = next_seeds(study, preset, data)[hypothesis.id]
        if wanted <= seeds:
            return evaluate(study, data, preset), seeds * len(hypothesis.arms)
        seeds = wanted


def run(
    kind: str,
    effect: float,
    studies: int,
    min_seeds: int,
    max_seeds: int,
    seed: int,
    presets: tuple[str, ...] = ("adaptive", "fixed"),
) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "study.toml"
        path.write_text(STUDY.format(margin=MARGIN, min=min_seeds, max=max_seeds, body=KINDS[kind]))
        study = load_study(path)
    arms = list(study.hypotheses[0].arms)
    truth = planted(kind, arms, effect)
    rng = np.random.default_rng(seed)
    results = {}
    for preset in presets:
        false_families = decided = predictions = trials = 0
        for _ in range(studies):
            verdicts, spent = simulate(study, preset, truth, noise_scale(kind), rng)
            trials += spent
            wrong = [
                false_decision(v.verdict, e, MARGIN) for v, e in zip(verdicts, truth.effects, strict=True)
            ]
            false_families += any(wrong)
            decided += sum(v.verdict in DECIDED for v in verdicts)
            predictions += len(verdicts)
        rate = false_families / studies
        results[preset] = {
            "false": rate,
            "false_se": math.sqrt(max(rate * (1 - rate), 1 / studies) / studies),
            "decided": decided / predictions,
            "seeds": trials / studies / len(arms),
            "trials": trials / studies,
        }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", type=int, default=1000, help="simulated studies per cell")
    parser.add_argument("--min", type=int, default=3, help="seeds at the first look")
    parser.add_argument("--max", type=int, default=20, help="seeds at most")
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--effects", nargs="*", type=float, default=[0.0, 0.5, 1.0, 2.0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{args.studies} simulated studies per row; seeds {args.min} to {args.max} (adaptive) "
          f"against {args.max} fixed; margin {MARGIN} sd; false-decision limit 5%")  # fmt: skip
    header = (
        f"{'kind':<13}{'effect':>7} | {'false (adaptive)':>18}{'decided':>9}{'seeds':>7} | "
        f"{'false (fixed)':>16}{'decided':>9} | {'trials adaptive/fixed':>22}"
    )
    print(header)
    print("-" * len(header))
    worst = 0.0
    started = time.time()
    for kind in args.kinds:
        for effect in args.effects:
            result = run(kind, effect, args.studies, args.min, args.max, args.seed)
            adaptive, fixed = result["adaptive"], result["fixed"]
            worst = max(
                worst, adaptive["false"] - 2 * adaptive["false_se"], fixed["false"] - 2 * fixed["false_se"]
            )
            print(
                f"{kind:<13}{effect:>7.1f} | {adaptive['false']:>9.2%} ± {adaptive['false_se']:.2%}"
                f"{adaptive['decided']:>9.0%}{adaptive['seeds']:>7.1f} | "
                f"{fixed['false']:>7.2%} ± {fixed['false_se']:.2%}{fixed['decided']:>9.0%} | "
                f"{adaptive['trials'] / fixed['trials']:>22.2f}",
                flush=True,
            )
    print(f"({time.time() - started:.0f} s)")
    if worst > 0.05:
        print("a false-decision rate is above 5% by more than two Monte Carlo errors")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
