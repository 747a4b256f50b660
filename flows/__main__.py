"""Command line for the flows: start this project's Prefect server, run the pipeline or a sweep, serve them.

python -m flows server [--host ADDRESS]        # Prefect UI at http://127.0.0.1:4200
python -m flows worker --pool NAME --git-remote URL [--api-url http://HOST:4200/api]
python -m flows pipeline [-S loss.gamma=3 ...] [--name NAME]
python -m flows sweep -g "loss.gamma=[0,1,2,3]" -g "augment.mixup_alpha=[0,0.2]"
python -m flows sweep --pool NAME -g "loss.gamma=[0,1,2,3]"   # each point a flow run on a work pool
python -m flows sweep -S data.source=local -g "loss.gamma=[0,2]" --api-url http://HOST:4200/api
python -m flows serve                          # both flows as deployments, run from the UI

A server on any address but 127.0.0.1 or ::1 needs a secret, and so do its clients and
workers: FACEATTRS_PREFECT_AUTH=SECRET, or --auth-file PATH (the secret on its first line).
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from faceattrs.core.errors import InputError
from flows import server

PROJECT = Path(__file__).resolve().parents[1]
HOME = PROJECT / ".prefect"


def _use_server(port: int, api_url: str | None = None, required: bool = False, auth: str | None = None) -> None:
    """Point Prefect at ``api_url``, else PREFECT_API_URL, else this project's server on the loopback; with ``auth``.

    An API URL given (``--api-url`` or PREFECT_API_URL), or a run that must stay visible
    (``required``: a sweep on a work pool, whose workers reach only a real server), never falls
    back to a temporary server: no server answering there, or one that refuses ``auth``, is an error.
    """
    url = api_url or os.environ.get("PREFECT_API_URL")
    if url:
        _reachable(url, auth)
        os.environ.update({"PREFECT_API_URL": url, **server.client_env(auth)})
        return
    if server.healthy(server.api_url(port)):
        _reachable(server.api_url(port), auth)
        settings = server.server_env(HOME, port, auth=auth)
        os.environ.update(
            {
                k: v
                for k, v in settings.items()
                if (k.startswith("PREFECT_") and k != server.SERVER_AUTH) or k == "DO_NOT_TRACK"
            }
        )
    elif required:
        raise NoServer(
            f"no Prefect server answers on 127.0.0.1:{port}, and a work pool's workers need one: start it with "
            "`python -m flows server`, or give the one they use with --api-url http://HOST:4200/api"
        )
    else:
        print(
            f"No Prefect server answers on 127.0.0.1:{port} (start one with `python -m flows server`); "
            "running against a temporary one, so the run will not stay visible.",
            file=sys.stderr,
        )
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _reachable(url: str, auth: str | None) -> None:
    """Raise NoServer unless a Prefect server at ``url`` answers and lets in a client with ``auth``."""
    if not server.healthy(url):
        raise NoServer(f"no Prefect server answers at {url}")
    if not server.lets_in(url, auth or os.environ.get(server.CLIENT_AUTH)):
        raise NoServer(
            f"the Prefect server at {url} refuses {'this secret' if auth else 'clients without its secret'}: "
            f"set {server.AUTH_VARIABLE} or pass --auth-file PATH with the secret the server was started with"
        )


class NoServer(RuntimeError):
    """The Prefect server a command was pointed at does not answer."""


def _worker(args: argparse.Namespace) -> int:
    """Run `prefect worker start` against the flows' server; its sweep points clone only ``--git-remote``."""
    from flows.clone import REMOTE_VARIABLE, normal_url

    url = args.api_url or os.environ.get("PREFECT_API_URL") or server.api_url(args.port)
    try:
        auth = server.secret(args.auth_file)
        _reachable(url, auth)
    except (NoServer, server.NoSecret) as err:
        hint = "" if server.healthy(url) else "; start one with `python -m flows server --host ADDRESS`"
        print(f"error: {err}{hint}", file=sys.stderr)
        return 1
    remote = normal_url(args.git_remote)
    env = {
        **os.environ,
        "PREFECT_API_URL": url,
        **server.client_env(auth),
        REMOTE_VARIABLE: remote,
        "DO_NOT_TRACK": "1",
    }
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    print(f"worker of pool {args.pool!r} against {url}, cloning only {remote}; Ctrl-C stops it", flush=True)
    command = server.worker_command(args.pool, args.limit)
    # Prefect's worker stops on SIGTERM once its flow runs are told; a loaded machine can take a minute.
    return _until_signalled(
        lambda: server.background(command, True, env=env, cwd=PROJECT), lambda process: server.stop(process, grace=120)
    )


