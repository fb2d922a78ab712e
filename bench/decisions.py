"""Decisions per hour: what a study decides within its time budget, before and after the seed
loop spent its budget where a verdict is nearest (allocation), gave up where none could come
(futility) and evaluated a subset of validation after each epoch but the last.

The built-in study runs under a preset on simulated workers: each trial takes the seconds its
arm would take on this machine (the preset's base arm timed here in a fresh process, one torch
thread, each way of evaluating; other arms scaled by the trainable's cost), and ends with a
per-seed result drawn from a planted world: per hypothesis and arm a mean, and skewed per-seed
noise (lognormal, sigma 0.5) of a spread like the one measured. The worlds follow the verdicts and
intervals in docs/results.md ("quick": make run's four hypotheses; "course": all fourteen). The
seed loop is the real one (`runner.StudySource`, `verdicts.seed_round`) on a simulated clock, and
the verdicts are read by `verdicts.evaluate`, as `study run` and `report` read them.

- **before**: no futility, every open hypothesis's next look in round order, every epoch
  evaluated on the whole validation set; the loop stops handing out trials at the budget.
- **after**: futility at its default; under the budget, trials ordered by expected decisions per
  second over the looks ahead (`StudySource.priority`: a first look that promises a verdict gets its
  seeds before another hypothesis starts); the validation subset after each epoch but the last.

Printed per preset and policy, over `--studies` simulated studies: predictions decided, trials,
decisions per hour of wall time, trials per decision, and the share of hypotheses with a false
verdict (the planted truth contradicts it) with its Monte Carlo error; then what the same worlds
decide under a trial cap alone (`--max-trials`: before, the loop stops at the cap; after, the
runner's own cap, which orders every look by expected decisions per second). `--null` plants no effect
at all, so that every verdict but "equivalent" is false.

    .venv/bin/python bench/decisions.py [--presets quick course] [--studies 20] [--null]
        [--budget quick=8m course=85m] [--max-trials quick=27 course=73] [--workers 2]
        [--seconds quick=26,25 course=37,31]
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import math
import time

import numpy as np

from hypotune.api import seconds as duration
from hypotune.decide.verdicts import DECIDED, evaluate, margins_to_record, seed_round
from hypotune.fashion.model import build_model, param_count
from hypotune.run.runner import StudySource
from hypotune.run.search import NoSearches
from hypotune.store.records import TrialRecord
from hypotune.study.file import built_in_studies, load_study
from hypotune.study.model import ArmData, Statistics, Study, StudyData, plan

# Per hypothesis: each arm's mean of the deciding metric (or the arm whose numbers it repeats
# seed by seed, the same function), and the per-seed sd of its arms. A training that several
# hypotheses share takes the mean and sd of the first of them in the study's order.
WORLDS: dict[str, dict[str, tuple[dict[str, float], float]]] = {
    "quick": {
        "dropout_rate": ({"dropout=0.1": 0.40, "dropout=0.3": 0.458, "dropout=0.5": 0.52}, 0.02),
        "dropout_instancenorm_synergy": (
            {
                "dropout=0.0, norm=none": 0.45,
                "dropout=0.1, norm=none": 0.41,
                "dropout=0.0, norm=instance": 0.33,
                "dropout=0.1, norm=instance": 0.321,
            },
            0.015,
        ),
        "dropout_before_pooling": ({"before_pool": 0.321, "after_pool": "before_pool"}, 0.015),
    },
    "course": {
        "architecture": (
            {
                "depth=4, width=32": 0.60,
                "depth=4, width=64": 0.50,
                "depth=6, width=32": 0.583,
                "depth=6, width=64": 0.53,
                "depth=8, width=32": 0.62,
                "depth=8, width=64": 0.56,
            },
            0.03,
        ),
        "residual_rescues_depth": ({"plain": 0.56, "residual": 0.442}, 0.035),
        "narrow_deep_efficiency": ({"narrow": 0.80, "wide": 0.86}, 0.01),
        "dropout_rate": ({"dropout=0.1": 0.55, "dropout=0.3": 0.601, "dropout=0.5": 0.72}, 0.013),
        "normalization": (
            {
                "norm=none": 0.60,
                "norm=batch": 0.425,
                "norm=instance": 0.40,
                "norm=layer": 0.46,
                "norm=group": 0.44,
            },
            0.02,
        ),
        "dropout_instancenorm_synergy": (
            {
                "dropout=0.0, norm=none": 0.60,
                "dropout=0.1, norm=none": 0.55,
                "dropout=0.0, norm=instance": 0.40,
                "dropout=0.1, norm=instance": 0.408,
            },
            0.025,
        ),
        "architecture_regularization_synergy": (
            {
                "size=baseline, regularization=none": 0.60,
                "size=six_by_64, regularization=none": 0.53,
                "size=baseline, regularization=dropout_instance": 0.408,
                "size=six_by_64, regularization=dropout_instance": 0.337,
            },
            0.015,
        ),
        "final_vs_course_baseline": ({"course_baseline": 0.668, "final": 0.337}, 0.04),
        "dropout_before_pooling": ({"before_pool": 0.408, "after_pool": "before_pool"}, 0.025),
        "norm_before_activation": ({"norm_before_act": 0.408, "norm_after_act": 0.399}, 0.012),
        "dropout_rate_invariance": (
            {
                "size=small, dropout=0.1": 0.55,
                "size=small, dropout=0.3": 0.601,
                "size=large, dropout=0.1": 0.50,
                "size=large, dropout=0.3": 0.559,
            },
            0.02,
        ),
        "normalization_enables_depth": (
            {
                "depth=4, norm=none": 0.50,
                "depth=4, norm=instance": 0.329,
                "depth=6, norm=none": 0.53,
                "depth=6, norm=instance": 0.324,
            },
            0.02,
        ),
        "compact_model": ({"compact": 0.773}, 0.03),
    },
}
WORLDS["quick"]["diminishing_returns"] = WORLDS["quick"]["dropout_instancenorm_synergy"]
WORLDS["course"]["diminishing_returns"] = WORLDS["course"]["dropout_instancenorm_synergy"]
# Dropout before or after pooling computes the same function, but rounds differently: measured
# by make run, the two arms' validation losses differ by 0 to 0.008 on the same seed.
ROUNDING = 0.004
SKEW = 0.5  # lognormal sigma of the per-seed noise: skewed toward bad seeds, as losses are
SEEDS_DRAWN = 40


@dataclasses.dataclass(frozen=True)
class Policy:
    name: str
    futility: float
    allocate: bool  # order looks by expected decisions per second under the budget
    subset: bool  # evaluate the validation subset after each epoch but the last


BEFORE = Policy("before", futility=0.0, allocate=False, subset=False)
AFTER = Policy("after", futility=Statistics.futility, allocate=True, subset=True)


def noise(rng: np.random.Generator, size: int) -> np.ndarray:
    mean, sd = math.exp(SKEW**2 / 2), math.sqrt((math.exp(SKEW**2) - 1) * math.exp(SKEW**2))
    return (np.exp(SKEW * rng.standard_normal(size)) - mean) / sd


def config_ids(study: Study, preset: str) -> dict[tuple[str, str], str]:
    """Which (hypothesis, arm) pairs are the same training read on the same metric: their seed-0
    trial key and their hypothesis's metric."""
    return {
        (h.id, arm): f"{study.arm_config(h, arm, preset, 0).key()} {h.metric}"
        for h in study.hypotheses
        for arm in h.arms
    }


