"""What the command line shows: its two consoles (progress and notes on stderr, results on
stdout), the result and verdict tables, and the live display of a study's trials."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hypotune.api import Epoch, Failed, Finished, Started, Trainable, fmt

if TYPE_CHECKING:
    from hypotune.api import Report

# Piped output (a log, CI) gets wide tables instead of rich's 80-column fallback.
console = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 160)


out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def shown(metrics: dict[str, float], trainable: Trainable, most: int = 2) -> str:
    """An epoch's metrics in a few words: the trainable's deciding metrics where it logs them."""
    names = [n for n in trainable.deciding_metrics if n in metrics] or [n for n in metrics if n != "epoch"]
    return "  ".join(f"{name} {metrics[name]:.4g}" for name in names[:most])


def result_table(status: str, metrics: dict[str, float], trainable: Trainable) -> Table:
    """A trial's final metrics: the trainable's declared ones first, in its order, then the rest."""
    table = Table(title=f"result: {status}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in dict.fromkeys([*trainable.metrics, *sorted(metrics)]):
        if name in metrics and name != "epoch":
            table.add_row(name, fmt(metrics[name]))
    return table


def verdict_table(report: Report) -> Table:
    """The report's verdict table, each verdict in its colour."""
    colours = {
        "supported": "green", "refuted": "red", "equivalent": "cyan", "inconclusive": "yellow",
        "exploratory": "white",
    }  # fmt: skip
    table = Table(title="verdicts")
    for column in report.headers:
        table.add_column(column)
    for row in report.rows():
        verdict = row[2]
        table.add_row(*row[:2], f"[{colours[verdict]}]{verdict}[/]", *row[3:])
    return table


def trial_display(trainable: Any, planned: int, tuning_planned: int = 0) -> Any:
    """Live bars on a terminal; without one (CI, a log file, `| tee`), a plain line per trial."""
    if console.is_terminal:
        return TrialBars(trainable, planned, tuning_planned)
    return TrialLines(trainable, planned, tuning_planned)


def seeds_added(before: dict[str, int], after: dict[str, int], why: dict[str, str] | None = None) -> str:
    """Why the plan grew, in a few words: the hypotheses given more seeds, because their verdicts
    are still open, and under a budget what each next look is expected to decide ('' when no
    hypothesis got more)."""
    why = why or {}
    grown = [h for h, n in after.items() if before and n > before.get(h, 0)]
    if not grown:
        return ""
    said = [
        f"{h} {before.get(h, 0)}->{after[h]}" + (f" ({why[h].split(': ', 1)[-1]})" if h in why else "")
        for h in grown
    ]
    return f"seeds added (verdicts still open): {'; '.join(said) if why else ', '.join(said)}"


def given_up(before: dict[str, str], after: dict[str, str]) -> str:
    """The hypotheses newly given no more seeds, and why ('' when none)."""
    new = [f"{h} {reason}" for h, reason in after.items() if h not in before]
    if not new:
        return ""
    return f"no more seeds (statistics.futility): {'; '.join(new)}"


