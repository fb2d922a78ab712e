"""What each `hypotune` sub-command does, and how its results are shown in the terminal."""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hypotune.errors import HypotuneError

if TYPE_CHECKING:
    from hypotune.trainables.protocol import Trainable

# Piped output (a log, CI) gets wide tables instead of rich's 80-column fallback.
console = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 160)
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "study":
        return {"run": run_study_command, "status": run_status}[args.study_command](args)
    handler = {
        "train": run_train,
        "data": run_data,
        "ui": run_ui,
        "validate": run_validate,
        "report": run_report,
        "analyze": run_analyze,
        "server": run_server,
        "search": run_search,
        "studies": run_studies,
    }[args.command]
    return handler(args)


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


def run_train(args: argparse.Namespace) -> int:
    from hypotune import api

    config, trainable = args.run_config, args.trainable
    epochs = trainable.epochs_of(config.settings)
    with progress_bar() as progress:
        task = progress.add_task("epochs", total=epochs, status="", visible=False)

        def on_start(start: api.TrainStart) -> None:
            where = f" on {start.data}" if start.data else ""
            console.print(
                f"training {trainable.name}{where}, run {start.run_id}"
                + (f": {start.about}" if start.about else "")
            )
            progress.update(task, visible=True)

        def on_epoch(metrics: dict[str, float]) -> None:
            status = shown(metrics, trainable)
            progress.update(task, advance=1, status=status)
            if not console.is_terminal:  # a log: a line per epoch instead of a bar
                console.print(f"epoch {int(metrics['epoch'])}/{epochs or '?'}: {status}")

        runtime = args.runtime
        result = api.train(config, threads=runtime.threads, device=runtime.device,
                           data_dir=runtime.data_dir, tracking_uri=args.tracking_uri,
                           experiment=args.experiment, keep_weights=not args.no_weights, trainable=trainable,
                           on_start=on_start, on_epoch=on_epoch)  # fmt: skip
    out.print(result_table(result.status, result.metrics, trainable))
    out.print(f"run {result.run_id} in {result.tracking_uri} (experiment '{args.experiment}')")
    return 0 if result.status == "finished" else 1


def shown(metrics: dict[str, float], trainable: Trainable, most: int = 2) -> str:
    """An epoch's metrics in a few words: the trainable's deciding metrics where it logs them."""
    names = [n for n in trainable.deciding_metrics if n in metrics] or [n for n in metrics if n != "epoch"]
    return "  ".join(f"{name} {metrics[name]:.4g}" for name in names[:most])


