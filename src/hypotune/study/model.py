"""Studies: hypotheses with arms and typed predictions, presets, and their plan of trials.

`hypotune.study.file.load_study` reads and checks a study file into these types.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from hypotune.config import RunConfig, dotted_to_nested, merge, run_config_from_dict
from hypotune.errors import StudyError
from hypotune.store.records import TrialRecord
from hypotune.study.tuning import TuningSpec, tuning_key
from hypotune.trainables.load import load
from hypotune.trainables.protocol import Trainable

FAMILIES = ("hypothesis", "study")


@dataclass(frozen=True)
class Margin:
    """The smallest effect of interest: in the metric's units, or a fraction of the median of the
    hypothesis's runs at its first look (`verdicts.fixed_margin`)."""

    value: float
    relative: bool = False

    def resolve(self, level: float) -> float:
        return self.value * abs(level) if self.relative else self.value

    def describe(self) -> str:
        return (
            f"{self.value * 100:.3g}% of the median at the first look"
            if self.relative
            else f"{self.value:.3g}"
        )


@dataclass(frozen=True)
class Statistics:
    """How verdicts are decided: the error rate, the family it holds over, the margin."""

    alpha: float = 0.05  # family-wise rate of false decisions
    family: str = "hypothesis"  # "hypothesis": each hypothesis its own family; "study": one for all
    margin: Margin | None = None  # below this an effect does not matter; None: never "equivalent"
    # An open prediction that would need more than this many times the preset's maximum seeds
    # (sized for the margin) gets no more seeds; 0: every open prediction gets seeds to the maximum.
    futility: float = 2.5


@dataclass(frozen=True)
class Prediction:
    kind: str  # one of predictions.KINDS
    arm: str = ""  # better/best/efficiency/reaches: the arm predicted to win (or to reach)
    than: str = ""  # better: the arm it beats
    among: tuple[str, ...] = ()  # best: the arms it is best of (empty = all)
    reference: str = ""  # efficiency: the arm it is compared with
    performance: float = 0.0  # efficiency: fraction of the reference's performance reached, at least
    params: float = 0.0  # efficiency: fraction of the reference's parameters used, at most
    factor: str = ""  # trend: the factor the metric moves with
    direction: str = ""  # trend: "increasing" or "decreasing" (of the metric's value)
    value: float = 0.0  # reaches: the value the arm's mean gets to (at or above; at or below for a loss)
    exploratory: bool = False  # reported with its unadjusted interval, never a verdict or a family member


@dataclass(frozen=True)
class Factor:
    name: str  # the dotted setting ("model.dropout") or a name for bundled levels ("size")
    levels: tuple[tuple[str, dict[str, Any]], ...]  # (level label, overrides), in file order


@dataclass(frozen=True)
class Hypothesis:
    id: str
    statement: str
    arms: dict[str, dict[str, Any]]  # arm name -> overrides of the study base, in order
    metric: str = "val_loss"
    predictions: tuple[Prediction, ...] = ()
    factors: tuple[Factor, ...] = ()  # set when the arms come from crossing factors
    tuning: TuningSpec | None = None  # nuisance settings each arm tunes for itself
    margin: Margin | None = None  # the hypothesis's own smallest effect of interest, over the study's
    lower_is_better: bool = True  # of its metric, as the trainable declares it
    # What a diverged run scores (the trainable's failure score for the metric, or the
    # hypothesis's worst finished run where that is worse), so divergence counts as a failure.
    failure: float = math.nan
    size: str = ""  # the trainable's size metric (its parameter count), for an efficiency's limit

    def tuned_in(self, preset: str) -> bool:
        return self.tuning is not None and self.tuning.budget(preset) > 0

    @property
    def confirmatory(self) -> tuple[Prediction, ...]:
        """The predictions that get a verdict (every one but the exploratory)."""
        return tuple(p for p in self.predictions if not p.exploratory)


@dataclass(frozen=True)
class Preset:
    name: str
    seeds: SeedPlan
    overrides: dict[str, Any]  # the trainable's settings applied over the base (its budget)
    description: str = ""
    hypotheses: tuple[str, ...] = ()  # the hypotheses it runs (empty = all)

    def runs(self, hypothesis_id: str) -> bool:
        return not self.hypotheses or hypothesis_id in self.hypotheses


