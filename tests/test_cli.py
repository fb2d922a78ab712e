import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from hypotune.cli.parser import main

from .helpers import free_port, stop_and_wait_for_session, stop_process_group, wait_for_http

TINY_STUDY = Path(__file__).parent / "studies" / "tiny.toml"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hypotune.cli", *args], capture_output=True, text=True)


def test_train_tracks_a_run(workdir, capsys):
    code = main(["train", "--trainable", "tests.toy:TOY", "--x", "2", "--seed", "3", "--experiment", "cli"])
    assert code == 0
    assert "test_loss" in capsys.readouterr().out
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'runs' / 'mlflow.db'}")
    row = mlflow.search_runs(experiment_names=["cli"]).iloc[0]
    assert (row["params.seed"], row["params.x"], row["params.epochs"]) == ("3", "2.0", "3")


def test_a_first_train_says_where_its_time_goes_and_the_try_preset_is_cheap(capsys):
    """The defaults evaluate 24,000 images for 19,200 trained: the run says so and names the
    preset that answers in seconds; that preset, like any run that trains more than it judges,
    says nothing."""
    from hypotune.cli.parser import build_parser, resolve_run_config
    from hypotune.fashion import TRAINABLE

    default = resolve_run_config(build_parser().parse_args(["train"]))
    about = TRAINABLE.describe(default.settings)
    assert "evaluates 24,000 (14,000 validation images over 3 epochs, 10,000 test images" in about
    assert "the `try` preset answers in seconds" in about
    tried = resolve_run_config(build_parser().parse_args(["train", "--preset", "try"]))
    assert TRAINABLE.describe(tried.settings).endswith(" parameters")
    images = (
        tried.settings.train.epochs * tried.settings.train.steps_per_epoch * tried.settings.train.batch_size
    )
    assert (
        tried.settings.data.val_size * tried.settings.train.epochs + tried.settings.data.test_size <= images
    )


