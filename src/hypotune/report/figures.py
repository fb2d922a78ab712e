"""The report's figures: `*_data` functions compute the numbers (tested without drawing);
`render_*` functions only draw them with matplotlib."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypotune import stats
from hypotune.decide.collect import SearchRecord
from hypotune.study.model import Hypothesis, Study, StudyData
from hypotune.study.tuning import Dimension
from hypotune.trainables.protocol import counterpart

History = dict[str, dict[str, list[tuple[int, float]]]]  # run id -> metric -> [(epoch, value)]


@dataclass(frozen=True)
class Band:
    x: list[float]
    mean: list[float]
    low: list[float]
    high: list[float]


def curve_metrics(hypothesis: Hypothesis) -> tuple[str, ...]:
    """The metrics of a hypothesis's learning curves: its deciding metric per epoch (a best-so-far
    metric's epochs are its validation metric's) and the same quantity on the training data."""
    metric = hypothesis.metric
    per_epoch = counterpart(metric, "val") if metric.startswith("best_") else metric
    return tuple(dict.fromkeys(m for m in (counterpart(metric, "train"), per_epoch) if m))


def curve_data(
    hypothesis: Hypothesis, data: StudyData, history: History, metrics: tuple[str, ...] | None = None
) -> dict[str, dict[str, Band]]:
    """Per arm, per metric (`curve_metrics` by default): mean over seeds with a 95% band per
    epoch; a metric no run logged per epoch has no band at all."""
    curves: dict[str, dict[str, Band]] = {}
    metrics = curve_metrics(hypothesis) if metrics is None else metrics
    for arm in hypothesis.arms:
        records = data[hypothesis.id, arm].records.values()
        curves[arm] = {}
        for metric in metrics:
            by_epoch: dict[int, list[float]] = {}
            for record in records:
                for epoch, value in history.get(record.run_id, {}).get(metric, []):
                    if math.isfinite(value):
                        by_epoch.setdefault(epoch, []).append(value)
            epochs = sorted(by_epoch)
            if not epochs:
                continue
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
    size: float  # the trainable's size metric (its parameter count)
    value: float  # the metric's mean over seeds
    on_front: bool


@dataclass(frozen=True)
class ParetoView:
    """Which numbers the size-vs-performance view plots: the trainable's size metric against a
    metric the runs logged (the deciding metric's test counterpart where there is one)."""

    size: str
    metric: str
    lower_is_better: bool


def pareto_view(study: Study, data: StudyData) -> ParetoView | None:
    """The view the runs have data for, or None: no size metric declared or logged, or no metric."""
    trainable = study.trainable
    records = [r for arm in data.values() for r in arm.records.values()]
    logged = {name for r in records for name, v in r.metrics.items() if math.isfinite(v)}
    if not trainable.size or trainable.size not in logged:
        return None
    deciding = Counter(h.metric for h in study.hypotheses).most_common(1)[0][0]
    for metric in (counterpart(deciding, "test"), deciding):
        if metric and metric in logged:
            return ParetoView(trainable.size, metric, trainable.metrics.get(metric, True))
    return None


def pareto_data(study: Study, data: StudyData, view: ParetoView) -> list[ParetoPoint]:
    """Every distinct trained configuration: its size vs the metric's mean; the front marked."""
    # The same configuration can serve several hypotheses: one point per distinct config.
    per_seed = {"seed", study.trainable.split_seed}  # what differs between seeds of one config
    by_config: dict[tuple, tuple[str, float, list[float]]] = {}
    for hypothesis in study.hypotheses:
        for arm in hypothesis.arms:
            records = list(data[hypothesis.id, arm].records.values())
            if not records:
                continue
            config = tuple(sorted((k, v) for k, v in records[0].params.items() if k not in per_seed))
            if config not in by_config:
                size = records[0].metrics.get(view.size, math.nan)
                by_config[config] = (f"{hypothesis.id}: {arm}", size, [])
                by_config[config][2].extend(r.metrics.get(view.metric, math.nan) for r in records)
    sign = 1.0 if view.lower_is_better else -1.0  # the front is computed on "lower is better"
    points = [(label, size, stats.summarize(values).mean) for label, size, values in by_config.values()]
    finite = [(p[0], p[1], sign * p[2]) for p in points if math.isfinite(p[2]) and math.isfinite(p[1])]
    front = {
        p[0]
        for p in finite
        if not any((q[1] <= p[1] and q[2] < p[2]) or (q[1] < p[1] and q[2] <= p[2]) for q in finite)
    }
    return sorted(
        (ParetoPoint(label, size, value, label in front) for label, size, value in points),
        key=lambda p: p.size,
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
    import matplotlib.pyplot as plt

    return plt


def plain(text: object) -> str:
    """The user's text (arm names, statements, setting names) as matplotlib must be given it to
    draw it as written: a '$' would start math. Tick labels matplotlib writes itself keep theirs."""
    return str(text).replace("$", r"\$")


def curve_panels(curves: dict[str, dict[str, Band]]) -> list[str]:
    """The curves' metrics that some arm has a band for, in order: a panel each."""
    return list(dict.fromkeys(metric for bands in curves.values() for metric in bands))


def render_curves(
    curves: dict[str, dict[str, Band]], path: Path, title: str, labels: dict[str, str] | None = None
) -> Path:
    """One panel per metric with data (`curve_panels`), its axis named by `labels` (metric: label)."""
    plt = _pyplot()
    panels = curve_panels(curves)
    labels = labels or {}
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), sharey=True, squeeze=False)
    for axis, metric in zip(axes[0], panels, strict=True):
        for arm, bands in curves.items():
            if metric not in bands:
                continue
            band = bands[metric]
            (line,) = axis.plot(band.x, band.mean, marker="o", markersize=3, label=plain(arm))
            axis.fill_between(band.x, band.low, band.high, color=line.get_color(), alpha=0.2)
        axis.set_title(plain(metric))
        axis.set_xlabel("epoch")
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.grid(alpha=0.3)
        axis.set_ylabel(plain(labels.get(metric, metric)))
    axes[0][-1].legend(fontsize=7, loc="best")
    figure.suptitle(plain(title), fontsize=10)
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
                plain(f"{arm}: {'diverged' if summary.n else 'no data'}"),
                (0, row),
                xycoords=("axes fraction", "data"),
                fontsize=8,
            )
            continue
        error = [[summary.mean - summary.ci_low], [summary.ci_high - summary.mean]] if summary.n > 1 else None
        axis.errorbar([summary.mean], [row], xerr=error, fmt="o", capsize=4)
    axis.set_yticks(range(len(intervals)), [plain(arm) for arm, _ in intervals], fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel(plain(f"{metric} (mean, 95% CI over seeds)"))
    axis.grid(axis="x", alpha=0.3)
    axis.set_title(plain(title), fontsize=10)
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
        axis.errorbar(xs, means, yerr=errors, marker="o", capsize=4, label=plain(name))
        axis.set_xticks(xs, [plain(label) for label, _ in points])
    axis.set_ylabel(plain(metric))
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    axis.set_title(plain(title), fontsize=10)
    return _save(figure, path)


def render_pareto(points: list[ParetoPoint], path: Path, title: str, size: str, metric: str) -> Path:
    """Size (log axis) against the metric; `size` and `metric` name the axes."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(8, 4.5))
    finite = [p for p in points if math.isfinite(p.value) and math.isfinite(p.size)]
    axis.scatter([p.size for p in finite], [p.value for p in finite], color="0.6", s=18, label="arm")
    front = [p for p in finite if p.on_front]
    axis.plot([p.size for p in front], [p.value for p in front], "o-", color="C3", label="Pareto front")
    for point in front:
        axis.annotate(
            plain(point.label),
            (point.size, point.value),
            fontsize=6,
            xytext=(4, 4),
            textcoords="offset points",
        )
    axis.set_xscale("log")
    axis.set_xlabel(plain(size))
    axis.set_ylabel(plain(f"{metric} (mean over seeds)"))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title(plain(title), fontsize=10)
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
            axis.scatter(
                [p.value for p in done], [p.metric for p in done], color=colour, s=22, label=plain(arm)
            )
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
        axis.set_xlabel(plain(name))
        axis.set_ylabel(plain(f"{metric} (validation)"))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle(plain(f"{title}\nstar: chosen; hollow: pruned, at its last epoch"), fontsize=10)
    return _save(figure, path)


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    _pyplot().close(figure)
    return path
