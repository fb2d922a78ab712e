"""The report's figures: `*_data` functions compute the numbers (tested without drawing);
`render_*` functions only draw them with matplotlib."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypotune import stats
from hypotune.analysis import SearchRecord, StudyData
from hypotune.study import Hypothesis, Study
from hypotune.tuning import Dimension

History = dict[str, dict[str, list[tuple[int, float]]]]  # run id -> metric -> [(epoch, value)]


@dataclass(frozen=True)
class Band:
    x: list[float]
    mean: list[float]
    low: list[float]
    high: list[float]


def curve_data(hypothesis: Hypothesis, data: StudyData, history: History) -> dict[str, dict[str, Band]]:
    """Per arm, per metric (train_loss, val_loss): mean over seeds with a 95% band per epoch."""
    curves: dict[str, dict[str, Band]] = {}
    for arm in hypothesis.arms:
        records = data[hypothesis.id, arm].records.values()
        curves[arm] = {}
        for metric in ("train_loss", "val_loss"):
            by_epoch: dict[int, list[float]] = {}
            for record in records:
                for epoch, value in history.get(record.run_id, {}).get(metric, []):
                    if math.isfinite(value):
                        by_epoch.setdefault(epoch, []).append(value)
            epochs = sorted(by_epoch)
            summaries = [stats.summarize(by_epoch[e]) for e in epochs]
            curves[arm][metric] = Band(
                [float(e) for e in epochs],
                [s.mean for s in summaries],
                [s.ci_low if s.n > 1 else s.mean for s in summaries],
                [s.ci_high if s.n > 1 else s.mean for s in summaries],
            )
    return curves


def interval_data(hypothesis: Hypothesis, data: StudyData, metric: str) -> list[tuple[str, stats.Summary]]:
    """The metric per arm, mean and 95% CI over seeds, in the hypothesis's arm order."""
    return [
        (arm, stats.summarize(list(data[hypothesis.id, arm].values(metric).values())))
        for arm in hypothesis.arms
    ]


def interaction_data(hypothesis: Hypothesis, data: StudyData) -> dict[str, list[tuple[str, stats.Summary]]]:
    """For two crossed factors: one line per level of the second, across levels of the first."""
    if len(hypothesis.factors) != 2:
        return {}
    first, second = hypothesis.factors
    short_a, short_b = (f.name.rsplit(".", 1)[-1] for f in (first, second))
    lines: dict[str, list[tuple[str, stats.Summary]]] = {}
    for label_b, _ in second.levels:
        lines[f"{short_b}={label_b}"] = [
            (
                label_a,
                stats.summarize(
                    list(
                        data[hypothesis.id, f"{short_a}={label_a}, {short_b}={label_b}"]
                        .values(hypothesis.metric)
                        .values()
                    )
                ),
            )
            for label_a, _ in first.levels
        ]
    return lines


@dataclass(frozen=True)
class ParetoPoint:
    label: str
    params: float
    test_loss: float
    on_front: bool


def pareto_data(study: Study, data: StudyData) -> list[ParetoPoint]:
    """Every distinct trained configuration: parameters vs mean test loss; the front marked."""
    # The same configuration can serve several hypotheses: one point per distinct config.
    by_config: dict[tuple, tuple[str, float, list[float]]] = {}
    for hypothesis in study.hypotheses:
        for arm in hypothesis.arms:
            records = list(data[hypothesis.id, arm].records.values())
            if not records:
                continue
            per_seed = ("seed", "data.split_seed")  # what differs between seeds of one config
            config = tuple(sorted((k, v) for k, v in records[0].params.items() if k not in per_seed))
            if config not in by_config:
                params = records[0].metrics.get("param_count", math.nan)
                by_config[config] = (f"{hypothesis.id}: {arm}", params, [])
                by_config[config][2].extend(r.metrics.get("test_loss", math.nan) for r in records)
    points = [(label, params, stats.summarize(losses).mean) for label, params, losses in by_config.values()]
    finite = [p for p in points if math.isfinite(p[2])]
    front = {
        p[0]
        for p in finite
        if not any((q[1] <= p[1] and q[2] < p[2]) or (q[1] < p[1] and q[2] <= p[2]) for q in finite)
    }
    return sorted(
        (ParetoPoint(label, params, loss, label in front) for label, params, loss in points),
        key=lambda p: p.params,
    )


@dataclass(frozen=True)
class NuisancePoint:
    value: Any  # the tuned setting's value in this trial
    metric: float  # the search metric it reached (at its last epoch when pruned)
    pruned: bool
    best: bool  # the arm's chosen setting


