"""What each `hypotune` sub-command does: it calls the API and prints what comes back (the
consoles and tables are in cli.output, the MLflow servers' supervision in cli.server)."""

from __future__ import annotations

import argparse
import subprocess

from rich.table import Table

from hypotune import api
from hypotune.cli import server
from hypotune.cli.output import console, out, progress_bar, result_table, shown, trial_display, verdict_table
from hypotune.errors import HypotuneError


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


def run_train(args: argparse.Namespace) -> int:
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


def run_data(args: argparse.Namespace) -> int:
    out.print(api.prepare_data(args.data_dir or ""))
    return 0


def run_ui(args: argparse.Namespace) -> int:
    uri = api.store_uri(args.tracking_uri)
    if not uri.startswith("sqlite:"):
        raise HypotuneError(f"{uri} is a tracking server: open it in a browser instead")
    link = server.ui_link(args.host, args.port, api.ui_experiment(args.target, tracking_uri=uri))
    server.check_port_free(args.host, args.port)
    server.warn_if_exposed(args.host, auth=False)
    console.print(f"starting the MLflow UI for {uri}")

    def announce(child: subprocess.Popen) -> None:
        health = server.ui_base(args.host, args.port) + "health"
        server.wait_until_answering(health, child, server.UI_STARTUP_SECONDS)
        console.print(f"MLflow UI: {link} (Ctrl-C to stop)")

    return server.serve(
        server.ui_command(uri, args.host, args.port), server.ui_environment(uri), ready=announce
    )


def run_validate(args: argparse.Namespace) -> int:
    for line in api.validate(args.file, trainable=args.trainable):
        out.print(line, markup=False, highlight=False)
    return 0


def run_studies(args: argparse.Namespace) -> int:
    """The built-in studies: name, what they test, their presets."""
    table = Table(title="built-in studies (hypotune study run NAME --preset PRESET)")
    for column in ("name", "hypotheses", "presets", "description"):
        table.add_column(column)
    for name, path in sorted(api.built_in_studies().items()):
        study = api.load_study(path)
        table.add_row(name, str(len(study.hypotheses)), ", ".join(study.presets), study.description)
    out.print(table)
    return 0


def run_study_command(args: argparse.Namespace) -> int:
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
        + (f"; at most {args.max_trials} trials this run (--max-trials)" if args.max_trials else "")
        + (f"; a budget of {args.budget / 60:.3g} min (--budget)" if args.budget else "")
    )
    with trial_display(study.trainable, api.trial_count(study, preset)) as display:
        done = api.run_study(study, preset, executor=executor, data_dir=args.data_dir,
                             tracking_uri=args.tracking_uri, budget=args.budget, max_trials=args.max_trials,
                             on_event=display.on_event,
                             on_start=display.on_start)  # fmt: skip
    summary = done.summary
    tuning_note = f"{summary.tuning_finished} tuning trials, " if summary.tuning_finished else ""
    out.print(
        f"{tuning_note}{summary.finished} trials trained, {summary.skipped} already done, "
        f"{summary.diverged} diverged, {len(summary.failed)} failed; store {done.tracking_uri}, "
        f"experiment '{study.name}'"
    )
    if done.stopped:
        out.print(f"{done.stopped}: rerun the command to go on adding seeds where verdicts are open")
    for line in summary.failed:
        out.print(f"  failed {line}")
    return 1 if summary.failed else 0


def run_search(args: argparse.Namespace) -> int:
    """Tune one configuration's nuisance settings on its own and print the best setting."""
    group = args.search_plan
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
    out.print(result.as_toml(), markup=False, highlight=False)
    for line in result.warnings:
        out.print(f"[yellow]warning:[/] {line}")
    out.print(f"search run {result.run_id} in {result.tracking_uri} (experiment '{args.experiment}')")
    return 0


def run_status(args: argparse.Namespace) -> int:
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
    study = api.load_study(args.study, trainable=args.trainable)
    with console.status("reading the store and drawing figures"):
        report = api.write_report(study, args.preset, args.out, tracking_uri=args.tracking_uri)
    return show_report(report, args.fail_on)


def run_analyze(args: argparse.Namespace) -> int:
    with console.status("reading the runs and drawing figures"):
        report = api.analyze_runs(args.runs_file, args.out, tracking_uri=args.tracking_uri)
    return show_report(report, args.fail_on)


def show_report(report: api.Report, fail_on: list[str]) -> int:
    """The verdict table and where the report is; 1 when a verdict is one of `fail_on` (for CI)."""
    out.print(verdict_table(report))
    out.print(report.counts_line())
    out.print(f"report: {report.html_path.resolve()} (and report.md, verdicts.json, verdicts.csv beside it)")
    failing = [v for v in report.verdicts if v.verdict in fail_on]
    for verdict in failing:
        line = f"{verdict.verdict}: {verdict.hypothesis}: {verdict.prediction}"
        out.print(line, markup=False, highlight=False)
    return 1 if failing else 0


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
    command, environment = server.tracking_server(uri, args.artifacts, args.host, args.port, args.auth)
    server.warn_if_exposed(args.host, args.auth)
    shown = uri.split("@")[-1]  # never print a password
    console.print(f"MLflow server on http://{args.host}:{args.port}, runs in ...@{shown}, "
                  f"artifacts in {args.artifacts} (Ctrl-C to stop)")  # fmt: skip
    if args.auth and "MLFLOW_AUTH_ADMIN_PASSWORD" not in environment:
        console.print("users log in (MLflow basic auth): on the first start, set MLFLOW_AUTH_ADMIN_PASSWORD "
                      "to the password of the 'admin' user it creates, or MLflow refuses")  # fmt: skip
    console.print(f"point studies at it with --tracking-uri http://{args.host}:{args.port}")
    return server.serve(command, environment)
