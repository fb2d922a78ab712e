"""The study report, rebuilt from the tracking store alone: report.md and a self-contained
index.html with the same content (figures beside the Markdown, embedded in the HTML)."""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from hypotune import stats
from hypotune.config import flatten
from hypotune.decide.collect import SearchRecord, arm_summaries, collect
from hypotune.decide.decision import Decisions, decide_study
from hypotune.decide.verdicts import FIELDS, Verdict, counts
from hypotune.report import figures
from hypotune.stats import fmt
from hypotune.store.records import TrialRecord
from hypotune.store.tracker import Tracker
from hypotune.study.model import Hypothesis, Study, StudyData, arm_label
from hypotune.study.tuning import TUNING_SEED_BASE
from hypotune.trainables.protocol import counterpart

VERDICT_MARK = {"supported", "refuted", "equivalent", "inconclusive", "exploratory"}


# The report is a list of blocks; templates/report.md.jinja and report.html.jinja draw them.
@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    kind: ClassVar[str] = "heading"


@dataclass(frozen=True)
class Text:
    text: str  # **bold** is the only markup
    kind: ClassVar[str] = "text"


@dataclass(frozen=True)
class Items:
    items: list[str]
    kind: ClassVar[str] = "items"


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]
    kind: ClassVar[str] = "table"


@dataclass(frozen=True)
class Figure:
    path: Path
    alt: str
    kind: ClassVar[str] = "figure"


Block = Heading | Text | Items | Table | Figure


@dataclass
class Report:
    """A written report: where its files are, its verdicts and the audit's findings."""

    html_path: Path
    markdown_path: Path
    verdicts: list[Verdict]
    findings: dict[str, list[str]]

    @property
    def headers(self) -> list[str]:
        """The columns of `rows()`."""
        return list(VERDICT_HEADERS)

    def rows(self) -> list[list[str]]:
        """One row per prediction, as the report's verdict table shows it."""
        return verdict_rows(self.verdicts, self.findings)

    def counts_line(self) -> str:
        """How many predictions were decided, and how: the report's one-line summary."""
        return counts_line(self.verdicts)


def fetch_history(tracker: Tracker, data: StudyData, study: Study) -> figures.History:
    """Per-epoch values of the metrics the learning curves draw, of every run the report uses."""
    run_ids = sorted({r.run_id for arm in data.values() for r in arm.records.values()})
    metrics = tuple(dict.fromkeys(m for h in study.hypotheses for m in figures.curve_metrics(h)))
    return tracker.history(run_ids, metrics)


def build_report(
    study: Study, preset: str, tracker: Tracker, out_dir: Path, decisions: Decisions | None = None
) -> Report:
    """The report of a study's runs under `preset`, kept on its study run; or, given `decisions`,
    of runs made elsewhere (`hypotune analyze`), which leaves the store as it is."""
    left_out = [h.id for h in study.hypotheses if not study.presets[preset].runs(h.id)]
    study = study.under(preset)
    existing = decisions is not None
    decisions = decisions or decide_study(study, preset, tracker)
    data, searches, verdicts, findings = (
        decisions.data,
        decisions.searches,
        decisions.verdicts,
        decisions.findings,
    )
    history = fetch_history(tracker, data, study)
    figure_dir = out_dir / "figures"
    blocks: list[Block] = [
        Heading(1, f"{study.name}: {study.trainable.doc}" if existing else f"{study.name}: {preset} preset"),
        Text(study.description),
        *([Text(f"Data: {study.dataset}.")] if study.dataset else []),
        Text(_budget_line(study, preset)),
        Text(runs_line(study) if existing else seeds_line(study, preset)),
        Heading(2, "Verdicts"),
        Text(counts_line(verdicts)),
        verdict_table(verdicts, findings),
        Text(method_line(study)),
    ]
    if left_out:
        others = [name for name in study.presets if name != preset and not study.presets[name].hypotheses]
        where = f" (presets {', '.join(others)})" if others else ""
        names = ", ".join(left_out)
        text = f"This preset leaves {len(left_out)} hypotheses to longer budgets{where}: {names}."
        blocks.append(Text(text))
    for hypothesis in study.hypotheses:
        own = [v for v in verdicts if v.hypothesis == hypothesis.id]
        blocks += hypothesis_section(
            study,
            hypothesis,
            data,
            own,
            findings[hypothesis.id],
            history,
            figure_dir,
            hypothesis.tuned_in(preset),
        )
        blocks += tuning_section(study, preset, hypothesis, searches, figure_dir)
    blocks += overview_section(study, data, figure_dir)
    blocks += reference_section(study, preset, tracker, data)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown_path = out_dir / "report.md"
    markdown_path.write_text(to_markdown(blocks, out_dir))
    html_path = out_dir / "index.html"
    html_path.write_text(to_html(blocks, f"{study.name} ({preset})"))
    write_verdicts(study, preset, verdicts, findings, out_dir)
    if not existing:
        tracker.log_report(study.name, preset, out_dir)
    return Report(html_path, markdown_path, verdicts, findings)