def nuisance_data(
    hypothesis: Hypothesis, searches: dict[tuple[str, str], list[SearchRecord]]
) -> dict[str, dict[str, list[NuisancePoint]]]:
    """Per tuned setting, per arm: every tuning trial's value of that setting and its metric
    (of every search of the arm, when it searched once per seed)."""
    plots: dict[str, dict[str, list[NuisancePoint]]] = {}
    for arm in hypothesis.arms:
        for search in searches.get((hypothesis.id, arm), []):
            best = search.best_trial()
            for dimension in search.space:
                points = [
                    NuisancePoint(t.params[dimension.name], t.value, t.status == "pruned", t is best)
                    for t in search.trials
                    if math.isfinite(t.value)
                ]
                plots.setdefault(dimension.name, {}).setdefault(arm, []).extend(points)
    for arms in plots.values():
        for arm, points in arms.items():
            arms[arm] = sorted(points, key=lambda p: str(p.value))
    return plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    # Arm names and statements are the user's text: '$...$' in one is drawn as written, not as math.
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def render_curves(curves: dict[str, dict[str, Band]], path: Path, title: str) -> Path:
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for axis, metric in zip(axes, ("train_loss", "val_loss"), strict=True):
        for arm, bands in curves.items():
            band = bands[metric]
            if not band.x:
                continue
            (line,) = axis.plot(band.x, band.mean, marker="o", markersize=3, label=arm)
            axis.fill_between(band.x, band.low, band.high, color=line.get_color(), alpha=0.2)
        axis.set_title(metric.replace("_", " "))
        axis.set_xlabel("epoch")
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("cross-entropy")
    if axes[1].get_legend_handles_labels()[0]:  # no run has a curve yet: no legend
        axes[1].legend(fontsize=7, loc="upper right")
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def render_intervals(
    intervals: list[tuple[str, stats.Summary]],
    metric: str,
    path: Path,
    title: str,
    targets: tuple[float, ...] = (),
) -> Path:
    """One row per arm: its mean and CI; `targets` (values a prediction names) as dashed lines."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 1.3 + 0.42 * len(intervals)))
    for target in targets:
        axis.axvline(target, color="0.4", linestyle="--", linewidth=1)
    for row, (arm, summary) in enumerate(intervals):
        if not math.isfinite(summary.mean):
            axis.annotate(
                f"{arm}: {'diverged' if summary.n else 'no data'}",
                (0, row),
                xycoords=("axes fraction", "data"),
                fontsize=8,
            )
            continue
        error = [[summary.mean - summary.ci_low], [summary.ci_high - summary.mean]] if summary.n > 1 else None
        axis.errorbar([summary.mean], [row], xerr=error, fmt="o", capsize=4)
    axis.set_yticks(range(len(intervals)), [arm for arm, _ in intervals], fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel(f"{metric} (mean, 95% CI over seeds)")
    axis.grid(axis="x", alpha=0.3)
    axis.set_title(title, fontsize=10)
    return _save(figure, path)


def render_interaction(
    lines: dict[str, list[tuple[str, stats.Summary]]], metric: str, path: Path, title: str
) -> Path:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    for name, points in lines.items():
        xs = list(range(len(points)))
        means = [s.mean for _, s in points]
        errors = [
            [s.mean - s.ci_low if s.n > 1 else 0 for _, s in points],
            [s.ci_high - s.mean if s.n > 1 else 0 for _, s in points],
        ]
        axis.errorbar(xs, means, yerr=errors, marker="o", capsize=4, label=name)
        axis.set_xticks(xs, [label for label, _ in points])
    axis.set_ylabel(metric)
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    axis.set_title(title, fontsize=10)
    return _save(figure, path)


def render_pareto(points: list[ParetoPoint], path: Path, title: str) -> Path:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(8, 4.5))
    finite = [p for p in points if math.isfinite(p.test_loss) and math.isfinite(p.params)]
    axis.scatter([p.params for p in finite], [p.test_loss for p in finite], color="0.6", s=18, label="arm")
    front = [p for p in finite if p.on_front]
    axis.plot([p.params for p in front], [p.test_loss for p in front], "o-", color="C3", label="Pareto front")
    for point in front:
        axis.annotate(
            point.label,
            (point.params, point.test_loss),
            fontsize=6,
            xytext=(4, 4),
            textcoords="offset points",
        )
    axis.set_xscale("log")
    axis.set_xlabel("parameters")
    axis.set_ylabel("test loss (mean over seeds)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title(title, fontsize=10)
    return _save(figure, path)


def render_nuisance(
    plots: dict[str, dict[str, list[NuisancePoint]]],
    space: dict[str, Dimension],
    metric: str,
    path: Path,
    title: str,
) -> Path:
    """One panel per tuned setting over its whole range: each arm's tuning trials, its best
    starred, pruned ones hollow."""
    plt = _pyplot()
    from matplotlib.ticker import NullFormatter

    figure, axes = plt.subplots(1, len(plots), figsize=(max(7.0, 5.5 * len(plots)), 4.0), squeeze=False)
    for axis, (name, arms) in zip(axes[0], plots.items(), strict=True):
        for index, (arm, points) in enumerate(arms.items()):
            colour = f"C{index % 10}"
            done = [p for p in points if not p.pruned]
            pruned = [p for p in points if p.pruned]
            axis.scatter([p.value for p in done], [p.metric for p in done], color=colour, s=22, label=arm)
            axis.scatter(
                [p.value for p in pruned], [p.metric for p in pruned], facecolors="none",
                edgecolors=colour, s=22,
            )  # fmt: skip
            for point in (p for p in points if p.best):
                axis.scatter([point.value], [point.metric], marker="*", s=180, color=colour, edgecolors="k")
        dimension = space[name]  # the whole range is shown, so a best value at an edge looks it
        if dimension.log:
            axis.set_xscale("log")
            axis.xaxis.set_minor_formatter(NullFormatter())
            pad = (dimension.high / dimension.low) ** 0.03
            axis.set_xlim(dimension.low / pad, dimension.high * pad)
        elif not dimension.choices:
            pad = 0.03 * (dimension.high - dimension.low)
            axis.set_xlim(dimension.low - pad, dimension.high + pad)
        axis.set_xlabel(name)
        axis.set_ylabel(f"{metric} (validation)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle(f"{title}\nstar: chosen; hollow: pruned, at its last epoch", fontsize=10)
    return _save(figure, path)


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    _pyplot().close(figure)
    return path
