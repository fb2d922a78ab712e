"""Calibration of hypotune's verdicts, measured by simulating studies through the real decision code.

Each simulated study is a study file (parsed by `load_study`) whose arms get per-seed results
with a planted effect, fed to `verdicts.evaluate`; under a seed plan from min to max the seeds
come in rounds exactly as `study run` adds them (`verdicts.next_seeds`). The per-seed noise is
Gaussian, or what training produces: skewed (lognormal, either way), heavy-tailed (t with 3
degrees of freedom), or a mixture with runs that diverge. Printed per row (a kind of prediction,
a noise and a planted effect, in standard deviations of the per-seed comparison):

- the family-wise rate of false decisions (a verdict the truth contradicts), which must stay
  at or under alpha = 5%, with its Monte Carlo standard error;
- the share of predictions decided (power), and the mean seeds per arm it took;
- for the adaptive plan, the trials it spent against a fixed plan at the maximum.

A second table compares designs of the decision (`sequential.Design`) on the same simulated
studies: the one in use, the Gaussian one it replaced, and the present one with each of its
choices undone. Per design it prints the worst false-decision rate over skewed and heavy-tailed
rows, and on Gaussian seeds the share of predictions decided and the mean seeds it took, so that
what each choice costs or gains in power is measured at the same nominal error.

    .venv/bin/python bench/calibration.py                 # both tables, about 16 minutes on 2 cores
    .venv/bin/python bench/calibration.py --studies 200   # quicker, noisier
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

from hypotune.decide import sequential
from hypotune.decide.verdicts import DECIDED, evaluate, next_seeds
from hypotune.store.records import TrialRecord
from hypotune.study.file import load_study
from hypotune.study.model import ArmData, StudyData

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
    "efficiency": """
arms.narrow = { model = { width = 4 } }
arms.wide = {}
prediction = { kind = "efficiency", arm = "narrow", reference = "wide", performance = 0.9, params = 1.0 }
""",
    "trend_v": """
factors = { "model.dropout" = [0.1, 0.3, 0.5] }
prediction = { kind = "trend", factor = "model.dropout", direction = "increasing" }
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
{futility}
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
    steps: list[float] | None = None  # trend_v: each step's true change, the predicted way


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
    if kind == "efficiency":  # wide - 0.9 x narrow is `effect` (losses: the reference is wide)
        means["narrow"] = (means["wide"] - effect) / 0.9
        return Truth(means, [effect], [0.0])
    if kind == "trend_v":  # down one step, then up three: the old least-squares slope said "rising"
        steps = [-effect, 3 * effect] if effect else [0.0, 0.0]
        means["dropout=0.3"] += steps[0]
        means["dropout=0.5"] += steps[0] + steps[1]
        return Truth(means, [min(steps)], [0.0], steps)
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
        "trend": 1 / math.sqrt(2),  # decided per step: each step is a difference of two arms
        "reaches": 1.0,
        "efficiency": 1 / math.sqrt(1 + 0.9**2),
        "trend_v": 1 / math.sqrt(2),  # each step is a difference of two arms
    }[kind]


def _lognormal(sigma: float, sign: float):
    mean, sd = math.exp(sigma**2 / 2), math.sqrt((math.exp(sigma**2) - 1) * math.exp(sigma**2))
    return lambda rng, size: sign * (np.exp(sigma * rng.standard_normal(size)) - mean) / sd


def _spikes(rng, size):
    """A seed in ten half diverges: it ends 4 sd worse than the others (not one of the shapes
    the design is calibrated on)."""
    raw = rng.standard_normal(size) + 4.0 * (rng.random(size) < 0.1)
    return (raw - 0.4) / math.sqrt(1 + 16 * 0.09)


def _gamma(rng, size):  # skewness 2 / sqrt(2), not one of the calibration's shapes either
    return (rng.gamma(2.0, size=size) - 2.0) / math.sqrt(2.0)