class TrialBars(contextlib.AbstractContextManager):
    """A bar per running trial under the overall and tuning counts."""

    def __init__(self, trainable: Any, planned: int, tuning_planned: int = 0) -> None:
        self.trainable = trainable  # says how many epochs a trial's bar counts
        self.progress = progress_bar()
        self.overall = self.progress.add_task("trials", total=planned, status="", visible=bool(planned))
        self.tuning = self.progress.add_task("tuning trials", total=tuning_planned, status="",
                                             visible=bool(tuning_planned))  # fmt: skip
        self.bars: dict[str, Any] = {}
        self.summary: Any = None
        self.seeds: dict[str, int] = {}  # seeds per hypothesis as last shown
        self.given_up: dict[str, str] = {}  # hypotheses given up, as last shown

    def __enter__(self) -> TrialBars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def resume(self, tuning_done: int) -> None:
        """A search goes on from the trials an earlier run finished."""
        self.progress.update(self.tuning, completed=tuning_done)

    def on_start(self, summary: Any) -> None:
        """The runner's plan: what is planned, and what an earlier run already finished."""
        self.summary = summary
        self.progress.update(self.overall, total=summary.planned, completed=summary.skipped, visible=True,
                             status=f"{summary.skipped} already done")  # fmt: skip
        self.seeds = dict(summary.seeds)
        if stopped := given_up({}, summary.given_up):
            self.progress.console.print(stopped, markup=False, highlight=False)
        self.given_up = dict(summary.given_up)
        self._grow()

    def _grow(self) -> None:
        if self.summary is None:  # seeds added in rounds grow the plan, and per-seed searches
            return
        self.progress.update(self.overall, total=self.summary.planned)
        if self.summary.tuning_planned:
            self.progress.update(self.tuning, total=self.summary.tuning_planned, visible=True)
        why = seeds_added(self.seeds, self.summary.seeds, self.summary.why)
        self.seeds = dict(self.summary.seeds)
        if stopped := given_up(self.given_up, self.summary.given_up):
            self.progress.console.print(stopped, markup=False, highlight=False)
        self.given_up = dict(self.summary.given_up)
        if why:  # said above the bars, where it stays, and on the bar until the next trial ends
            self.progress.console.print(why, markup=False, highlight=False)
            self.progress.update(self.overall, status=why)

    def on_event(self, event: Any, trial: Any) -> None:
        key = event.key
        if isinstance(event, Started):
            epochs = self.trainable.epochs_of(trial.config.settings)
            self.bars[key] = self.progress.add_task(f"  {trial.name}", total=epochs, status="")
        elif isinstance(event, Epoch):
            self.progress.update(self.bars[key], advance=1, status=shown(event.metrics, self.trainable, 1))
        else:
            if key in self.bars:
                self.progress.remove_task(self.bars.pop(key))
            if isinstance(event, Finished):
                status = "pruned one" if event.result.status == "pruned" else ""
            else:
                status = "a trial failed"
            self.progress.update(self.tuning if trial.tuning else self.overall, advance=1, status=status)
            self._grow()


class TrialLines(contextlib.AbstractContextManager):
    """One line per finished, pruned, diverged or failed trial, with the counts so far."""

    def __init__(self, trainable: Any, planned: int, tuning_planned: int = 0) -> None:
        self.trainable = trainable  # names the metric each line shows
        self.planned, self.tuning_planned = planned, tuning_planned
        self.done, self.tuning_done = 0, 0
        self.started: dict[str, float] = {}
        self.summary: Any = None
        self.seeds: dict[str, int] = {}
        self.given_up: dict[str, str] = {}

    def __exit__(self, *exc: object) -> None:
        return None

    def resume(self, tuning_done: int) -> None:
        self.tuning_done = tuning_done

    def on_start(self, summary: Any) -> None:
        self.summary = summary
        self.seeds = dict(summary.seeds)
        if stopped := given_up({}, summary.given_up):
            console.print(stopped, markup=False, highlight=False)
        self.given_up = dict(summary.given_up)
        self.done = summary.skipped
        if summary.skipped:
            console.print(f"{summary.skipped} of {summary.planned} trials already done")

    def on_event(self, event: Any, trial: Any) -> None:
        key = event.key
        if isinstance(event, Started):
            self.started[key] = time.monotonic()
            return
        if isinstance(event, Epoch):
            return
        if self.summary is not None:
            self.planned, self.tuning_planned = self.summary.planned, self.summary.tuning_planned
            if stopped := given_up(self.given_up, self.summary.given_up):
                console.print(stopped, markup=False, highlight=False)
            self.given_up = dict(self.summary.given_up)
            if why := seeds_added(self.seeds, self.summary.seeds, self.summary.why):
                console.print(why, markup=False, highlight=False)
            self.seeds = dict(self.summary.seeds)
        seconds = time.monotonic() - self.started.pop(key, time.monotonic())
        if trial.tuning:
            self.tuning_done += 1
            count = f"tuning {self.tuning_done}/{self.tuning_planned or '?'}"
        else:
            self.done += 1
            count = f"trial {self.done}/{self.planned}"
        if isinstance(event, Failed):
            what = f"failed: {event.last_line}"
        else:
            result = event.result
            what = result.status if result.status != "finished" else shown(result.metrics, self.trainable, 1)
        console.print(f"{count} {trial.name}: {what} ({seconds:.0f} s)", markup=False, highlight=False)
