"""This project's Prefect server and workers: its database in a project-local PREFECT_HOME, analytics off.

The server binds 127.0.0.1 unless told another address. A Prefect OSS server has no
authentication: bind it to a private network's address, or put it behind a proxy
that authenticates, never on a public one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_PORT = 4200


LOCAL = "127.0.0.1"
ANY = ("0.0.0.0", "::")


def api_url(port: int = DEFAULT_PORT, host: str = LOCAL) -> str:
    return f"http://{host}:{port}/api"


def advertised(host: str) -> str:
    """The address others reach a server bound to ``host`` at: this machine's name for a wildcard bind."""
    return socket.getfqdn() if host in ANY else host


def server_env(home: Path, port: int = DEFAULT_PORT, host: str = LOCAL) -> dict[str, str]:
    """Settings for the server and for every client of it on this machine."""
    return {
        **os.environ,
        "PREFECT_HOME": str(home),
        # Clients on this machine use the loopback when the server listens on every address.
        "PREFECT_API_URL": api_url(port, LOCAL if host in ANY else host),
        # The UI runs in the browser, which may be on another machine.
        "PREFECT_UI_API_URL": api_url(port, advertised(host)),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
    }


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def prefect_command() -> str:
    """The `prefect` executable installed beside this Python."""
    found = shutil.which("prefect", path=str(Path(sys.executable).parent)) or shutil.which("prefect")
    if not found:
        raise RuntimeError("the prefect command is not installed (pip install prefect)")
    return found


def start(home: Path, port: int = DEFAULT_PORT, log: Path | None = None, host: str = LOCAL) -> subprocess.Popen:
    """Start `prefect server start` in the background; returns once it answers, or raises with its log."""
    home.mkdir(parents=True, exist_ok=True)
    log = log or home / "server.log"
    env = server_env(home, port, host)
    with open(log, "w") as handle:  # the server keeps its own copy of the handle
        process = subprocess.Popen(
            [prefect_command(), "server", "start", "--host", host, "--port", str(port)],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.time() + 180
    while time.time() < deadline:
        if healthy(env["PREFECT_API_URL"]):
            return process
        if process.poll() is not None:
            break
        time.sleep(0.5)
    stop(process)
    raise RuntimeError(f"the Prefect server on {host}:{port} did not start; its log {log}:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def worker_command(pool: str, limit: int | None = None) -> list[str]:
    """`prefect worker start` for a process work pool (created if missing), running flow runs here."""
    command = [prefect_command(), "worker", "start", "--pool", pool, "--type", "process"]
    return command + (["--limit", str(limit)] if limit else [])