# Seed noise of mean 0 and sd 1. A skewed or heavy-tailed noise goes on the first arm only, the
# other arm training the same number on every seed, so that the per-seed comparison has exactly
# that shape (the same noise on both arms of a difference would cancel its skew); only `better`
# rows use them. "diverge" noises make 10% of runs diverge: in the first arm, or in every arm.
NOISES = {
    "gaussian": lambda rng, size: rng.standard_normal(size),
    "lognormal 0.5": _lognormal(0.5, 1.0),
    "lognormal -0.5": _lognormal(0.5, -1.0),
    "lognormal 1": _lognormal(1.0, 1.0),
    "lognormal -1": _lognormal(1.0, -1.0),
    "t(3)": lambda rng, size: rng.standard_t(3, size) / math.sqrt(3),
    "gamma 2": _gamma,
    "half-diverge": _spikes,
    "diverge one": lambda rng, size: rng.standard_normal(size),
    "diverge both": lambda rng, size: rng.standard_normal(size),
}
DIVERGE = 0.1  # the share of runs that diverge, in the "diverge" noises
FAILURE = math.log(10)  # what a diverged run scores (the built-in trainable's chance-level loss)
DIVERGE_SCALE = 0.05  # arm noise under divergence, small enough that no finished run scores worse


def false_decision(
    verdict: str, effect: float, margin: float, steps: list[float] | None = None, finite: float | None = None
) -> bool:
    """Whether the truth contradicts the verdict. A trend is true only if every step is; it is
    "equivalent" (flat) rightly if some step moves by less than the margin. Under divergence in
    both arms, a difference of the finished runs of at least the margin also makes
    "equivalent" false."""
    if steps is not None:
        if verdict == "supported":
            return min(steps) <= 0
        if verdict == "refuted":
            return min(steps) >= 0
        return verdict == "equivalent" and min(abs(step) for step in steps) >= margin
    if verdict == "supported":
        return effect <= 0
    if verdict == "refuted":
        return effect >= 0
    if verdict == "equivalent":
        return max(abs(effect), abs(finite if finite is not None else effect)) >= margin
    return False


def simulate(study, preset: str, truth: Truth, scale: float, rng: np.random.Generator, noise: str) -> tuple:
    """One study: seeds in rounds until next_seeds asks for no more; returns verdicts and trials."""
    hypothesis = study.hypotheses[0]
    arms = list(hypothesis.arms)
    draws, diverged = {}, {}
    shaped = noise not in ("gaussian", "diverge one", "diverge both")
    for index, arm in enumerate(arms):
        if shaped:  # the whole comparison's spread on the first arm, so that it has the shape
            spread = scale * math.sqrt(2) if index == 0 else 0.0
            draws[arm] = truth.means[arm] + spread * NOISES[noise](rng, 40)
        else:
            draws[arm] = truth.means[arm] + scale * NOISES["gaussian"](rng, 40)
        share = DIVERGE if noise == "diverge both" or (noise == "diverge one" and index == 0) else 0.0
        diverged[arm] = rng.random(40) < share
    seeds = study.presets[preset].seeds.min
    while True:
        data: StudyData = {(hypothesis.id, arm): ArmData(hypothesis.id, arm) for arm in arms}
        for arm in arms:
            for seed in range(seeds):
                failed = bool(diverged[arm][seed])
                metrics = {"val_loss": math.inf if failed else float(draws[arm][seed])}
                data[hypothesis.id, arm].records[seed] = TrialRecord(
                    "", "", seed, "diverged" if failed else "finished", metrics, {}, {}
                )
        wanted = next_seeds(study, preset, data)[hypothesis.id]
        if wanted <= seeds:
            return evaluate(study, data, preset), seeds * len(hypothesis.arms)
        seeds = wanted