def result_table(status: str, metrics: dict[str, float], trainable: Trainable) -> Table:
    """A trial's final metrics: the trainable's declared ones first, in its order, then the rest."""
    from hypotune.stats import fmt

    table = Table(title=f"result: {status}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in dict.fromkeys([*trainable.metrics, *sorted(metrics)]):
        if name in metrics and name != "epoch":
            table.add_row(name, fmt(metrics[name]))
    return table


def run_data(args: argparse.Namespace) -> int:
    from hypotune.config import Runtime
    from hypotune.trainables.load import load

    out.print(load().ready(Runtime(data_dir=args.data_dir or "")))
    return 0


UI_STARTUP_SECONDS = 120.0  # a cold first start on a busy 2-core machine takes under a minute


def run_ui(args: argparse.Namespace) -> int:
    from hypotune.api import store_uri
    from hypotune.store.tracker import Tracker

    uri = store_uri(args.tracking_uri)
    if not uri.startswith("sqlite:"):
        raise HypotuneError(f"{uri} is a tracking server: open it in a browser instead")
    link = ui_link(args.host, args.port, ui_experiment(Tracker(uri, existing=True), args.target))
    check_port_free(args.host, args.port)
    warn_if_exposed(args.host, auth=False)
    console.print(f"starting the MLflow UI for {uri}")

    def announce(child: subprocess.Popen) -> None:
        wait_until_answering(ui_base(args.host, args.port) + "health", child, UI_STARTUP_SECONDS)
        console.print(f"MLflow UI: {link} (Ctrl-C to stop)")

    return serve(ui_command(uri, args.host, args.port), ui_environment(uri), ready=announce)


def ui_command(uri: str, host: str, port: int) -> list[str]:
    """MLflow's UI as one quiet worker: its default of 4 uvicorn workers starts four servers for
    one reader, and its access log prints a line for each of the many requests a page makes."""
    return [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", uri, "--registry-store-uri", uri,  # both given: MLflow prints no notice
        "--host", host, "--port", str(port),
        "--workers", "1", "--uvicorn-opts", "--log-level warning --no-access-log",
    ]  # fmt: skip


def ui_environment(uri: str) -> dict[str, str]:
    """The UI's environment: MLflow's INFO lines and the deprecation warnings its imports raise
    are hidden, its own warnings and errors are not; the user's PYTHONWARNINGS or
    MLFLOW_LOGGING_LEVEL, when set, win."""
    quiet = {"PYTHONWARNINGS": "ignore", "MLFLOW_LOGGING_LEVEL": "WARNING"}
    return quiet | dict(os.environ) | {"MLFLOW_TRACKING_URI": uri}


def ui_base(host: str, port: int) -> str:
    """The server's root as a browser reaches it: an address that binds every interface is
    reached on loopback, an IPv6 one in brackets."""
    shown = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def ui_link(host: str, port: int, experiment_id: str | None) -> str:
    """The page to open: the experiment's runs, or the list of experiments. MLflow's own first
    page is its GenAI home, a click away from either."""
    page = f"experiments/{experiment_id}/runs" if experiment_id is not None else "experiments"
    return f"{ui_base(host, port)}#/{page}"


def ui_experiment(tracker: Any, target: str | None) -> str | None:
    """The id of the experiment the UI opens on: the one `target` (a study, a runs file or an
    experiment's name) names; without a target, the store's only experiment with runs besides
    Default, or None (the list) when there are none or several."""
    if target is None:
        return only_experiment(tracker)
    name = experiment_of(target)
    found = tracker.find_experiment(name)
    if found is None:
        names = ", ".join(e.name for e in tracker.client.search_experiments() if e.name != "Default")
        raise HypotuneError(f"no experiment named '{name}' in {tracker.uri} (it has: {names or 'none'}); "
                            "a study's appears once it has run")  # fmt: skip
    return found


def only_experiment(tracker: Any) -> str | None:
    """The one experiment with runs besides Default, else None."""
    with_runs = []
    for experiment in tracker.client.search_experiments():
        ident = experiment.experiment_id
        if experiment.name != "Default" and tracker.client.search_runs([ident], max_results=1):
            with_runs.append(ident)
            if len(with_runs) > 1:
                return None
    return with_runs[0] if with_runs else None


def experiment_of(target: str) -> str:
    """The experiment a study file, a built-in study's name or a runs file records into (read
    from the file alone, without loading its trainable: that would load torch before the UI
    starts); any other word is an experiment's name."""
    from pathlib import Path

    from hypotune.config import read_toml
    from hypotune.study.file import built_in_studies, study_path

    path = Path(target)
    if not path.is_file() and target not in built_in_studies():
        if path.suffix == ".toml":
            raise HypotuneError(f"{target}: no such file")
        return target
    path = study_path(target)
    raw = read_toml(path)
    if "runs" in raw:
        runs = raw["runs"]
        experiment = runs.get("experiment") if isinstance(runs, dict) else None
        if isinstance(experiment, str) and experiment:
            return experiment
        from hypotune.decide.runs_file import load_runs_file

        return load_runs_file(path, raw)[1].experiment  # raises what is wrong with it
    name = raw.get("name")
    if isinstance(name, str) and name:
        return name
    from hypotune.api import load_study

    return load_study(path).name  # raises what is wrong with it


def check_port_free(host: str, port: int) -> None:
    """A server already on the port would answer in this one's place, and this one would exit."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as error:
            why = error.strerror or error
            raise HypotuneError(f"cannot listen on {host}:{port} ({why}): give another --port") from None


def wait_until_answering(url: str, child: subprocess.Popen, seconds: float) -> None:
    """Return once `url` answers 200; a server that exits or never answers is a one-line error
    (its own messages are on the console above it)."""
    import urllib.request

    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an http_proxy
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise HypotuneError(f"the MLflow server exited (code {child.returncode}) before it answered")
        try:
            with direct.open(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise HypotuneError(f"the MLflow server did not answer on {url} within {seconds:.0f} s")


def serve(
    command: list[str],
    env: dict[str, str] | None = None,
    grace: float = 20.0,
    ready: Callable[[subprocess.Popen], None] | None = None,
) -> int:
    """Run a server and all it starts as one process group, and end the whole group when this
    process is stopped: Ctrl-C, SIGTERM (a service manager, `kill`) or SIGHUP (a closed terminal).
    MLflow's server starts uvicorn and job consumers; killing only its first process orphans them.
    `ready` runs once, while the server starts (to say where it answers); Ctrl-C stops it too."""
    import signal

    child = subprocess.Popen(command, env=env, process_group=0)  # its own group, in this session
    stopping = False

    def stop(signum: int = signal.SIGTERM, frame: Any = None) -> None:
        nonlocal stopping
        stopping = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            try:
                if ready is not None:
                    announce, ready = ready, None
                    try:
                        announce(child)
                    except HypotuneError:
                        if not stopping:  # stopped while it started: that ends it, not an error
                            raise
                code = child.wait()
                break
            except KeyboardInterrupt:  # the terminal's Ctrl-C reaches only this process's group
                stop()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:  # its helpers shut down on their own, briefly
            try:
                os.killpg(child.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child.poll() is None:  # an error in this process: never leave the server behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
    return 0 if stopping else code


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def warn_if_exposed(host: str, auth: bool) -> None:
    """A server on another address than loopback is reachable by the network: say what that means."""
    if host in LOOPBACK or host.startswith("127."):
        return
    if auth:
        console.print(f"warning: listening on {host}: users must log in, but HTTP sends passwords and runs "
                  "unencrypted; put a TLS proxy in front of it beyond a trusted network")  # fmt: skip
        return
    console.print(
        f"[bold red]WARNING[/]: listening on {host} without authentication: anyone who can reach this "
        "port can read, change and delete every run and write artifacts. Use --auth (MLflow's "
        "basic-auth app) and a TLS proxy, or keep --host 127.0.0.1 and use an SSH tunnel (docs/scaling.md)."
    )


def run_validate(args: argparse.Namespace) -> int:
    from hypotune.config import read_toml, run_config_from_dict
    from hypotune.run.search import plan_searches
    from hypotune.study.file import parse_study, study_path
    from hypotune.study.model import plan
    from hypotune.trainables.load import load

    args.file = study_path(args.file)
    raw = read_toml(args.file)  # once: the file may be a pipe (/dev/stdin)
    if "runs" in raw:
        from hypotune.decide.runs_file import load_runs_file

        study, spec = load_runs_file(args.file, raw)
        out.print(f"{args.file}: runs file '{study.name}' is valid ({len(study.hypotheses)} hypotheses)")
        out.print(f"  it reads experiment '{spec.experiment}', arms by {', '.join(spec.params)}")
        return 0
    if not {"hypotheses", "trainable", "name"} & set(raw):
        trainable = args.trainable or load()
        config = run_config_from_dict(trainable.settings, raw)
        about = trainable.describe(config.settings)
        out.print(f"{args.file}: a valid run config" + (f" ({about})" if about else ""))
        return 0
    study = parse_study(raw, args.file, args.trainable)
    out.print(f"{args.file}: study '{study.name}' is valid")
    for name, preset in study.presets.items():
        narrowed = study.under(name)
        groups = plan_searches(narrowed, name)
        # A tuned arm's trials are one config per search until its best setting is known.
        trials = len(plan(narrowed, name)) + sum(preset.seeds.min if g.seed is None else 1 for g in groups)
        count = len(narrowed.hypotheses)
        first = " at first" if preset.seeds.adaptive else ""
        line = f"  preset {name}: {trials} trials{first}, {preset.seeds.describe()}, {count} hypotheses"
        if groups:
            tuning = sum(g.budget for g in groups)
            line += f"; first {tuning} tuning trials ({len(groups)} arms searched)"
        out.print(line)
    return 0


def run_studies(args: argparse.Namespace) -> int:
    """The built-in studies: name, what they test, their presets."""
    from hypotune.study.file import built_in_studies, load_study

    table = Table(title="built-in studies (hypotune study run NAME --preset PRESET)")
    for column in ("name", "hypotheses", "presets", "description"):
        table.add_column(column)
    for name, path in sorted(built_in_studies().items()):
        study = load_study(path)
        table.add_row(name, str(len(study.hypotheses)), ", ".join(study.presets), study.description)
    out.print(table)
    return 0


def run_study_command(args: argparse.Namespace) -> int:
    from hypotune import api
    from hypotune.study.model import plan

    study = api.load_study(args.study, trainable=args.trainable)
    preset = study.preset(args.preset).name
    study = study.under(preset)
    executor = api.executor_for(args.executor, workers=args.workers, threads=args.threads,
                                device=args.device, data_dir=args.data_dir, address=args.address,
                                cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                                preload=study.trainable.preload)  # fmt: skip
    where = f"Ray ({args.address or 'local'})" if args.executor == "ray" else f"{args.workers} workers"
    tuned = sum(h.tuned_in(preset) for h in study.hypotheses)
    console.print(
        f"study '{study.name}', preset '{preset}': {study.presets[preset].seeds.describe()} per arm"
        + (
            f", {tuned} {'hypothesis tunes its' if tuned == 1 else 'hypotheses tune their'} arms first"
            if tuned
            else ""
        )
        + f"; {where}"
    )
    with trial_display(study.trainable, len(plan(study, preset))) as display:
        done = api.run_study(study, preset, executor=executor, data_dir=args.data_dir,
                             tracking_uri=args.tracking_uri, budget=args.budget, on_event=display.on_event,
                             on_start=display.on_start)  # fmt: skip
    summary = done.summary
    tuning_note = f"{summary.tuning_finished} tuning trials, " if summary.tuning_finished else ""
    out.print(
        f"{tuning_note}{summary.finished} trials trained, {summary.skipped} already done, "
        f"{summary.diverged} diverged, {len(summary.failed)} failed; store {done.tracking_uri}, "
        f"experiment '{study.name}'"
    )
    if summary.budget_stopped:
        out.print("the time budget ran out: rerun the command to go on adding seeds where verdicts are open")
    for line in summary.failed:
        out.print(f"  failed {line}")
    return 1 if summary.failed else 0


def trial_display(trainable: Any, planned: int, tuning_planned: int = 0) -> Any:
    """Live bars on a terminal; without one (CI, a log file, `| tee`), a plain line per trial."""
    if console.is_terminal:
        return TrialBars(trainable, planned, tuning_planned)
    return TrialLines(trainable, planned, tuning_planned)


def seeds_added(before: dict[str, int], after: dict[str, int]) -> str:
    """Why the plan grew, in a few words: the hypotheses given more seeds, because their verdicts
    are still open ('' when no hypothesis got more)."""
    grown = [f"{h} {before.get(h, 0)}->{n}" for h, n in after.items() if before and n > before.get(h, 0)]
    if not grown:
        return ""
    return f"seeds added (verdicts still open): {', '.join(grown)}"


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
        self._grow()

    def _grow(self) -> None:
        if self.summary is None:  # seeds added in rounds grow the plan, and per-seed searches
            return
        self.progress.update(self.overall, total=self.summary.planned)
        if self.summary.tuning_planned:
            self.progress.update(self.tuning, total=self.summary.tuning_planned, visible=True)
        why = seeds_added(self.seeds, self.summary.seeds)
        self.seeds = dict(self.summary.seeds)
        if why:  # said above the bars, where it stays, and on the bar until the next trial ends
            self.progress.console.print(why, markup=False, highlight=False)
            self.progress.update(self.overall, status=why)

    def on_event(self, event: Any, trial: Any) -> None:
        from hypotune.run.events import Epoch, Finished, Started

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

    def __exit__(self, *exc: object) -> None:
        return None

    def resume(self, tuning_done: int) -> None:
        self.tuning_done = tuning_done

    def on_start(self, summary: Any) -> None:
        self.summary = summary
        self.seeds = dict(summary.seeds)
        self.done = summary.skipped
        if summary.skipped:
            console.print(f"{summary.skipped} of {summary.planned} trials already done")

    def on_event(self, event: Any, trial: Any) -> None:
        from hypotune.run.events import Epoch, Failed, Started

        key = event.key
        if isinstance(event, Started):
            self.started[key] = time.monotonic()
            return
        if isinstance(event, Epoch):
            return
        if self.summary is not None:
            self.planned, self.tuning_planned = self.summary.planned, self.summary.tuning_planned
            if why := seeds_added(self.seeds, self.summary.seeds):
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


def run_search(args: argparse.Namespace) -> int:
    """Tune one configuration's nuisance settings on its own and print the best setting."""
    from hypotune import api
    from hypotune.config import toml_tables
    from hypotune.study.tuning import overrides_from_params

    group = args.search_group
    console.print(
        f"searching {', '.join(d.describe() for d in group.spec.space)} for {args.config}: "
        f"{group.budget} trials on validation {group.spec.metric}, {args.workers} workers"
    )
    with trial_display(group.trainable, 0, group.budget) as display:

        def on_resume(done: int) -> None:
            console.print(f"resuming: {done} of {group.budget} trials already done")
            display.resume(done)

        result = api.search(group, workers=args.workers, threads=args.threads, data_dir=args.data_dir,
                            tracking_uri=args.tracking_uri, experiment=args.experiment,
                            on_event=display.on_event, on_resume=on_resume)  # fmt: skip
    out.print(f"best of {result.trials} trials: {result.metric} {result.best_value:.4f} with")
    out.print(toml_tables(overrides_from_params(result.best)), markup=False, highlight=False)
    for line in result.warnings:
        out.print(f"[yellow]warning:[/] {line}")
    out.print(f"search run {result.run_id} in {result.tracking_uri} (experiment '{args.experiment}')")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from hypotune import api

    study = api.load_study(args.study, trainable=args.trainable)
    preset = study.preset(args.preset).name
    table = Table(title=f"{study.name} ({preset})")
    columns = ("finished", "running", "failed", "pending", "tuning")
    table.add_column("hypothesis")
    for column in columns:
        table.add_column(column if column != "tuning" else "awaiting tuning", justify="right")
    for row in api.study_status(study, preset, tracking_uri=args.tracking_uri):
        table.add_row(row.id, *(str(getattr(row, column)) for column in columns))
    out.print(table)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from hypotune import api

    study = api.load_study(args.study, trainable=args.trainable)
    with console.status("reading the store and drawing figures"):
        report = api.write_report(study, args.preset, args.out, tracking_uri=args.tracking_uri)
    return show_report(report, args.fail_on)


def run_analyze(args: argparse.Namespace) -> int:
    from hypotune import api

    with console.status("reading the runs and drawing figures"):
        report = api.analyze_runs(args.runs_file, args.out, tracking_uri=args.tracking_uri)
    return show_report(report, args.fail_on)


def show_report(report: Any, fail_on: list[str]) -> int:
    """The verdict table and where the report is; 1 when a verdict is one of `fail_on` (for CI)."""
    from hypotune.report.build import counts_line

    out.print(verdict_table(report.verdicts, report.findings))
    out.print(counts_line(report.verdicts))
    out.print(f"report: {report.html_path.resolve()} (and report.md, verdicts.json, verdicts.csv beside it)")
    failing = [v for v in report.verdicts if v.verdict in fail_on]
    for verdict in failing:
        line = f"{verdict.verdict}: {verdict.hypothesis}: {verdict.prediction}"
        out.print(line, markup=False, highlight=False)
    return 1 if failing else 0


def verdict_table(verdicts: list[Any], findings: dict[str, list[str]]) -> Table:
    from hypotune.report.build import VERDICT_HEADERS, verdict_rows

    colours = {
        "supported": "green", "refuted": "red", "equivalent": "cyan", "inconclusive": "yellow",
        "exploratory": "white",
    }  # fmt: skip
    table = Table(title="verdicts")
    for column in VERDICT_HEADERS:
        table.add_column(column)
    for row in verdict_rows(verdicts, findings):
        verdict = row[2]
        table.add_row(*row[:2], f"[{colours[verdict]}]{verdict}[/]", *row[3:])
    return table


def run_server(args: argparse.Namespace) -> int:
    """An MLflow tracking server whose runs live in a database and artifacts in a folder."""
    uri = args.backend_store_uri
    if not uri:
        raise HypotuneError(
            "give --backend-store-uri, or set MLFLOW_BACKEND_STORE_URI (keeps a password out of ps)"
        )
    if uri.startswith("postgresql://"):  # SQLAlchemy's default PostgreSQL driver is psycopg 3
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise HypotuneError("a PostgreSQL store needs psycopg: pip install 'hypotune[server]'") from None
    if args.auth:
        try:
            import flask_wtf  # noqa: F401
        except ImportError:
            raise HypotuneError("--auth needs MLflow's auth extra: pip install 'hypotune[server]'") from None
    args.artifacts.mkdir(parents=True, exist_ok=True)
    # The database URI (and its password) travels in the environment, never on a command line
    # that `ps` shows to every user of the machine.
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--artifacts-destination", str(args.artifacts.resolve()), "--serve-artifacts",
        "--host", args.host, "--port", str(args.port),
    ] + (["--app-name", "basic-auth"] if args.auth else [])  # fmt: skip
    environment = os.environ | {"MLFLOW_BACKEND_STORE_URI": uri}
    if args.auth and "MLFLOW_FLASK_SERVER_SECRET_KEY" not in environment:
        environment["MLFLOW_FLASK_SERVER_SECRET_KEY"] = server_secret()  # the login form's CSRF key
    warn_if_exposed(args.host, args.auth)
    shown = uri.split("@")[-1]  # never print a password
    console.print(f"MLflow server on http://{args.host}:{args.port}, runs in ...@{shown}, "
                  f"artifacts in {args.artifacts} (Ctrl-C to stop)")  # fmt: skip
    if args.auth and "MLFLOW_AUTH_ADMIN_PASSWORD" not in os.environ:
        console.print("users log in (MLflow basic auth): on the first start, set MLFLOW_AUTH_ADMIN_PASSWORD "
                      "to the password of the 'admin' user it creates, or MLflow refuses")  # fmt: skip
    console.print(f"point studies at it with --tracking-uri http://{args.host}:{args.port}")
    return serve(command, environment)


def server_secret() -> str:
    """A secret for MLflow's login forms, made once and kept readable by this user only, so that
    restarts (and several servers of one user) agree on it."""
    import secrets
    from pathlib import Path

    path = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "hypotune" / "server-secret"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip()