def test_layering_defaults_file_flags(workdir):
    from hypotune.cli.parser import build_parser, resolve_run_config

    (workdir / "c.toml").write_text("[model]\ndepth = 4\nwidth = 16\n[train]\nlr = 0.01\n")
    args = build_parser().parse_args(
        [
            "train",
            "--preset",
            "full",
            "--config",
            "c.toml",
            "--width",
            "24",
            "--set",
            "train.momentum=0.5",
            "--set",
            "dropout=0.1",
        ]
    )
    config = resolve_run_config(args)
    assert (config.model.depth, config.model.width, config.train.lr) == (4, 24, 0.01)
    assert (config.train.momentum, config.model.dropout, config.model.kernel_size) == (0.5, 0.1, 3)
    assert config.train.steps_per_epoch == 0  # from the preset


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--depht", "3"], "unrecognized arguments: --depht 3"),
        (["train", "--depth", "three"], "model.depth must be an integer, got 'three'"),
        (["train", "--norm", "weird"], "model.norm is 'weird'; valid: none, batch"),
        (["train", "--set", "model.dpeth=3"], "unknown setting 'model.dpeth' (did you mean 'model.depth'?)"),
        (["train", "--set", "depth"], "--set expects KEY=VALUE"),
        (["train", "--depth", "12", "--pools", "4"], "at most 3 poolings of size 3 fit 28x28"),
        (["train", "--config", "missing.toml"], "missing.toml: no such file"),
        (["train", "--data-dir", "/nonexistent"], "IDX files not found; searched: /nonexistent"),
        (["train", "--threads", "0"], "threads must be between 1 and 256"),
        (["train", "--seed", "18446744073709551616"], "seed must be between 0 and 4294967295"),
        (["train", "--seed", "-1"], "seed must be between 0 and 4294967295"),
        (["train", "--lr", "inf"], "train.lr must be a finite number"),
        (["train", "--set", "train.weight_decay=nan"], "train.weight_decay must be a finite number"),
        (
            ["study", "status", str(TINY_STUDY), "--tracking-uri", "http://127.0.0.1:9"],
            "cannot reach the tracking server http://127.0.0.1:9",
        ),
        (["bogus"], "invalid choice: 'bogus'"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(tmp_path, args, message):
    result = subprocess.run(
        [sys.executable, "-m", "hypotune.cli", *args], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()  # nothing is created before the input is checked


def test_help_explains_every_setting():
    result = run_cli("train", "--help")
    assert result.returncode == 0
    for flag in ("--depth", "--steps-per-epoch", "--block-order", "--label-smoothing", "--val-size"):
        assert flag in result.stdout
    assert "order of operations inside a block" in result.stdout


def test_data_command_reports_the_files(synthetic_dir, capsys):
    assert main(["data", "--data-dir", str(synthetic_dir)]) == 0
    assert "1,200 training and 300 test images" in capsys.readouterr().out


def test_study_status_command(workdir, capsys):
    assert main(["study", "status", str(TINY_STUDY)]) == 0
    printed = capsys.readouterr().out
    assert "dropout_x_norm" in printed and "pending" in printed


def test_ui_serves_the_store_on_loopback(workdir):
    port = free_port()
    # its own process group: the MLflow UI starts helper processes that must end with it
    server = subprocess.Popen([sys.executable, "-m", "hypotune.cli", "ui", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", server, seconds=90)
    except BaseException:
        stop_process_group(server)
        raise
    # A service manager's SIGTERM to hypotune alone ends MLflow's whole tree (server, uvicorn,
    # job consumers), which would otherwise live on re-parented to init.
    stop_and_wait_for_session(server)
    printed = server.stderr.read()
    assert f"MLflow UI: http://127.0.0.1:{port}/#/experiments (Ctrl-C to stop)" in printed  # no runs yet
    assert "Warning" not in printed and "GET /health" not in printed and "INFO" not in printed


def test_ui_starts_one_quiet_worker(monkeypatch):
    """MLflow's default of 4 uvicorn workers and INFO logs made the first page slow and the console noisy."""
    from hypotune.cli.server import ui_command, ui_environment

    command = ui_command("sqlite:///runs/mlflow.db", "127.0.0.1", 5001)
    assert command[:4] == [sys.executable, "-m", "mlflow", "ui"]
    options = dict(zip(command[4::2], command[5::2], strict=True))
    assert options == {
        "--backend-store-uri": "sqlite:///runs/mlflow.db", "--registry-store-uri": "sqlite:///runs/mlflow.db",
        "--host": "127.0.0.1", "--port": "5001", "--workers": "1",
        "--uvicorn-opts": "--log-level warning --no-access-log",
    }  # fmt: skip
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)
    environment = ui_environment("sqlite:///runs/mlflow.db")
    assert (environment["PYTHONWARNINGS"], environment["MLFLOW_LOGGING_LEVEL"]) == ("ignore", "WARNING")
    assert environment["MLFLOW_TRACKING_URI"] == "sqlite:///runs/mlflow.db"
    monkeypatch.setenv("PYTHONWARNINGS", "default")  # a user who wants the warnings gets them
    assert ui_environment("sqlite:///runs/mlflow.db")["PYTHONWARNINGS"] == "default"


def test_ui_links_to_the_experiment_a_study_names(workdir):
    from mlflow.tracking import MlflowClient

    from hypotune.api import ui_experiment
    from hypotune.cli.server import ui_link
    from hypotune.errors import HypotuneError
    from hypotune.store.tracker import Tracker

    uri = Tracker().uri
    client = MlflowClient(tracking_uri=uri)
    assert (
        ui_link("127.0.0.1", 5000, ui_experiment(None, tracking_uri=uri))
        == "http://127.0.0.1:5000/#/experiments"
    )
    tiny = client.create_experiment("tiny")
    client.create_run(tiny)
    client.create_experiment("empty")  # no runs: not the one to open
    assert ui_experiment(None, tracking_uri=uri) == tiny  # the store's only experiment with runs
    link = ui_link("127.0.0.1", 5000, ui_experiment(str(TINY_STUDY), tracking_uri=uri))  # name = "tiny"
    assert link == f"http://127.0.0.1:5000/#/experiments/{tiny}/runs"
    assert ui_experiment("empty", tracking_uri=uri) == client.get_experiment_by_name("empty").experiment_id
    client.create_run(client.get_experiment_by_name("empty").experiment_id)
    assert ui_experiment(None, tracking_uri=uri) is None  # two with runs: the list
    with pytest.raises(HypotuneError) as unknown:
        ui_experiment("missing", tracking_uri=uri)
    assert "no experiment named 'missing'" in str(unknown.value) and "tiny" in str(unknown.value)
    with pytest.raises(HypotuneError, match="missing.toml: no such file"):
        ui_experiment("missing.toml", tracking_uri=uri)


@pytest.mark.parametrize(
    ("host", "base"),
    [("127.0.0.1", "http://127.0.0.1:5000/"), ("0.0.0.0", "http://127.0.0.1:5000/"),
     ("::", "http://[::1]:5000/"), ("myhost", "http://myhost:5000/")],
)  # fmt: skip
def test_ui_link_is_one_a_browser_opens(host, base):
    from hypotune.cli.server import ui_link

    assert ui_link(host, 5000, "7") == f"{base}#/experiments/7/runs"


def test_a_server_off_loopback_is_announced_loudly(capsys):
    from hypotune.cli.server import warn_if_exposed

    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        warn_if_exposed(host, auth=False)
    assert capsys.readouterr().err == ""
    warn_if_exposed("0.0.0.0", auth=False)
    assert "WARNING: listening on 0.0.0.0 without authentication" in capsys.readouterr().err
    warn_if_exposed("192.168.1.5", auth=True)
    assert "unencrypted" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("45", 45), ("0.5h", 1800)]
)
def test_budget_durations(text, seconds):
    from hypotune.cli.parser import duration

    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["0m", "-5m", "x", "10d", "", "inf", "nan"])