@dataclass(frozen=True)
class Row:
    kind: str
    noise: str = "gaussian"
    effect: float = 0.0  # in sd of the per-seed comparison (of its Gaussian part under divergence)
    margin: str = ""  # a relative margin ("5%") instead of MARGIN sd


def rows() -> list[Row]:
    """Every kind on Gaussian seeds, then `better` on each noise training produces, under the
    null (effect 0) and at the margin (where a false "equivalent" is most likely)."""
    table = [Row(kind, effect=e) for kind in KINDS if kind != "trend_v" for e in (0.0, 0.5, 1.0, 2.0)]
    table += [Row("trend_v", effect=e) for e in (0.5, 1.0, 2.0)]
    table += [Row("better", noise, e) for noise in NOISES if noise != "gaussian" for e in (0.0, 0.5)]
    table += [Row("better", "diverge both", 1.0, margin="5%")]
    return table


# Each design's worst false-decision rate is taken over these rows, its power over POWER_ROWS.
HOSTILE_ROWS = [
    Row("better", noise, effect)
    for noise in ("lognormal 0.5", "lognormal -1", "lognormal 1", "t(3)")
    for effect in (0.0, 0.5)
]
POWER_ROWS = [Row("better", "gaussian", e) for e in (0.0, 0.5, 1.0, 2.0)]
DESIGNS = {
    "in use": sequential.DESIGN,
    "before: Gaussian, Pocock": sequential.GAUSSIAN_POCOCK,
    "without skew correction": replace(sequential.DESIGN, skew_corrected=False),
    "Pocock boundary": replace(sequential.DESIGN, boundary=0.5),
    "Wang-Tsiatis 0.25": replace(sequential.DESIGN, boundary=0.25),
    "two-sided equivalence": replace(sequential.DESIGN, one_sided_equivalence=False),
}