def _server(args: argparse.Namespace) -> int:
    """Run this project's Prefect server until SIGINT, SIGTERM or SIGHUP, which stop it; nothing is left serving."""
    try:
        auth = server.secret(args.auth_file)
        server.require_secret(args.host, auth)
    except server.NoSecret as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    started = (
        f"Prefect server: http://{server.advertised(args.host)}:{args.port} bound to {args.host} "
        f"(PREFECT_HOME={HOME}{'; clients and workers need its secret' if auth else ''}); Ctrl-C stops it"
    )
    start = functools.partial(server.start, HOME, args.port, host=args.host, auth=auth, tied=True)
    return _until_signalled(start, server.stop, started)


SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stopped(Exception):
    """A signal asked this command to stop."""


def _until_signalled(
    start: Callable[[], subprocess.Popen], stop: Callable[[subprocess.Popen], None], started: str = ""
) -> int:
    """Run what ``start`` starts until it ends, or until SIGINT, SIGTERM or SIGHUP, which ``stop`` it (0 then);
    print ``started`` once it runs.

    The signals count from before ``start``: one that comes while it starts interrupts it, and
    ``server.start`` stops what it started when interrupted. Once started, whatever happens, ``stop`` runs.
    """

    def stopping(signum, frame):
        raise _Stopped(signum)

    for signum in SIGNALS:
        signal.signal(signum, stopping)
    process = None
    try:
        process = start()
        if started:
            print(started, flush=True)
        return process.wait()
    except _Stopped:
        return 0
    finally:
        for signum in SIGNALS:
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C does not cut the stop short
        if process is not None:
            stop(process)