def test_a_bad_budget_is_one_line(text, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["study", "run", str(TINY_STUDY), "--budget", text])
    error = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(error) == 1 and "argument --budget" in error[0]


@pytest.mark.parametrize("text", ["0", "-3", "x", "2.5", ""])
def test_a_bad_trial_cap_is_one_line(text, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["study", "run", str(TINY_STUDY), "--max-trials", text])
    error = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(error) == 1 and "argument --max-trials" in error[0]


def test_server_with_auth_asks_for_a_login(tmp_path):
    import os
    import urllib.error
    import urllib.request

    pytest.importorskip(
        "flask_wtf", reason="MLflow's auth extra is not installed (pip install 'hypotune[server]')"
    )
    port = free_port()
    environment = os.environ | {
        "MLFLOW_AUTH_ADMIN_PASSWORD": "first-Admin-pass1",
        "XDG_CONFIG_HOME": str(tmp_path),
    }
    command = [sys.executable, "-m", "hypotune.cli", "server", "--backend-store-uri",
               f"sqlite:///{tmp_path / 'mlflow.db'}", "--artifacts", str(tmp_path / "artifacts"), "--port",
               str(port), "--auth"]  # fmt: skip
    server = subprocess.Popen(command, cwd=tmp_path, env=environment, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", server, seconds=90)
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=1"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=30)
        assert refused.value.code == 401
        request = urllib.request.Request(url)
        request.add_header(
            "Authorization", "Basic " + __import__("base64").b64encode(b"admin:first-Admin-pass1").decode()
        )
        assert urllib.request.urlopen(request, timeout=30).status == 200
        assert (tmp_path / "hypotune" / "server-secret").stat().st_mode & 0o077 == 0  # this user's only
    except BaseException:
        stop_process_group(server)
        raise
    stop_and_wait_for_session(server)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--momentun", "0.9"], "hypotune train: error: unrecognized arguments: --momentun 0.9; "
         "did you mean --momentum? (see --help)"),
        (["train", "--momentun=0.9"], "unrecognized arguments: --momentun=0.9; did you mean --momentum?"),
        (["train", "--train.momentum", "0.9"], "did you mean --momentum?"),
        (["train", "--steps_per_epoch", "3"], "did you mean --steps-per-epoch?"),
        (["train", "--depht", "3", "--momentun", "0.9"], "unrecognized arguments: --depht 3 --momentun 0.9; "
         "did you mean --depth for --depht, --momentum for --momentun?"),
        (["study", "run", str(TINY_STUDY), "--wrokers", "2"], "hypotune study run: error: unrecognized "
         "arguments: --wrokers 2; did you mean --workers?"),
        (["report", str(TINY_STUDY), "--fial-on", "refuted"], "did you mean --fail-on?"),
    ],
)  # fmt: skip
def test_a_mistyped_flag_suggests_the_closest(args, message, capsys):
    """argparse alone says only 'unrecognized arguments'; the subcommand's own flags know the fix."""
    with pytest.raises(SystemExit) as stop:
        main(args)
    error = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(error) == 1 and message in error[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["train", "--qqqqqqqq", "1"],
            "hypotune train: error: unrecognized arguments: --qqqqqqqq 1 (see --help)",
        ),
        (["train", "stray"], "hypotune train: error: unrecognized arguments: stray (see --help)"),
    ],
)
def test_an_unknown_flag_without_a_close_one_says_so_plainly(args, message, capsys):
    """No guess is better than a wrong one, and a stray word is not a flag to correct."""
    with pytest.raises(SystemExit) as stop:
        main(args)
    error = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and error == [message]