VERDICT_FIELDS = list(FIELDS)


def write_verdicts(
    study: Study, preset: str, verdicts: list[Verdict], findings: dict[str, list[str]], out_dir: Path
) -> None:
    """verdicts.json (with the counts and the audit's findings) and verdicts.csv, for scripts and CI.
    A number that does not exist (no interval yet, no seeds needed) is null in JSON, empty in CSV."""

    def plain(value: object) -> object:
        return None if isinstance(value, float) and not math.isfinite(value) else value

    rows = [{name: plain(getattr(v, name)) for name in VERDICT_FIELDS} for v in verdicts]
    document = {
        "study": study.name,
        "preset": preset,
        "counts": counts(verdicts),
        "verdicts": rows,
        "findings": {hypothesis: lines for hypothesis, lines in findings.items() if lines},
    }
    (out_dir / "verdicts.json").write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    with (out_dir / "verdicts.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=VERDICT_FIELDS)
        writer.writeheader()
        for verdict, row in zip(verdicts, rows, strict=True):  # effects as the report prints them
            shown = stats.fmt_interval(verdict.effect, verdict.ci_low, verdict.ci_high)
            for name, text in zip(("effect", "ci_low", "ci_high"), shown, strict=True):
                if row[name] is not None:
                    row[name] = text.replace(",", "")
            writer.writerow({k: "" if v is None else v for k, v in row.items()})


def _budget_line(study: Study, preset: str) -> str:
    chosen = study.presets[preset]
    budget = {k: v for k, v in flatten(chosen.overrides).items() if k in study.trainable.budget}
    parts = [f"{chosen.seeds.describe()} per arm"]
    parts += [f"{k.rsplit('.', 1)[-1].replace('_', ' ')} {v}" for k, v in budget.items()]
    return f"Budget: {', '.join(parts)}. {chosen.description}".strip()


def runs_line(study: Study) -> str:
    """Where runs made elsewhere came from, for a reader of `hypotune analyze`'s report."""
    return (
        f"Read from {study.trainable.doc}: nothing was trained. A run belongs to an arm when its logged"
        " params equal the arm's; what else varies between arms is in the audit."
    )


def seeds_line(study: Study, preset: str) -> str:
    """What a seed varies and what stays fixed, so a reader knows which noise the intervals hold:
    as the trainable declares it, with what the study itself varies per seed."""
    trainable = study.trainable
    varied, fixed = list(trainable.varies), list(trainable.fixed)
    if trainable.split_seed:
        (varied if study.vary_split else fixed).append("validation split")
    tuned = [h.tuning for h in study.hypotheses if h.tuning is not None and h.tuned_in(preset)]
    if any(spec.per_seed for spec in tuned):
        varied.append("each tuned arm's setting (searched again for every seed)")
    if any(not spec.per_seed for spec in tuned):
        fixed.append("each tuned arm's setting (tuned once, on its own seed)")
    if not varied:
        line = (
            f"Each trial passes its seed to {trainable.name}, which does not say what a seed varies"
            " (a trainable declares it with varies=...)."
        )
    else:
        line = f"Each seed varies: {', '.join(varied)}."
    return line + (f" Fixed across seeds: {', '.join(fixed)}." if fixed else "")


def counts_line(verdicts: list[Verdict]) -> str:
    tally = counts(verdicts)
    decided = sum(tally[k] for k in ("supported", "refuted", "equivalent"))
    confirmatory = len(verdicts) - tally["exploratory"]
    shown = ", ".join(f"{n} {name}" for name, n in tally.items() if n)
    line = f"Decided {decided} of {confirmatory} predictions ({shown})."
    given_up = sum(v.given_up for v in verdicts)
    if given_up:
        line += (
            f" {given_up} open {'prediction was' if given_up == 1 else 'predictions were'} given no more "
            "seeds: each would need far more than the preset's maximum (statistics.futility)."
        )
    return line


def method_line(study: Study) -> str:
    statistics = study.statistics
    family = (
        "all predictions of the study form one family"
        if statistics.family == "study"
        else "each hypothesis is its own family"
    )
    margin = (
        f"the smallest effect of interest is {statistics.margin.describe()} unless a hypothesis sets its own"
        if statistics.margin
        else "no smallest effect of interest is set, so no null can be decided"
    )
    return (
        "Effects favour the prediction when positive, in the deciding metric's units. Each verdict is "
        "read off a corrected interval: equivalent when it lies inside the margin, supported above zero "
        f"(above the threshold of a threshold claim), refuted below. {family.capitalize()}; intervals are "
        "Bonferroni-corrected within it, widened toward the tail of skewed seeds and repeated over the "
        "looks of the seed plan (strict at the first looks), so the chance of any false verdict in a "
        f"family is at most {statistics.alpha:g}, on skewed and heavy-tailed per-seed numbers too; "
        f"{margin}, and a relative one is fixed at the first look. Comparisons pair the "
        "seeds that the arms share; a diverged run scores as chance (or the worst finished run) and is "
        "counted in the arm's table. See docs/statistics.md."
    )


VERDICT_HEADERS = ["hypothesis", "prediction", "verdict", "effect [corrected CI]", "margin", "seeds", "audit"]


def verdict_rows(verdicts: list[Verdict], findings: dict[str, list[str]]) -> list[list[str]]:
    """One row per prediction, as both the report and the terminal show it."""
    rows = []
    for v in verdicts:
        effect, low, high = stats.fmt_interval(v.effect, v.ci_low, v.ci_high)
        if math.isfinite(v.ci_low) and math.isfinite(v.ci_high):
            effect += f" [{low}, {high}]"
        audit_note = f"{len(findings[v.hypothesis])} finding(s)" if findings[v.hypothesis] else "clean"
        margin = fmt(v.margin) if math.isfinite(v.margin) else "-"
        rows.append([v.hypothesis, v.prediction, v.verdict, effect, margin, str(v.seeds), audit_note])
    return rows


def verdict_table(verdicts: list[Verdict], findings: dict[str, list[str]]) -> Block:
    return Table(VERDICT_HEADERS, verdict_rows(verdicts, findings))


def hypothesis_section(
    study: Study,
    hypothesis: Hypothesis,
    data: StudyData,
    verdicts: list[Verdict],
    findings: list[str],
    history: figures.History,
    figure_dir: Path,
    tuned: bool = False,
) -> list[Block]:
    blocks: list[Block] = [Heading(2, hypothesis.id), Text(hypothesis.statement)]
    blocks.append(arm_table(study, hypothesis, data))
    blocks.append(Items([verdict_item(v) for v in verdicts]))
    if findings:
        blocks.append(Text("**Audit findings** (these weaken the verdicts above):"))
        blocks.append(Items(findings))
    else:
        blocks.append(
            Text("Audit: arms differ only in what the hypothesis declares; same budget, split and preset.")
        )
    return blocks + hypothesis_figures(study, hypothesis, data, history, figure_dir, tuned)


def arm_table(study: Study, hypothesis: Hypothesis, data: StudyData) -> Table:
    """Per arm: the deciding metric, its test counterpart and the model's size where the runs
    logged them (a column nobody logged is left out), and the seeds with how many diverged."""
    trainable = study.trainable
    records = {arm: list(data[hypothesis.id, arm].records.values()) for arm in hypothesis.arms}
    logged = {name for own in records.values() for r in own for name in r.metrics}
    summaries = arm_summaries(hypothesis, data)
    headers = ["arm", f"{trainable.label(hypothesis.metric)}, deciding"]
    columns = [lambda arm: _summary(summaries[arm])]
    test = counterpart(hypothesis.metric, "test")
    if test in logged:
        headers.append(f"{trainable.label(test)}, reported")
        columns.append(lambda arm: _summary(stats.summarize(_reported(records[arm], test))))
    if trainable.size and trainable.size in logged:
        headers.append(trainable.label(trainable.size))
        columns.append(lambda arm: _size(records[arm], trainable.size))
    rows = []
    for arm in hypothesis.arms:
        diverged = sum(r.status == "diverged" for r in records[arm])
        seeds = f"{len(records[arm])}" + (f" ({diverged} diverged)" if diverged else "")
        rows.append([arm, *(column(arm) for column in columns), seeds])
    return Table([*headers, "seeds"], rows)


def _reported(records: list[TrialRecord], metric: str) -> list[float]:
    """A reported metric of the runs that logged it; a diverged run counts as diverged."""
    return [r.metrics.get(metric, math.nan) for r in records if metric in r.metrics or r.status == "diverged"]


def _size(records: list[TrialRecord], metric: str) -> str:
    value = next((r.metrics[metric] for r in records if math.isfinite(r.metrics.get(metric, math.nan))), None)
    return "" if value is None else f"{value:,.0f}"


def verdict_item(verdict: Verdict) -> str:
    """A verdict in full: the evidence, its family and correction, and where the seed loop stands."""
    text = f"**{verdict.verdict}**: {verdict.prediction}. {verdict.evidence}."
    if verdict.family:
        text += f" Family: {verdict.family}; correction: {verdict.correction}."
    else:
        text += " Exploratory: an unadjusted 95% interval, no verdict."
    text += f" Seeds: {verdict.stopped}."
    if verdict.verdict == "inconclusive" and not verdict.given_up and math.isfinite(verdict.next_chance):
        # What a next look would bring: under a budget, looks are ordered by it.
        text += (
            f" The next look would decide it with a chance of about {verdict.next_chance:.0%}, "
            "if its effect and spread are what they seem."
        )
    return text


def hypothesis_figures(
    study: Study,
    hypothesis: Hypothesis,
    data: StudyData,
    history: figures.History,
    figure_dir: Path,
    tuned: bool = False,
) -> list[Block]:
    """Arms with CIs, the interaction plot of crossed factors, and the learning curves."""
    blocks: list[Block] = []
    stem = hypothesis.id
    intervals = figures.interval_data(hypothesis, data, hypothesis.metric)
    label = study.trainable.label(hypothesis.metric)
    path = figures.render_intervals(
        intervals,
        label,
        figure_dir / f"{stem}-arms.png",
        hypothesis.id,
        tuple(p.value for p in hypothesis.predictions if p.kind == "reaches"),
    )
    alt = f"{hypothesis.metric} per arm" + (
        " at its own best tuned setting (isolation plot)" if tuned else ""
    )
    blocks.append(Figure(path, alt))
    lines = figures.interaction_data(hypothesis, data)
    if lines:
        path = figures.render_interaction(
            lines, label, figure_dir / f"{stem}-interaction.png", f"{hypothesis.id}: interaction"
        )
        blocks.append(Figure(path, "interaction plot"))
    curves = figures.curve_data(hypothesis, data, history)
    panels = figures.curve_panels(curves)
    if panels:  # no run logged its metric per epoch: no curves
        labels = {metric: study.trainable.label(metric) for metric in panels}
        path = figures.render_curves(
            curves, figure_dir / f"{stem}-curves.png", f"{hypothesis.id}: learning curves", labels
        )
        blocks.append(Figure(path, f"learning curves: {', '.join(panels)} per epoch"))
    return blocks


def tuning_section(
    study: Study,
    preset: str,
    hypothesis: Hypothesis,
    searches: dict[tuple[str, str], list[SearchRecord]],
    figure_dir: Path,
) -> list[Block]:
    """How each arm's nuisance settings were tuned, what won, and whether the range was wide enough."""
    own = [(arm, s) for arm in hypothesis.arms for s in searches.get((hypothesis.id, arm), [])]
    if not own or hypothesis.tuning is None:
        return []
    spec = hypothesis.tuning
    how = (
        "once for each seed: search N trained on seed and validation split "
        f"{TUNING_SEED_BASE} + N, and seed N of the arm then trained at the best setting of search N, "
        "so the verdicts' seeds also sample the noise of tuning"
        if spec.per_seed
        else f"training seed {TUNING_SEED_BASE}; its seeds were then trained at its best setting"
    )
    blocks: list[Block] = [
        Heading(3, f"{hypothesis.id}: nuisance settings tuned per arm"),
        Text(
            f"Each arm searched {', '.join(d.describe() for d in spec.space)} on its own with "
            f"{spec.budget(preset)} Optuna trials (TPE{', median pruning' if spec.pruning else ''}) on "
            f"{spec.metric} of the validation split, {how}; the test set took no part. The runs at the "
            "best setting decide the verdicts above, so each arm is compared at its own best, not at one "
            "shared value that may suit only one.",
        ),
    ]
    rows, warnings = [], []
    for arm, search in own:
        label = arm_label(arm, search.seed)
        base = flatten(study.arm_config(hypothesis, arm, preset, 0).to_dict())
        base_params = {d.name: base[d.name] for d in search.space}
        at_base = next((t for t in search.trials if t.params == base_params), None)
        best = search.best_trial()
        counts = {state: sum(t.status == state for t in search.trials) for state in ("finished", "pruned")}
        diverged = sum(t.status == "diverged" for t in search.trials)
        rows.append(
            [
                label,
                _setting(search.best) if search.best else "searching",
                fmt(best.value) if best else "n/a",
                f"{_setting(base_params)}: " + (fmt(at_base.value) if at_base else "not tried"),
                f"{counts['finished'] + counts['pruned'] + diverged} of {search.budget} "
                f"({counts['pruned']} pruned, {diverged} diverged)",
            ]
        )
        warnings += [f"**{label}**: {edge}" for edge in search.edges]
    headers = ["arm", "best setting", f"its tuning {spec.metric}", "at the study's own setting", "trials"]
    blocks.append(Table(headers, rows))
    if warnings:
        blocks.append(Text("**Range warnings**: a best value at the edge of its range may not be the best."))
        blocks.append(Items(warnings))
    plots = figures.nuisance_data(hypothesis, searches)
    if any(points for arms in plots.values() for points in arms.values()):
        path = figures.render_nuisance(
            plots, {d.name: d for d in spec.space}, spec.metric, figure_dir / f"{hypothesis.id}-nuisance.png",
            f"{hypothesis.id}: tuning trials per arm",
        )  # fmt: skip
        blocks.append(Figure(path, "validation metric against each tuned setting, per arm"))
    return blocks


def _setting(params: dict) -> str:
    return ", ".join(f"{name.split('.')[-1]}={value:.3g}" if isinstance(value, float) else f"{name}={value}"
                     for name, value in params.items())  # fmt: skip


def overview_section(study: Study, data: StudyData, figure_dir: Path) -> list[Block]:
    """Size against performance over every configuration, where the trainable declares a size
    metric and the runs logged it."""
    view = figures.pareto_view(study, data)
    if view is None:
        return []
    points = figures.pareto_data(study, data, view)
    if not any(math.isfinite(p.value) and math.isfinite(p.size) for p in points):
        return []
    size, metric = study.trainable.label(view.size), study.trainable.label(view.metric)
    title = f"{view.size} vs {view.metric}"
    path = figures.render_pareto(points, figure_dir / "pareto.png", title, size, metric)
    front = [p for p in points if p.on_front]
    better = "lower" if view.lower_is_better else "higher"
    return [
        Heading(2, title),
        Text(
            f"Every distinct configuration the study trained; the red line joins those no other "
            f"configuration beats ({better} {view.metric}) with a smaller {view.size}.",
        ),
        Figure(path, "Pareto front"),
        Table(
            ["configuration on the front", view.size, view.metric],
            [[p.label, f"{p.size:,.0f}", fmt(p.value)] for p in front],
        ),
    ]


def reference_section(study: Study, preset: str, tracker: Tracker, data: StudyData) -> list[Block]:
    """The figures a study file quotes from elsewhere, next to this preset's and every other
    preset's that has runs of those arms."""
    if not study.reference:
        return []
    sources = {}
    for other in study.presets:
        if other != preset:
            collected = collect(study, other, tracker)
            if any(collected[e.hypothesis, e.arm].records for e in study.reference):
                sources[other] = collected
    sources[preset] = data
    headers = ["claim", "original figure", *(f"this study, {name} preset" for name in sources)]
    rows = []
    for entry in study.reference:
        row = [entry.claim, f"{entry.value:g} ({entry.metric})"]
        for source in sources.values():
            values = list(source[entry.hypothesis, entry.arm].values(entry.metric).values())
            row.append(_summary(stats.summarize(values)) if values else "not run")
        rows.append(row)
    return [
        Heading(2, "Original write-up vs this study"),
        Text(
            "Each figure the original write-up claimed (one unseeded run each, validated on the test "
            "set), next to the same arm here: mean and 95% CI over seeds.",
        ),
        Table(headers, rows),
    ]


def _summary(summary: stats.Summary) -> str:
    if summary.n == 0:
        return "no data"
    if not math.isfinite(summary.mean):
        return "diverged"
    if summary.n == 1 or not math.isfinite(summary.ci_low):
        return fmt(summary.mean)
    half = (summary.ci_high - summary.ci_low) / 2
    places = stats.decimals(half)
    return f"{stats.fmt_at(summary.mean, places)} ± {stats.fmt_at(half, places)}"


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.supported { background: #d9f2d9; }
td.refuted { background: #f8d7d7; }
td.equivalent { background: #d9e8f5; }
td.inconclusive { background: #f4f0d9; }
td.exploratory { background: #eeeeee; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
"""


def _environment(autoescape: bool) -> Any:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("hypotune.report", "templates"),
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters |= {"md": _md, "inline": _inline, "embed": _embed, "anchor": _anchor}
    return environment


def to_markdown(blocks: list[Block], base: Path) -> str:
    """The report as Markdown; the user's text (statements, arm names) is escaped, so that no
    viewer renders HTML from it."""
    template = _environment(autoescape=False).get_template("report.md.jinja")
    return template.render(blocks=blocks, relative=lambda path: Path(path).relative_to(base).as_posix())


def to_html(blocks: list[Block], title: str) -> str:
    """The report as one self-contained page: figures embedded, the user's text escaped."""
    template = _environment(autoescape=True).get_template("report.html.jinja")
    return template.render(blocks=blocks, title=title, style=STYLE, verdicts=VERDICT_MARK)


def _md(text: str) -> str:
    """Text for Markdown: '&', '<' and '>' as entities, and no line break that ends a block."""
    return html.escape(text, quote=False).replace("\n", " ")


def _inline(text: str) -> Any:
    """Escape, then turn **bold** into <strong>."""
    from markupsafe import Markup

    pieces = html.escape(text).split("**")
    return Markup("".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(pieces)))


def _embed(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _anchor(text: str) -> str:
    return text.replace(" ", "-")
