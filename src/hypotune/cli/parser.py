"""The `hypotune` command: thin dispatch over library functions; renders, never computes."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from hypotune.api import DEFAULT_SEARCH_TRIALS
from hypotune.config import (
    RunConfig,
    Runtime,
    dotted_to_nested,
    field_types,
    full_name,
    helps,
    leaves,
    merge,
    parse_text,
    read_toml,
    run_config_from_dict,
    setting_type,
)
from hypotune.errors import ConfigError, HypotuneError
from hypotune.trainables.load import load, resolve_ref
from hypotune.trainables.protocol import Trainable

EXIT_USER_ERROR = 2


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line, like every other user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see --help)\n")

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """argparse reports leftover words from the top parser, which does not know the subcommand's
        flags; the chosen subcommand's parser does, so it reports them and offers the closest flag."""
        known, extras = self.parse_known_args(args, namespace)
        if extras:
            chosen = chosen_subparser(self, known)
            chosen.error(f"unrecognized arguments: {' '.join(extras)}{flag_hints(extras, chosen)}")
        return known


def chosen_subparser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost subcommand's parser (`study run`'s), found by the command names in `args`."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            name = getattr(args, action.dest, None)
            if name in action.choices:
                return chosen_subparser(action.choices[name], args)
    return parser


def flag_hints(extras: Sequence[str], parser: argparse.ArgumentParser) -> str:
    """'; did you mean --momentum?' for the leftover flags that have a close one (naming each typo
    when there are several), as the study file's unknown keys get; '' for none."""
    typos = [word.partition("=")[0] for word in extras if word.startswith("--") and word != "--"]
    found = {typo: close for typo in typos if (close := closest_flag(typo, parser))}
    if not found:
        return ""
    if len(typos) == 1:
        return f"; did you mean {found[typos[0]]}?"
    return "; did you mean " + ", ".join(f"{close} for {typo}" for typo, close in found.items()) + "?"


def closest_flag(typo: str, parser: argparse.ArgumentParser) -> str | None:
    """The parser's long flag closest to `typo` (difflib). A setting's full name (--train.momentum)
    or snake case falls back to its bare flag (--momentum), the one `train` and `search` take."""
    flags = sorted(option for option in parser._option_string_actions if option.startswith("--"))
    bare = "--" + typo.lstrip("-").rsplit(".", 1)[-1].replace("_", "-")
    close = difflib.get_close_matches(typo, flags, n=1) or difflib.get_close_matches(bare, flags, n=1)
    return close[0] if close else None


def positive_int(text: str) -> int:
    """A whole number, 1 or more (a count of workers or of trials)."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if count < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return count


def port_number(text: str) -> int:
    """A TCP port, 1 to 65535: a larger one would reach the socket call as a traceback."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port: give one from 1 to 65535")
    return port


def add_tracking_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI"),
        help="MLflow tracking URI (default: a SQLite store under ./runs/)",
    )


def add_fail_on_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fail-on",
        action="append",
        default=[],
        choices=("refuted", "inconclusive", "equivalent", "supported", "exploratory"),
        metavar="VERDICT",
        help="exit 1 when any prediction has this verdict (repeatable; for CI): refuted, inconclusive, ...",
    )


def add_runtime_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("execution (not part of the trial key)")
    for name, field in Runtime.__dataclass_fields__.items():
        flag = "--" + name.replace("_", "-")
        group.add_argument(flag, dest=f"runtime.{name}", metavar="VALUE", help=field.metadata["help"])


TRAINABLE_HELP = "the training code: 'module:function' or 'file.py:function' (default: the built-in CNN)"