def test_a_growing_trial_total_says_why(capsys):
    """Seeds added in rounds grow the plan mid-run: the line that shows the new total names them."""
    from types import SimpleNamespace

    from hypotune.cli.output import TrialLines, seeds_added
    from hypotune.run.events import Finished, Started
    from hypotune.run.runner import StudySummary
    from hypotune.trainables.protocol import Result
    from tests.toy import TOY

    assert seeds_added({"a": 3, "b": 3}, {"a": 3, "b": 3}) == ""
    assert seeds_added({"a": 3, "b": 3}, {"a": 5, "b": 3}) == "seeds added (verdicts still open): a 3->5"
    summary = StudySummary(planned=6, seeds={"start": 3})
    lines = TrialLines(TOY, 6)
    lines.on_start(summary)
    trial = SimpleNamespace(tuning=False, name="start/near seed 0")
    lines.on_event(Started("k0", 0), trial)
    summary.planned, summary.seeds = 10, {"start": 5}  # a round of two more seeds per arm
    lines.on_event(Finished("k0", Result({"val_loss": 0.25})), trial)
    printed = capsys.readouterr().err
    assert "seeds added (verdicts still open): start 3->5" in printed
    assert "trial 1/10 start/near seed 0: val_loss 0.25" in printed  # the toy's own metric


def test_a_round_under_a_budget_says_what_it_is_expected_to_decide_and_a_given_up_one_says_why(capsys):
    from types import SimpleNamespace

    from hypotune.cli.output import TrialLines
    from hypotune.run.events import Finished, Started
    from hypotune.run.runner import StudySummary
    from hypotune.trainables.protocol import Result
    from tests.toy import TOY

    summary = StudySummary(
        planned=6, seeds={"start": 3, "far": 3}, given_up={"far": "would need about 40 seeds"}
    )
    lines = TrialLines(TOY, 6)
    lines.on_start(summary)
    assert "no more seeds (statistics.futility): far would need about 40 seeds" in capsys.readouterr().err
    trial = SimpleNamespace(tuning=False, name="start/near seed 0")
    lines.on_event(Started("k0", 0), trial)
    summary.planned, summary.seeds = 10, {"start": 5, "far": 3}
    summary.why = {
        "start": "5 seeds: the look is expected to decide 0.62 open predictions, for about 90 s of training"
    }
    lines.on_event(Finished("k0", Result({"val_loss": 0.25})), trial)
    printed = capsys.readouterr().err
    assert (
        "seeds added (verdicts still open): start 3->5 (the look is expected to decide 0.62 open "
        "predictions, for about 90 s of training)"
    ) in printed
    assert "no more seeds" not in printed  # said once


@pytest.mark.parametrize("port", ["99999", "0", "http"])
def test_a_port_out_of_range_is_one_line(port, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["ui", "--port", port])
    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert "argument --port:" in error and "Traceback" not in error and len(error.strip().splitlines()) == 1


def test_the_command_line_and_the_api_share_their_defaults():
    """One source per default: a study run from a shell and from a notebook runs the same way."""
    import inspect

    from hypotune import api
    from hypotune.cli.parser import build_parser, resolve_runtime
    from hypotune.config import Runtime

    parser = build_parser()
    study_run = parser.parse_args(["study", "run", str(TINY_STUDY)])
    train = resolve_runtime(parser.parse_args(["train"]))
    for function in (api.run_study, api.train, api.executor_for):
        assert inspect.signature(function).parameters["device"].default == Runtime().device
    assert study_run.device == train.device == Runtime().device == "cpu"
    assert study_run.threads == inspect.signature(api.run_study).parameters["threads"].default


def test_a_capped_run_says_its_cap_up_front_and_which_budget_stopped_it(workdir, capsys):
    from .helpers import STUDIES

    code = main(["study", "run", str(STUDIES / "toy.toml"), "--workers", "1", "--max-trials", "2"])
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 0, text
    start = next(line for line in text.splitlines() if line.startswith("study 'toy'"))
    assert start.endswith("; at most 2 trials this run (--max-trials)")
    assert "trial cap" in text and "Traceback" not in text
