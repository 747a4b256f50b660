"""This project's Prefect server and workers: its database in a project-local PREFECT_HOME, analytics off.

The server binds 127.0.0.1 unless told another address. Whoever reaches a Prefect API
can run commands on its workers, so a server on any other address needs a secret
(``secret``: $FACEATTRS_PREFECT_AUTH or a file, never the command line): the server
checks it as HTTP basic authentication (Prefect's PREFECT_SERVER_API_AUTH_STRING) and
its clients and workers send it (PREFECT_API_AUTH_STRING). Health checks stay open.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
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
# The only addresses no other machine reaches; 127.0.0.2 and the rest of 127.0.0.0/8 count as a network.
LOOPBACK = (LOCAL, "::1")
# Where the secret comes from when no --auth-file is given.
AUTH_VARIABLE = "FACEATTRS_PREFECT_AUTH"
# Prefect's own settings: what the server checks, and what its clients send.
SERVER_AUTH = "PREFECT_SERVER_API_AUTH_STRING"
CLIENT_AUTH = "PREFECT_API_AUTH_STRING"


class NoSecret(ValueError):
    """A server that other machines reach, started without a secret; or a secret file that cannot be read."""


def secret(auth_file: Path | None = None) -> str | None:
    """The shared secret: ``auth_file``'s first line if given, else $FACEATTRS_PREFECT_AUTH; None when neither is."""
    if auth_file is not None:
        try:
            lines = Path(auth_file).read_text().splitlines()
        except OSError as err:
            raise NoSecret(f"--auth-file {auth_file}: {err.strerror}") from None
        if not lines or not lines[0].strip():
            raise NoSecret(f"--auth-file {auth_file}: the file is empty; write the secret on its first line")
        return lines[0].strip()
    return os.environ.get(AUTH_VARIABLE) or None


def require_secret(host: str, auth: str | None) -> None:
    """Raise NoSecret when a server on ``host`` would be reachable from other machines without a secret."""
    if auth is None and host not in LOOPBACK:
        raise NoSecret(
            f"a server on {host} is reachable from other machines, and whoever reaches it can run commands on its "
            f"workers: set {AUTH_VARIABLE} or pass --auth-file PATH (a secret its clients and workers give too)"
        )


def client_env(auth: str | None) -> dict[str, str]:
    """The settings a Prefect client needs to be let in with ``auth`` (none without one)."""
    return {CLIENT_AUTH: auth} if auth else {}


def api_url(port: int = DEFAULT_PORT, host: str = LOCAL) -> str:
    return f"http://{host}:{port}/api"


def advertised(host: str) -> str:
    """The address others reach a server bound to ``host`` at: this machine's name for a wildcard bind."""
    return socket.getfqdn() if host in ANY else host


def server_env(home: Path, port: int = DEFAULT_PORT, host: str = LOCAL, auth: str | None = None) -> dict[str, str]:
    """Settings for the server and for every client of it on this machine; ``auth`` its secret, if it has one."""
    inherited = {k: v for k, v in os.environ.items() if k not in (SERVER_AUTH, CLIENT_AUTH)}
    return {
        **inherited,
        **({SERVER_AUTH: auth, CLIENT_AUTH: auth} if auth else {}),
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
    """Whether a Prefect server answers at ``url`` (its health check needs no secret)."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def lets_in(url: str, auth: str | None, timeout: float = 10.0) -> bool:
    """False when the server at ``url`` refuses an API call made with ``auth`` (it wants another secret).

    Anything else (an answer, an error of another kind, no answer) is not this check's to report.
    """
    request = urllib.request.Request(f"{url}/admin/version")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except urllib.error.HTTPError as err:
        return err.code not in (401, 403)
    except (urllib.error.URLError, OSError):
        return True


def prefect_command() -> str:
    """The `prefect` executable installed beside this Python."""
    found = shutil.which("prefect", path=str(Path(sys.executable).parent)) or shutil.which("prefect")
    if not found:
        raise RuntimeError("the prefect command is not installed (pip install prefect)")
    return found


def start(
    home: Path,
    port: int = DEFAULT_PORT,
    log: Path | None = None,
    host: str = LOCAL,
    auth: str | None = None,
    tied: bool = False,
) -> subprocess.Popen:
    """Start `prefect server start` in the background; returns once it answers, or raises with its log.

    Refuses (NoSecret) a ``host`` other machines reach unless ``auth`` is given. The server
    runs in a process group of its own, which ``stop`` ends whole; ``tied``: see ``background``.
    """
    require_secret(host, auth)
    home.mkdir(parents=True, exist_ok=True)
    log = log or home / "server.log"
    env = server_env(home, port, host, auth)
    with open(log, "w") as handle:  # the server keeps its own copy of the handle
        command = [prefect_command(), "server", "start", "--host", host, "--port", str(port)]
        process = background(command, tied, env=env, stdout=handle, stderr=subprocess.STDOUT)
    deadline, started = time.time() + 180, False
    try:
        while time.time() < deadline:
            if healthy(env["PREFECT_API_URL"]):
                started = True
                return process
            if process.poll() is not None:
                break
            time.sleep(0.5)
    finally:  # not started in time, or interrupted while it starts: no server left behind
        if not started:
            stop(process)
    raise RuntimeError(f"the Prefect server on {host}:{port} did not start; its log {log}:\n{log.read_text()[-3000:]}")


def background(command: list[str], tied: bool = False, **popen) -> subprocess.Popen:
    """``command`` started in a process group of its own (so a terminal's Ctrl-C reaches only its parent, which
    stops it with ``stop``); ``tied``: the kernel sends it SIGTERM when the thread that started it ends (Linux;
    call it from a process with no other threads)."""
    tie = _die_with_parent if tied and sys.platform == "linux" else None
    return subprocess.Popen(command, start_new_session=True, preexec_fn=tie, **popen)


def _die_with_parent() -> None:
    """In the child, before it runs its command: SIGTERM when the parent dies (prctl PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


def stop(process: subprocess.Popen, grace: float = 30) -> None:
    """Stop a process ``start`` or ``background`` started, and whatever it started: its whole process group,
    SIGTERM, then SIGKILL after ``grace`` seconds."""
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # ended between the poll and the signal
        os.killpg(process.pid, signum)


def worker_command(pool: str, limit: int | None = None) -> list[str]:
    """`prefect worker start` for a process work pool (created if missing), running flow runs here."""
    command = [prefect_command(), "worker", "start", "--pool", pool, "--type", "process"]
    return command + (["--limit", str(limit)] if limit else [])