def chosen_trainable(argv: Sequence[str]) -> Trainable | None:
    """The trainable `--trainable` names, read before the rest: its settings are the flags."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--trainable")
    return trainable_of(early.parse_known_args(argv)[0])


def trainable_of(args: argparse.Namespace) -> Trainable | None:
    """The trainable the arguments name: loaded already, named by --trainable, or None."""
    named = getattr(args, "trainable", None)
    return load(resolve_ref(named, Path.cwd())) if isinstance(named, str) else named


def add_trainable_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trainable", metavar="REF", help=TRAINABLE_HELP)


def add_setting_flags(parser: argparse.ArgumentParser, of: Trainable) -> None:
    """One flag per setting of the trainable, e.g. --depth, --steps-per-epoch (its bare name where
    that is unique, else --model.depth); help and default from the setting."""
    parser.add_argument("--seed", dest="set.seed", metavar="N", help="seed of the run (default 0)")
    defaults = flatten_defaults(of.settings)
    names = list(leaves(of.settings))
    bare = [name.rsplit(".", 1)[-1] for name in names]
    groups: dict[str, Any] = {}
    for name, text in helps(of.settings).items():
        table = name.rpartition(".")[0]
        if table not in groups:
            groups[table] = parser.add_argument_group(f"{table or of.name} settings")
        short = name.rsplit(".", 1)[-1]
        flag = short if bare.count(short) == 1 else name
        default = defaults[name]
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        flag = "--" + flag.replace("_", "-")
        if flag in parser._option_string_actions:  # a command's own flag (--experiment): use --set
            continue
        groups[table].add_argument(
            flag, dest=f"set.{name}", metavar="VALUE", help=f"{text} (default {shown})"
        )


def flatten_defaults(cls: type) -> dict[str, Any]:
    from hypotune.config import flatten

    return flatten(dataclasses.asdict(cls()))


def flag_overrides(args: argparse.Namespace, of: Trainable) -> dict[str, Any]:
    """Settings given as --name VALUE flags and --set KEY=VALUE, as nested overrides."""
    flags = vars(args).items()
    pairs = [(d.removeprefix("set."), t) for d, t in flags if d.startswith("set.") and t is not None]
    for item in args.set or []:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE, got '{item}'")
        pairs.append((key if key == "seed" else full_name(of.settings, key), text))
    overrides: dict[str, Any] = {}
    for key, text in pairs:
        value = parse_text(key, text, setting_type(of.settings, key, bare=True))
        overrides = merge(overrides, dotted_to_nested(key, value))
    return overrides


def resolve_run_config(args: argparse.Namespace) -> RunConfig:
    """Defaults < preset < --config file < flags."""
    of = trainable_of(args) or load()
    layered: dict[str, Any] = {}
    if args.preset:
        layered = merge(layered, of.presets[args.preset])
    if args.config:
        layered = merge(layered, read_toml(args.config))
    layered = merge(layered, flag_overrides(args, of))
    return run_config_from_dict(of.settings, layered)


def resolve_runtime(args: argparse.Namespace, threads: int = 1) -> Runtime:
    """Runtime flags over the given default thread count."""
    values: dict[str, Any] = {"threads": threads}
    for name, hint in field_types(Runtime).items():
        text = getattr(args, f"runtime.{name}", None)
        if text is not None:
            values[name] = parse_text(name, text, hint)
    return Runtime(**values)


def search_config(args: argparse.Namespace) -> Any:
    """The one search `hypotune search` runs: the file's settings and [tuning], then flags."""
    from hypotune.api import plan_search

    args.trainable = trainable_of(args) or load()
    space = dict(parse_space_flag(text, args.trainable) for text in args.space) if args.space else None
    label = args.config.stem if args.config else "config"
    pruning = False if args.no_pruning else None
    return plan_search(args.config, overrides=flag_overrides(args, args.trainable), space=space,
                        trials=args.trials, metric=args.metric, pruning=pruning, label=label,
                        trainable=args.trainable)  # fmt: skip


def parse_space_flag(text: str, of: Trainable) -> tuple[str, dict[str, Any]]:
    """'train.lr=1e-4:1e-2:log' -> ('train.lr', {'low': 1e-4, 'high': 1e-2, 'scale': 'log'})."""
    name, sep, spec = text.partition("=")
    parts = spec.split(":")
    if not sep or len(parts) not in (2, 3):
        raise ConfigError(f"--space expects KEY=LOW:HIGH or KEY=LOW:HIGH:log, got '{text}'")
    settings = of.settings
    name = full_name(settings, name)
    hint = setting_type(settings, name, bare=True)
    kind = int if hint is int else float
    low, high = (parse_text(f"--space {name}", part, kind) for part in parts[:2])
    return name, {"low": low, "high": high, "scale": parts[2] if len(parts) == 3 else "linear"}