def arm_means(study: Study, preset: str, world: dict, null: bool) -> dict[tuple[str, str], float | str]:
    """Each (hypothesis, arm)'s planted mean: the world's mean of the first hypothesis in file
    order that trains its config (a training shared by hypotheses is one training), or the name
    of an arm it must equal seed by seed; under `null` every arm of a hypothesis at its centre."""
    ids = config_ids(study, preset)
    first: dict[str, float | str] = {}
    means: dict[tuple[str, str], float | str] = {}
    for hypothesis in study.hypotheses:
        own, _ = world[hypothesis.id]
        missing = set(hypothesis.arms) - set(own)
        if missing:
            raise SystemExit(f"the world of {hypothesis.id} has no mean for {sorted(missing)}")
        centre = float(np.mean([v for v in own.values() if not isinstance(v, str)]))
        for arm in hypothesis.arms:
            planted = own[arm] if isinstance(own[arm], str) or not null else centre
            means[hypothesis.id, arm] = first.setdefault(ids[hypothesis.id, arm], planted)
    return means


def draw_world(study: Study, preset: str, world: dict, rng: np.random.Generator, null: bool) -> dict:
    """Per (hypothesis, arm): its metric on seeds 0, 1, ...; one draw per training."""
    ids = config_ids(study, preset)
    means = arm_means(study, preset, world, null)
    drawn: dict[str, np.ndarray] = {}
    values = {}
    for hypothesis in study.hypotheses:
        _, sd = world[hypothesis.id]
        for arm in hypothesis.arms:
            if isinstance(means[hypothesis.id, arm], str):
                continue
            key = ids[hypothesis.id, arm]
            if key not in drawn:
                drawn[key] = float(means[hypothesis.id, arm]) + sd * noise(rng, SEEDS_DRAWN)
            values[hypothesis.id, arm] = drawn[key]
    for (h, arm), mean in means.items():
        if isinstance(mean, str):  # the same function as another arm: its number on every seed, up
            # to the float rounding that the two orders of operations accumulate over training
            values[h, arm] = values[h, mean] + ROUNDING * rng.standard_normal(SEEDS_DRAWN)
    return values