def _parser() -> argparse.ArgumentParser:
    # No abbreviations: ``--auth SECRET`` must not pass for ``--auth-file`` and print the secret in its error.
    p = argparse.ArgumentParser(
        prog="python -m flows",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument("--port", type=int, default=server.DEFAULT_PORT, help="the project's Prefect server port")
    secret = argparse.ArgumentParser(add_help=False)
    secret.add_argument(
        "--auth-file",
        type=Path,
        help=f"a file whose first line is the server's secret (default: ${server.AUTH_VARIABLE}); needed by a "
        "server on any address but 127.0.0.1 or ::1, and by its clients and workers",
    )
    sub = p.add_subparsers(dest="command", required=True)
    srv = sub.add_parser(
        "server", allow_abbrev=False, parents=[secret], help="run the Prefect server until interrupted or terminated"
    )
    srv.add_argument(
        "--host",
        default=server.LOCAL,
        help="address to bind (default 127.0.0.1; 0.0.0.0 for every address); any address but 127.0.0.1 or ::1 "
        f"needs a secret (${server.AUTH_VARIABLE} or --auth-file), which clients and workers give too",
    )
    wrk = sub.add_parser(
        "worker",
        allow_abbrev=False,
        parents=[secret],
        help="run a worker of a process work pool against this project's server",
    )
    wrk.add_argument("--pool", required=True, help="work pool name (a process pool, created if missing)")
    wrk.add_argument(
        "--git-remote",
        required=True,
        metavar="URL",
        help="the project's git remote (URL or path): the only one this worker's sweep points clone",
    )
    wrk.add_argument("--api-url", help="the server's API (default: PREFECT_API_URL, else this project's server)")
    wrk.add_argument("--limit", type=int, default=None, help="flow runs at a time on this worker")
    wrk.add_argument(
        "--threads",
        type=int,
        help="CPU threads for each flow run's stages (OMP_NUM_THREADS); with several workers on one machine, "
        "its cores divided by the workers, or they slow each other down",
    )
    api = argparse.ArgumentParser(add_help=False, parents=[secret])
    api.add_argument(
        "--api-url",
        help="the Prefect server's API, e.g. http://HOST:4200/api (default: PREFECT_API_URL, else this "
        "project's server on 127.0.0.1); never falls back to a temporary server",
    )
    run = sub.add_parser(
        "pipeline", allow_abbrev=False, parents=[api], help="reproduce the pipeline, or run it as an experiment"
    )
    run.add_argument("-S", "--set-param", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--name", help="experiment name (implies `dvc exp run`)")
    run.add_argument("--repo", default=str(PROJECT))
    grid = sub.add_parser(
        "sweep",
        allow_abbrev=False,
        parents=[api],
        help="run a grid of experiments on DVC's queue or a Prefect work pool",
    )
    grid.add_argument("-g", "--grid", action="append", required=True, metavar="KEY=[V1,V2,...]")
    grid.add_argument(
        "-S",
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a params override applied to every point (repeatable), e.g. -S data.source=local",
    )
    grid.add_argument("--prefix", help="experiment name prefix (default: the start time)")
    grid.add_argument("-j", "--jobs", type=int, default=1, help="experiments DVC's queue runs at a time")
    grid.add_argument(
        "--pool",
        help="run each point as a flow run on this Prefect work pool, in a clone of the git remote at HEAD "
        "(push the commit and `dvc push` its outputs first)",
    )
    grid.add_argument("--git-remote", default="origin", help="the git remote the pool's workers clone (origin)")
    grid.add_argument("--repo", default=str(PROJECT))
    sub.add_parser(
        "serve", allow_abbrev=False, parents=[secret], help="serve both flows as deployments of this process"
    )
    return p


def _check_overrides(args: argparse.Namespace) -> None:
    """Refuse, before any server or DVC sees them, overrides that are not one params key each (BadOverride)."""
    from faceattrs.core.overrides import check_all
    from flows.grid import checked

    if args.command == "pipeline":
        check_all(args.overrides)
    elif args.command == "sweep":
        checked(args.grid, args.sets)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "server":
        return _server(args)
    if args.command == "worker":
        return _worker(args)
    try:
        _check_overrides(args)
        auth = server.secret(args.auth_file)
        _use_server(args.port, getattr(args, "api_url", None), required=bool(getattr(args, "pool", None)), auth=auth)
    except (InputError, ValueError, NoServer) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    from flows.pipeline import StageFailed, pipeline  # Prefect reads its settings on import
    from flows.sweep import sweep

    if args.command == "serve":
        from prefect import serve

        serve(
            pipeline.to_deployment(name="faceattrs-pipeline", parameters={"repo": str(PROJECT)}),
            sweep.to_deployment(
                name="faceattrs-sweep", parameters={"repo": str(PROJECT), "grid": ["loss.gamma=[0,1,2,3]"]}
            ),
        )
        return 0
    try:
        if args.command == "pipeline":
            statuses = pipeline(repo=args.repo, overrides=args.overrides, experiment=args.name)
            print("\n".join(f"{stage}: {status}" for stage, status in statuses.items()))
        else:
            table = sweep(
                grid=args.grid,
                fixed=args.sets,
                repo=args.repo,
                prefix=args.prefix,
                jobs=args.jobs,
                work_pool=args.pool,
                git_remote=args.git_remote,
            )
            for row in table:
                print(row)
    except (StageFailed, InputError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