@dataclass(frozen=True)
class Reference:
    """A number an earlier study claimed, to set beside the same arm's result here."""

    claim: str  # the claim in words
    hypothesis: str  # the hypothesis id whose arm matches the claim
    arm: str
    metric: str  # e.g. "test_loss"
    value: float  # the figure claimed


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    base: dict[str, Any]
    presets: dict[str, Preset]
    hypotheses: tuple[Hypothesis, ...]
    path: str = ""
    reference: tuple[Reference, ...] = ()
    statistics: Statistics = Statistics()
    vary_split: bool = True  # each seed also draws its own train/validation split
    trainable: Trainable = field(default_factory=load)  # what trains each trial (built-in CNN)
    dataset: str = ""  # the study file's label for its data, for the reader (the trainable reads it)

    def margin(self, hypothesis: Hypothesis) -> Margin | None:
        return hypothesis.margin or self.statistics.margin

    def arm_config(
        self, hypothesis: Hypothesis, arm: str, preset: str, seed: int, tuned: dict[str, Any] | None = None
    ) -> RunConfig:
        """Base < preset < arm < tuned nuisance settings, resolved; presets set only the budget.

        With `vary_split` the seed also picks the validation split (the trainable's `split_seed`
        setting, where it has one), so that seeds sample it.
        """
        layered = merge(merge(self.base, self.presets[preset].overrides), hypothesis.arms[arm])
        seeded: dict[str, Any] = {"seed": seed}
        if self.vary_split and self.trainable.split_seed:
            seeded = merge(seeded, dotted_to_nested(self.trainable.split_seed, seed))
        return run_config_from_dict(self.trainable.settings, merge(merge(layered, tuned or {}), seeded))

    def tuning_key(self, hypothesis: Hypothesis, arm: str, preset: str, seed: int = 0) -> str:
        """The key of the search whose best setting the arm's `seed` trains at under `preset`
        (the same for every seed unless the search is repeated per seed), or '' when untuned."""
        if not hypothesis.tuned_in(preset):
            return ""
        assert hypothesis.tuning is not None
        own = seed if hypothesis.tuning.per_seed else 0
        return tuning_key(self.arm_config(hypothesis, arm, preset, own).keyed(), hypothesis.tuning)

    def under(self, preset: str | None) -> Study:
        """The study as `preset` runs it: only the hypotheses the preset names (all when it names none)."""
        chosen = self.preset(preset)
        if not chosen.hypotheses:
            return self
        return dataclasses.replace(
            self,
            hypotheses=tuple(h for h in self.hypotheses if chosen.runs(h.id)),
            reference=tuple(r for r in self.reference if chosen.runs(r.hypothesis)),
        )

    def preset(self, name: str | None) -> Preset:
        name = name or next(iter(self.presets))
        if name not in self.presets:
            raise StudyError(f"{self.path}: no preset '{name}'; presets: {', '.join(self.presets)}")
        return self.presets[name]


def arm_label(arm: str, seed: int | None = None) -> str:
    """An arm as a person reads it, with the seed where one is meant: 'wide', 'wide, seed 3'.
    Trial runs, searches, the progress display and the report all name arms this way."""
    return arm if seed is None else f"{arm}, seed {seed}"


@dataclass
class Trial:
    """One training: a resolved config, shared by every hypothesis arm that resolves to it."""

    config: RunConfig
    key: str
    arms: list[tuple[str, str]] = field(default_factory=list)  # (hypothesis id, arm name)
    tuning: bool = False  # a trial of an arm's search, not one a verdict uses

    @property
    def name(self) -> str:
        if self.tuning:  # tuning keys end in "-<Optuna trial number>"
            return f"tune {self.arms[0][1]} #{self.key.rsplit('-', 1)[-1]}"
        return arm_label(self.arms[0][1], self.config.seed)


def plan(
    study: Study,
    preset: str,
    tuned: dict[str, dict[str, Any]] | None = None,
    seeds: dict[str, int] | None = None,
) -> list[Trial]:
    """Hypotheses x arms x seeds, as trials deduplicated by key, in file order.

    A tuned arm is planned at its best setting, `tuned[its tuning key]`; until its search has
    finished it is left out. `seeds` gives a hypothesis more seeds than its preset's minimum.
    """
    tuned = tuned or {}
    seeds = seeds or {}
    trials: dict[str, Trial] = {}
    minimum = study.presets[preset].seeds.min
    for seed in range(max([minimum, *seeds.values()])):
        for hypothesis in study.hypotheses:
            if seed >= seeds.get(hypothesis.id, minimum):
                continue
            for arm in hypothesis.arms:
                search = study.tuning_key(hypothesis, arm, preset, seed)
                if search and search not in tuned:
                    continue
                config = study.arm_config(hypothesis, arm, preset, seed, tuned.get(search))
                key = config.key()
                trials.setdefault(key, Trial(config, key)).arms.append((hypothesis.id, arm))
    return list(trials.values())


@dataclass
class ArmData:
    hypothesis: str
    arm: str
    records: dict[int, TrialRecord] = field(default_factory=dict)  # by seed

    def values(self, metric: str) -> dict[int, float]:
        return {seed: r.metrics.get(metric, math.nan) for seed, r in self.records.items()}


StudyData = dict[tuple[str, str], ArmData]


GROWTH = 1.6  # each look has about this many times the seeds of the one before


@dataclass(frozen=True)
class SeedPlan:
    """How many seeds an arm trains: `min` first, then more in rounds up to `max` while open."""

    min: int
    max: int

    @property
    def adaptive(self) -> bool:
        return self.max > self.min

    @property
    def looks(self) -> tuple[int, ...]:
        """The seed counts at which verdicts are read: min, then about x1.6 each round, then max."""
        counts = [self.min]
        while counts[-1] < self.max:
            grown = max(counts[-1] + 1, round(counts[-1] * GROWTH))
            counts.append(min(grown, self.max))
        return tuple(counts)

    def next_look(self, seeds: int) -> int:
        """The first look with more than `seeds` seeds (max when none is left)."""
        return next((n for n in self.looks if n > seeds), self.max)

    def describe(self) -> str:
        if not self.adaptive:
            return f"{self.min} seeds"
        return f"{self.min} to {self.max} seeds (looks at {', '.join(map(str, self.looks))})"