def add_search_parser(commands: Any, of: Trainable) -> None:
    search = commands.add_parser(
        "search", help="tune one configuration's nuisance settings (e.g. the learning rate) with Optuna"
    )
    search.add_argument(
        "--config", type=Path, help="TOML file with [data], [model], [train] and optionally [tuning]"
    )
    search.add_argument(
        "--space", action="append", metavar="KEY=LOW:HIGH[:log]",
        help="a setting to tune and its range, e.g. train.lr=1e-4:1e-2:log (default: that one)",
    )  # fmt: skip
    search.add_argument("--trials", type=int, help=f"tuning trials (default {DEFAULT_SEARCH_TRIALS})")
    search.add_argument("--metric", help="val_loss (default), best_val_loss or val_acc; never a test metric")
    search.add_argument("--no-pruning", action="store_true", help="train every trial to the end")
    search.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="any setting, e.g. --set model.depth=6"
    )
    add_pool_flags(search)
    search.add_argument("--data-dir", default="", help="directory holding the IDX files")
    search.add_argument("--experiment", default="search", help="MLflow experiment name")
    add_trainable_flag(search)
    add_tracking_flags(search)
    add_setting_flags(search, of)  # last: a setting named like one of the flags above is given with --set


def add_pool_flags(parser: argparse.ArgumentParser) -> None:
    """--workers and --threads: how many trials run at once, and the threads each one gets."""
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="parallel trials (default: one per core)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per trial (default 1)")


def duration(text: str) -> float:
    """Seconds in '90s', '30m', '2h' or a plain number of seconds."""
    from hypotune.api import seconds

    try:
        return seconds(text)
    except ConfigError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a duration such as 90s, 30m or 2h") from None


def add_study_parsers(commands: Any) -> None:
    """`hypotune study run` and `hypotune study status`."""
    study = commands.add_parser("study", help="run a study file, or show how far it got")
    study_commands = study.add_subparsers(dest="study_command", required=True, parser_class=Parser)
    study_run = study_commands.add_parser("run", help="train every trial of a study (resumes)")
    study_run.add_argument("study", type=Path, help="study file (TOML), or a built-in study's name")
    study_run.add_argument("--preset", help="budget preset of the study (default: its first)")
    add_pool_flags(study_run)
    study_run.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local worker processes (default), or Ray tasks (pip install 'hypotune[ray]')",
    )
    study_run.add_argument("--address", help="Ray cluster address ('auto' for a running cluster)")
    study_run.add_argument("--cpus-per-trial", type=float, default=1.0, help="Ray: CPUs per trial")
    study_run.add_argument("--gpus-per-trial", type=float, default=0.0, help="Ray: GPUs per trial")
    default_device = Runtime.device
    study_run.add_argument(
        "--device", default=default_device, help=f"cpu, cuda or auto (default {default_device})"
    )
    study_run.add_argument("--data-dir", default="", help="directory holding the IDX files")
    study_run.add_argument(
        "--budget",
        type=duration,
        metavar="TIME",
        help="stop adding seeds after this long, e.g. 30m, 2h, 90s (trials in flight finish)",
    )
    study_run.add_argument(
        "--max-trials",
        type=positive_int,
        metavar="N",
        help="train at most N of the study's trials in this run (tuning trials aside)",
    )
    add_trainable_flag(study_run)
    add_tracking_flags(study_run)
    study_status = study_commands.add_parser("status", help="finished/running/failed/pending per hypothesis")
    study_status.add_argument("study", type=Path, help="study file (TOML), or a built-in study's name")
    study_status.add_argument("--preset", help="budget preset (default: the study's first)")
    add_trainable_flag(study_status)
    add_tracking_flags(study_status)


