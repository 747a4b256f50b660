"""This project's Prefect server: on 127.0.0.1, its database in a project-local PREFECT_HOME, analytics off."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_PORT = 4200


def api_url(port: int = DEFAULT_PORT) -> str:
    return f"http://127.0.0.1:{port}/api"


def server_env(home: Path, port: int = DEFAULT_PORT) -> dict[str, str]:
    """Settings for the server and for every client of it."""
    return {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url(port),
        "PREFECT_UI_API_URL": api_url(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
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


def start(home: Path, port: int = DEFAULT_PORT, log: Path | None = None) -> subprocess.Popen:
    """Start `prefect server start` in the background; returns once it answers, or raises with its log."""
    home.mkdir(parents=True, exist_ok=True)
    log = log or home / "server.log"
    with open(log, "w") as handle:  # the server keeps its own copy of the handle
        process = subprocess.Popen(
            [prefect_command(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=server_env(home, port),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.time() + 180
    while time.time() < deadline:
        if healthy(api_url(port)):
            return process
        if process.poll() is not None:
            break
        time.sleep(0.5)
    stop(process)
    raise RuntimeError(
        f"the Prefect server on 127.0.0.1:{port} did not start; its log {log}:\n{log.read_text()[-3000:]}"
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