def true_effects(study: Study, preset: str, world: dict, null: bool) -> dict[tuple[str, str], float]:
    """Each prediction's true effect: what the real code reads off noise-free seeds."""
    data = empty_data(study)
    means = arm_means(study, preset, world, null)
    flat = {k: (means[k[0], m] if isinstance(m, str) else m) for k, m in means.items()}
    sizes = arm_sizes(study, preset)
    for seed in range(3):
        for (h, arm), value in flat.items():
            data[h, arm].records[seed] = record(seed, float(value), sizes[h, arm])
    return {(v.hypothesis, v.prediction): v.effect for v in evaluate(study, data, preset)}


def empty_data(study: Study) -> StudyData:
    return {(h.id, arm): ArmData(h.id, arm) for h in study.hypotheses for arm in h.arms}


def record(seed: int, value: float, size: float) -> TrialRecord:
    metrics = {"val_loss": value, "val_acc": value, "param_count": size}
    return TrialRecord("", "", seed, "finished", metrics, {}, {})


def arm_sizes(study: Study, preset: str) -> dict[tuple[str, str], float]:
    return {
        (h.id, arm): float(param_count(build_model(study.arm_config(h, arm, preset, 0).model)))
        for h in study.hypotheses
        for arm in h.arms
    }


def false_verdict(verdict: str, effect: float, margin: float) -> bool:
    if verdict == "supported":
        return effect <= 0
    if verdict == "refuted":
        return effect >= 0
    if verdict == "equivalent":
        return not abs(effect) < margin
    return False


def simulate(
    study: Study,
    preset: str,
    policy: Policy,
    values: dict,
    seconds: dict,
    sizes: dict,
    budget: float,
    workers: int,
    track: tuple[int, ...] = (),
    max_trials: int | None = None,
) -> tuple[list, int, float, dict[int, tuple[float, float]]]:
    """One study run on simulated workers: its verdicts, the trials it trained, its wall seconds,
    and for each count in `track` the seconds and trials after which that many were decided.
    `max_trials` caps the trials handed out: the source's own cap (`--max-trials`) where the
    policy allocates, else the loop stops handing out trials at the cap."""
    data = empty_data(study)
    now = [0.0]
    margins: dict = {}

    def advance():
        margins.update(margins_to_record(study, preset, data, margins))
        return seed_round(study, preset, data, margins)

    first = advance()
    deadline = budget if policy.allocate and math.isfinite(budget) else None
    source = StudySource(study, preset, NoSearches(), set(), seeds=first.seeds, advance=advance,
                         deadline=deadline, expected=first.expected, clock=lambda: now[0],
                         max_trials=max_trials if policy.allocate else None)  # fmt: skip
    cap = math.inf if max_trials is None else max_trials
    running: list[tuple[float, str]] = []
    trials = handed = 0
    reached = dict.fromkeys(track, (math.inf, math.inf))
    seeds_max = {h.id: study.presets[preset].seeds.max for h in study.hypotheses}
    owners = {t.key: t.arms for t in plan(study, preset, None, seeds_max)}
    while True:
        while len(running) < workers and now[0] < budget and handed < cap:
            task = source.next_task()
            if task is None:
                break
            handed += 1
            trial = source.trials[task.key]
            heapq.heappush(running, (now[0] + seconds[trial.key], task.key))
        if not running:
            break
        now[0], key = heapq.heappop(running)
        trial = source.trials[key]
        trials += 1
        for h, arm in owners[key]:  # as `collect` files a trial: under every arm it resolves to
            value = float(values[h, arm][trial.config.seed])
            data[h, arm].records[trial.config.seed] = record(trial.config.seed, value, sizes[h, arm])
        source.finished(trial)
        if any(math.isinf(at) for at, _ in reached.values()):
            count = decided_count(study, preset, data, margins)
            for target, (at, _) in reached.items():
                if math.isinf(at) and count >= target:
                    reached[target] = (now[0], trials)
    return evaluate(study, data, preset, margins=margins), trials, now[0], reached