def run(
    kind: str,
    effect: float,
    studies: int,
    min_seeds: int,
    max_seeds: int,
    seed: int,
    presets: tuple[str, ...] = ("adaptive", "fixed"),
    noise: str = "gaussian",
    relative: str = "",
    futility: float | None = None,
) -> dict:
    diverging = noise.startswith("diverge")
    scale = DIVERGE_SCALE if diverging else 1.0
    if relative:  # the comparison's sd is 5% of the arms' loss of 1.0, so the margin is 1 sd
        scale = 0.05 * math.sqrt(2) / 2
    margin = f'"{relative}"' if relative else MARGIN * scale * (math.sqrt(2) if diverging else 1.0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "study.toml"
        body = KINDS[kind]
        if noise == "diverge one":  # the predicted loser diverges: put it first
            body = body.replace(
                "arms.a = {}\narms.b = { model = { width = 16 } }",
                "arms.b = { model = { width = 16 } }\narms.a = {}",
            )
        given = "" if futility is None else f"futility = {futility}"
        path.write_text(STUDY.format(margin=margin, min=min_seeds, max=max_seeds, body=body, futility=given))
        study = load_study(path)
    arms = list(study.hypotheses[0].arms)
    unit = scale * (math.sqrt(2) if diverging or relative else 1.0)  # loss per sd of the comparison
    truth = planted(kind, arms, effect * unit)
    margin_true = MARGIN * unit
    finite = truth.effects[0]
    if noise == "diverge both":  # pairs where both diverged are left out: E[d] over the rest
        truth.effects[0] = finite / (1 + DIVERGE)
    if noise == "diverge one":  # the loser's failures count against it
        truth.effects[0] = finite + DIVERGE * (FAILURE - truth.means["b"])
    if relative:
        finished = np.concatenate(
            [truth.means[a] + scale * np.random.default_rng(1).standard_normal(100_000) for a in arms]
        )
        margin_true = 0.05 * float(np.median(finished))
    # per-arm noise: the comparison's sd is `unit` for the Gaussian kinds' own ratio of arm to comparison
    arm_scale = unit * noise_scale(kind)
    rng = np.random.default_rng(seed)
    results = {}
    for preset in presets:
        false_families = decided = predictions = trials = 0
        for _ in range(studies):
            verdicts, spent = simulate(study, preset, truth, arm_scale, rng, noise)
            trials += spent
            wrong = [
                false_decision(v.verdict, e, margin_true, truth.steps, finite if relative else e)
                for v, e in zip(verdicts, truth.effects, strict=True)
            ]
            false_families += any(wrong)
            decided += sum(v.verdict in DECIDED for v in verdicts)
            predictions += len(verdicts)
        rate = false_families / studies
        results[preset] = {
            "false": rate,
            "false_count": false_families,
            "false_se": math.sqrt(max(rate * (1 - rate), 1 / studies) / studies),
            "decided": decided / predictions,
            "seeds": trials / studies / len(arms),
            "trials": trials / studies,
        }
    return results


def excess_p(false_count: int, studies: int, alpha: float = 0.05) -> float:
    """The chance of at least this many false families in `studies` if the true rate were alpha."""
    return float(scipy_stats.binom.sf(false_count - 1, studies, alpha))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", type=int, default=1000, help="simulated studies per row")
    parser.add_argument("--min", type=int, default=3, help="seeds at the first look")
    parser.add_argument("--max", type=int, default=20, help="seeds at most")
    parser.add_argument("--kinds", nargs="*", default=None, choices=list(KINDS), help="only these kinds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--designs", choices=["yes", "no", "only"], default="yes", help="the design table")
    parser.add_argument("--futility", choices=["yes", "no", "only"], default="yes", help="the futility table")
    args = parser.parse_args()
    started = time.time()
    failed = False
    if args.designs != "only" and args.futility != "only":
        failed = calibration_table(args)
    if args.designs != "no" and args.futility != "only":
        design_table(args)
    if args.futility != "no" and args.designs != "only":
        failed = futility_table(args) or failed
    print(f"({time.time() - started:.0f} s in all)")
    return 1 if failed else 0


def design_table(args) -> None:
    print(f"\nDesigns, {args.studies} studies per row, seeds {args.min} to {args.max}: the worst false rate "
          f"over {len(HOSTILE_ROWS)} skewed and heavy-tailed rows, and on Gaussian seeds the share "
          "decided / mean seeds per arm")  # fmt: skip
    effects = "".join(f"{f'effect {r.effect:g}':>17}" for r in POWER_ROWS)
    header = f"{'design':<27}{'plan':<10}{'worst false':>16} |{effects}"
    print(header)
    print("-" * len(header))
    for name, design in DESIGNS.items():
        with sequential.designed(design):
            hostile = [
                run(r.kind, r.effect, args.studies, args.min, args.max, args.seed, noise=r.noise)
                for r in HOSTILE_ROWS
            ]
            power = [
                run(r.kind, r.effect, args.studies, args.min, args.max, args.seed, noise=r.noise)
                for r in POWER_ROWS
            ]
        for plan in ("adaptive", "fixed"):
            worst = max(hostile, key=lambda result: result[plan]["false"])[plan]
            cells = "".join(f"{r[plan]['decided']:>10.0%} / {r[plan]['seeds']:<4.1f}" for r in power)
            print(f"{name if plan == 'adaptive' else '':<27}{plan:<10}"
                  f"{worst['false']:>9.2%} ± {worst['false_se']:.2%} |{cells}", flush=True)  # fmt: skip


FUTILITY_ROWS = HOSTILE_ROWS + POWER_ROWS + [Row("synergy", "gaussian", e) for e in (0.0, 0.5, 1.0)]


def futility_table(args) -> bool:
    """The same simulated studies with futility off and at its default: each row's false-decision
    rate with its Monte Carlo error, the share decided and the mean seeds. True when a rate with
    futility is above 5% by the main table's gate."""
    default = load_study_text_futility()
    print(f"\nFutility, {args.studies} studies per row, seeds {args.min} to {args.max} (adaptive): "
          f"off against statistics.futility = {default:g} (the default)")  # fmt: skip
    header = f"{'kind':<13}{'noise':<15}{'effect':>7} | {'false, off':>16}{'decided':>9}{'seeds':>7} | "
    header += f"{'false, on':>16}{'decided':>9}{'seeds':>7}"
    print(header)
    print("-" * len(header))
    smallest = 1.0
    for row in FUTILITY_ROWS:
        cells = []
        for futility in (0.0, None):
            result = run(row.kind, row.effect, args.studies, args.min, args.max, args.seed, ("adaptive",),
                         noise=row.noise, futility=futility)["adaptive"]  # fmt: skip
            if futility is None:
                smallest = min(smallest, excess_p(result["false_count"], args.studies))
            cells.append(f"{result['false']:>9.2%} ± {result['false_se']:.2%}{result['decided']:>9.0%}"
                         f"{result['seeds']:>7.1f}")  # fmt: skip
        print(f"{row.kind:<13}{row.noise:<15}{row.effect:>7.1f} | {cells[0]} | {cells[1]}", flush=True)
    tests = len(FUTILITY_ROWS)
    print(f"smallest binomial p of a rate above 5% with futility: {smallest:.3g} (gate: {0.01 / tests:.2g})")
    return smallest < 0.01 / tests


def load_study_text_futility() -> float:
    from hypotune.study.model import Statistics

    return Statistics.futility


def calibration_table(args) -> bool:
    """The main table; True when its gate finds a rate above 5%."""
    table = [r for r in rows() if args.kinds is None or r.kind in args.kinds]
    tests = 2 * len(table)
    print(f"{args.studies} simulated studies per row; seeds {args.min} to {args.max} (adaptive) "
          f"against {args.max} fixed; margin {MARGIN} sd unless the row says; limit 5%")  # fmt: skip
    header = (
        f"{'kind':<13}{'noise':<15}{'effect':>7} | {'false (adaptive)':>18}{'decided':>9}{'seeds':>7} | "
        f"{'false (fixed)':>16}{'decided':>9} | {'trials adaptive/fixed':>22}"
    )
    print(header)
    print("-" * len(header))
    smallest = 1.0
    for row in table:
        result = run(
            row.kind,
            row.effect,
            args.studies,
            args.min,
            args.max,
            args.seed,
            noise=row.noise,
            relative=row.margin,
        )
        adaptive, fixed = result["adaptive"], result["fixed"]
        smallest = min(smallest, *(excess_p(r["false_count"], args.studies) for r in (adaptive, fixed)))
        noise = row.noise + (f", margin {row.margin}" if row.margin else "")
        print(
            f"{row.kind:<13}{noise:<15}{row.effect:>7.1f} | "
            f"{adaptive['false']:>9.2%} ± {adaptive['false_se']:.2%}"
            f"{adaptive['decided']:>9.0%}{adaptive['seeds']:>7.1f} | "
            f"{fixed['false']:>7.2%} ± {fixed['false_se']:.2%}{fixed['decided']:>9.0%} | "
            f"{adaptive['trials'] / fixed['trials']:>22.2f}",
            flush=True,
        )
    # The gate: each rate is tested against 5% by an exact one-sided binomial test, and the
    # smallest p-value of the 2 x rows tests against 1% / (2 x rows) (Bonferroni): a correct design
    # fails this gate by chance at most 1% of the time, however many rows there are, while a
    # real excess of a few points shows at a few hundred studies per row.
    print(
        f"smallest binomial p of a rate above 5%: {smallest:.3g} "
        f"(gate: {0.01 / tests:.2g}, 1% over {tests} rates)"
    )
    if smallest < 0.01 / tests:
        print("a false-decision rate is above 5%: more false verdicts than chance allows")
        return True
    return False


if __name__ == "__main__":
    sys.exit(main())
