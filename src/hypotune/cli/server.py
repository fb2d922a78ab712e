"""Supervising the MLflow servers the command line starts (`hypotune ui`, `hypotune server`):
their command and environment, the port check, waiting until they answer, and stopping every
process they start, on Ctrl-C, SIGTERM or SIGHUP."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypotune.cli.output import console
from hypotune.errors import HypotuneError

UI_STARTUP_SECONDS = 120.0  # a cold first start on a busy 2-core machine takes under a minute


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


def tracking_server(
    uri: str, artifacts: Path, host: str, port: int, auth: bool
) -> tuple[list[str], dict[str, str]]:
    """MLflow's tracking server with runs in the database at `uri` and artifacts under
    `artifacts`: its command and environment. The database URI (and its password) travels in
    the environment, never on a command line that `ps` shows to every user of the machine."""
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--artifacts-destination", str(artifacts.resolve()), "--serve-artifacts",
        "--host", host, "--port", str(port),
    ] + (["--app-name", "basic-auth"] if auth else [])  # fmt: skip
    environment = dict(os.environ) | {"MLFLOW_BACKEND_STORE_URI": uri}
    if auth and "MLFLOW_FLASK_SERVER_SECRET_KEY" not in environment:
        environment["MLFLOW_FLASK_SERVER_SECRET_KEY"] = server_secret()  # the login form's CSRF key
    return command, environment


def server_secret() -> str:
    """A secret for MLflow's login forms, made once and kept readable by this user only, so that
    restarts (and several servers of one user) agree on it."""
    import secrets

    path = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "hypotune" / "server-secret"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip()