def decided_count(study: Study, preset: str, data: StudyData, margins: dict) -> int:
    return sum(v.verdict in DECIDED for v in evaluate(study, data, preset, margins=margins))


def trial_costs(study: Study, preset: str, base_seconds: float) -> dict[str, float]:
    """Each trial key's seconds: the base arm's measured seconds, scaled by the trainable's cost."""
    hypothesis = next(h for h in study.hypotheses if h.id == "dropout_instancenorm_synergy")
    base = study.trainable.cost_of(
        study.arm_config(hypothesis, next(iter(hypothesis.arms)), preset, 0).settings
    )
    seeds = {h.id: study.presets[preset].seeds.max for h in study.hypotheses}
    return {
        t.key: base_seconds * study.trainable.cost_of(t.config.settings) / base
        for t in plan(study, preset, None, seeds)
    }


def measured_seconds(preset: str, rounds: int = 2) -> tuple[float, float]:
    """The base arm's trial seconds on this machine, one thread: whole-set epochs, then the
    subset; each the median of `rounds`, interleaved so that drift hits both."""
    from evaluation import trial_seconds  # bench/, the script's own folder
    from hypotune.fashion.config import DataConfig
    from throughput import in_fresh_process

    whole, subset = [], []
    for _ in range(rounds):
        whole.append(in_fresh_process(trial_seconds, preset, 0)[0])
        subset.append(in_fresh_process(trial_seconds, preset, DataConfig().epoch_val_size)[0])
    return float(np.median(whole)), float(np.median(subset))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["quick", "course"])
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--null", action="store_true", help="plant no effect: all but a tie is false")
    parser.add_argument("--budget", nargs="*", default=["quick=8m", "course=85m"])
    parser.add_argument("--target", nargs="*", default=["quick=3,4", "course=9"], help="decisions to time")
    parser.add_argument("--seconds", nargs="*", default=[], help="preset=whole,subset: skip timing")
    parser.add_argument(
        "--max-trials",
        nargs="*",
        default=["quick=27", "course=73"],
        help="preset=N: a trial cap, no time budget",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    budgets = {k: duration(v) for k, v in (item.split("=") for item in args.budget)}
    targets = {k: tuple(map(int, v.split(","))) for k, v in (item.split("=") for item in args.target)}
    given = {k: tuple(map(float, v.split(","))) for k, v in (item.split("=") for item in args.seconds)}
    caps = {k: int(v) for k, v in (item.split("=") for item in args.max_trials)}
    started = time.time()
    planted = ", no effect planted" if args.null else ""
    print(f"{args.studies} simulated studies per row, {args.workers} workers{planted}")
    for preset in args.presets:
        study = load_study(built_in_studies()["fashion_mnist_synergy"]).under(preset)
        whole, subset = given.get(preset) or measured_seconds(preset)
        print(
            f"\n{preset}: base arm {whole:.1f} s a trial with whole-set epochs, "
            f"{subset:.1f} s with the subset"
        )
        print(
            f"{'policy':8s}{'budget':>8s} {'decided':>10s} {'trials':>7s} {'hours':>6s} {'decisions/h':>12s} "
            f"{'trials/decision':>16s} {'false (per hypothesis)':>24s} | "
            "without a budget, k decisions: share of worlds, median minutes and trials"
        )
        rows = {}
        for policy in (BEFORE, AFTER):
            rows[policy.name] = row(
                study, preset, policy, budgets[preset], targets[preset], caps.get(preset), whole, subset, args
            )
        (d0, t0, h0, c0), (d1, t1, h1, c1) = rows["before"], rows["after"]
        if preset in caps:
            count = sum(len(h.confirmatory) for h in study.hypotheses)
            print(
                f"{preset}: within {caps[preset]} trials, no time budget: decided {c0:.2f} of {count} "
                f"before, {c1:.2f} after"
            )
        ratio = (d1 / h1) / (d0 / h0) if d0 else math.inf
        per = (t1 / d1) / (t0 / d0) if d0 and d1 else math.nan
        print(f"{preset}: decisions per hour x{ratio:.2f}, trials per decision x{per:.2f} (after / before)")
    print(f"({time.time() - started:.0f} s in all)")


def row(study, preset, policy, budget, target, cap, whole, subset, args) -> tuple[float, float, float, float]:
    """One policy on `args.studies` worlds, printed; its mean decided, trials and hours, and the
    mean decided within `cap` trials without a time budget (nan without a cap)."""
    statistics = dataclasses.replace(study.statistics, futility=policy.futility)
    study = dataclasses.replace(study, statistics=statistics)
    world = WORLDS[preset]
    sizes = arm_sizes(study, preset)
    effects = true_effects(study, preset, world, args.null)
    seconds = trial_costs(study, preset, subset if policy.subset else whole)
    rng = np.random.default_rng(args.seed)  # the same worlds for both policies
    decided = trials = hours = false = families = capped = 0.0
    reach: dict[int, list[tuple[float, float]]] = {t: [] for t in target}
    for _ in range(args.studies):
        values = draw_world(study, preset, world, rng, args.null)
        run = (study, preset, policy, values, seconds, sizes)
        verdicts, spent, wall, _ = simulate(*run, budget, args.workers)
        decided += sum(v.verdict in DECIDED for v in verdicts)
        trials += spent
        hours += wall / 3600
        for h in study.hypotheses:
            own = [v for v in verdicts if v.hypothesis == h.id and v.verdict != "exploratory"]
            margin = next((v.margin for v in own if math.isfinite(v.margin)), 0.0)
            false += any(false_verdict(v.verdict, effects[v.hypothesis, v.prediction], margin) for v in own)
            families += 1
        # The same world without a budget (allocation still on where the policy has it): how long
        # and how many trials until `target` predictions are decided.
        *_, reached = simulate(*run, 1e12 if policy.allocate else math.inf, args.workers, target)
        for t, point in reached.items():
            reach[t].append(point)
        if cap is not None:  # the same world under a trial cap alone
            within, *_ = simulate(*run, math.inf, args.workers, max_trials=cap)
            capped += sum(v.verdict in DECIDED for v in within)
    rate = false / families
    error = math.sqrt(max(rate * (1 - rate), 1 / families) / families)
    count = sum(len(h.confirmatory) for h in study.hypotheses)
    n = args.studies
    per_decision = trials / decided if decided else math.inf
    print(
        f"{policy.name:8s}{budget / 60:7.0f}m {decided / n:5.2f} of {count:<2d}"
        f"{trials / n:8.1f} {hours / n:6.2f} "
        f"{decided / hours:12.2f} {per_decision:16.1f} {rate:17.2%} ± {error:.2%} | "
        + "; ".join(reaching(target, points) for target, points in reach.items()),
        flush=True,
    )
    return decided / n, trials / n, hours / n, (capped / n if cap is not None else math.nan)


def reaching(target: int, points: list[tuple[float, float]]) -> str:
    """The share of worlds that decide `target` predictions at all, and the median minutes and
    trials it took those that did."""
    reached = [(at, trials) for at, trials in points if math.isfinite(at)]
    if not reached:
        return f"{target}: never"
    minutes = float(np.median([at / 60 for at, _ in reached]))
    trials = float(np.median([n for _, n in reached]))
    return f"{target}: {len(reached) / len(points):.0%} of worlds, {minutes:.0f} min, {trials:.0f} trials"


if __name__ == "__main__":
    main()