def build_parser(of: Trainable | None = None) -> Parser:
    """The command line; `train` and `search` get a flag per setting of `of` (default: the CNN)."""
    of = of or load()
    parser = Parser(
        prog="hypotune",
        description="Hypothesis-driven experiments on neural networks: train, track in MLflow, test, report.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    train = commands.add_parser("train", help="train one configuration and track it in MLflow")
    train.add_argument("--config", type=Path, help="TOML file with [data], [model], [train] tables")
    train.add_argument("--preset", choices=sorted(of.presets), help="a named training budget")
    train.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="any setting, e.g. --set model.depth=6"
    )
    train.add_argument("--experiment", default="train", help="MLflow experiment name")
    train.add_argument("--no-weights", action="store_true", help="do not save the trained weights")
    add_trainable_flag(train)
    add_runtime_flags(train)
    add_tracking_flags(train)
    add_setting_flags(train, of)  # last: a setting named like one of the flags above is given with --set

    data = commands.add_parser("data", help="find (or download) and check Fashion-MNIST")
    data.add_argument("--data-dir", help="directory holding the IDX files")

    add_study_parsers(commands)
    add_search_parser(commands, of)

    report = commands.add_parser("report", help="write the study's report from the tracking store")
    report.add_argument("study", type=Path, help="study file (TOML), or a built-in study's name")
    report.add_argument("--preset", help="budget preset (default: the study's first)")
    report.add_argument("--out", type=Path, help="output folder (default: report/STUDY-PRESET)")
    add_fail_on_flag(report)
    add_trainable_flag(report)
    add_tracking_flags(report)

    analyze = commands.add_parser(
        "analyze", help="verdicts and a report on runs you already have in MLflow (a runs file says how)"
    )
    analyze.add_argument("runs_file", type=Path, help="a runs file (TOML): experiment, seed, params")
    analyze.add_argument("--out", type=Path, help="output folder (default: report/NAME-runs)")
    add_fail_on_flag(analyze)
    add_tracking_flags(analyze)

    validate = commands.add_parser("validate", help="check a study or run-config file without training")
    validate.add_argument(
        "file", type=Path, help="a study file or a built-in study's name, or a run config with [model] etc."
    )
    add_trainable_flag(validate)

    commands.add_parser("studies", help="list the studies built into hypotune")

    server = commands.add_parser("server", help="run a shared MLflow tracking server (e.g. on PostgreSQL)")
    server.add_argument(
        "--backend-store-uri",
        default=os.environ.get("MLFLOW_BACKEND_STORE_URI"),
        help="database for runs, e.g. postgresql://USER@HOST:5432/mlflow (pip install 'hypotune[server]'); "
        "default: $MLFLOW_BACKEND_STORE_URI, which keeps a password out of `ps`",
    )
    server.add_argument(
        "--artifacts",
        type=Path,
        default=Path("runs") / "server-artifacts",
        help="folder the server keeps artifacts in (default ./runs/server-artifacts)",
    )
    server.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    server.add_argument("--port", type=port_number, default=5000, help="port (default 5000)")
    server.add_argument(
        "--auth",
        action="store_true",
        help="users must log in (MLflow's basic-auth app; needs pip install 'hypotune[server]')",
    )

    ui = commands.add_parser("ui", help="open the MLflow UI on the tracking store")
    ui.add_argument(
        "target",
        nargs="?",
        metavar="STUDY_OR_EXPERIMENT",
        help="a study file, a built-in study's name, a runs file or an experiment's name: print a link to "
        "its runs (default: the store's only experiment with runs, else the list of experiments)",
    )
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ui.add_argument("--port", type=port_number, default=5000, help="port (default 5000)")
    add_tracking_flags(ui)
    return parser


def resolve(args: argparse.Namespace) -> None:
    """Settings given as a preset, a file and flags, resolved once, before any command runs."""
    args.trainable = trainable_of(args)
    if args.command == "train":
        args.trainable = args.trainable or load()
        args.run_config = resolve_run_config(args)
        args.runtime = resolve_runtime(args, threads=os.cpu_count() or 1)  # one run: every core
    elif args.command == "search":
        args.search_plan = search_config(args)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        chosen = chosen_trainable(argv)
    except HypotuneError as error:
        print(f"hypotune: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    args = build_parser(chosen).parse_args(argv)
    args.trainable = chosen  # loaded once: its settings made the flags
    from hypotune.cli import commands

    try:
        resolve(args)
        return commands.dispatch(args)
    except HypotuneError as error:
        print(f"hypotune: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as error:  # the machine, not the user: a full disk, a folder gone read-only
        where = f" ({error.filename})" if error.filename else ""
        print(f"hypotune: error: {error.strerror or error}{where}", file=sys.stderr)
        return 1
    except Exception as error:
        if type(error).__module__.startswith("mlflow."):  # the store refused or failed a request
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            print(f"hypotune: error: tracking store: {first_line}", file=sys.stderr)
            return EXIT_USER_ERROR
        raise
    except KeyboardInterrupt:
        print("hypotune: interrupted", file=sys.stderr)
        return 130
