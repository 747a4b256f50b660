"""Command line for the flows: start this project's Prefect server, run the pipeline or a sweep, serve them.

python -m flows server [--host ADDRESS]        # Prefect UI at http://127.0.0.1:4200
python -m flows worker --pool NAME [--api-url http://HOST:4200/api]
python -m flows pipeline [-S loss.gamma=3 ...] [--name NAME]
python -m flows sweep -g "loss.gamma=[0,1,2,3]" -g "augment.mixup_alpha=[0,0.2]"
python -m flows sweep --pool NAME -g "loss.gamma=[0,1,2,3]"   # each point a flow run on a work pool
python -m flows sweep -S data.source=local -g "loss.gamma=[0,2]" --api-url http://HOST:4200/api
python -m flows serve                          # both flows as deployments, run from the UI
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from flows import server

PROJECT = Path(__file__).resolve().parents[1]
HOME = PROJECT / ".prefect"


def _use_server(port: int, api_url: str | None = None, required: bool = False) -> None:
    """Point Prefect at ``api_url``, else PREFECT_API_URL, else this project's server on the loopback.

    An API URL given (``--api-url`` or PREFECT_API_URL), or a run that must stay visible
    (``required``: a sweep on a work pool, whose workers reach only a real server), never falls
    back to a temporary server: no server answering there is an error.
    """
    url = api_url or os.environ.get("PREFECT_API_URL")
    if url:
        if not server.healthy(url):
            raise NoServer(f"no Prefect server answers at {url}")
        os.environ["PREFECT_API_URL"] = url
        return
    if server.healthy(server.api_url(port)):
        os.environ.update(
            {k: v for k, v in server.server_env(HOME, port).items() if k.startswith("PREFECT_") or k == "DO_NOT_TRACK"}
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


class NoServer(RuntimeError):
    """The Prefect server a command was pointed at does not answer."""


def _worker(args: argparse.Namespace) -> int:
    """Run `prefect worker start` with PREFECT_API_URL pointing at the server the flows use."""
    import subprocess

    url = args.api_url or os.environ.get("PREFECT_API_URL") or server.api_url(args.port)
    if not server.healthy(url):
        print(
            f"error: no Prefect server answers at {url}; start one with `python -m flows server --host ADDRESS` "
            "and pass --api-url http://ADDRESS:4200/api",
            file=sys.stderr,
        )
        return 1
    env = {**os.environ, "PREFECT_API_URL": url, "DO_NOT_TRACK": "1"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    print(f"worker of pool {args.pool!r} against {url}; Ctrl-C stops it", flush=True)
    try:
        return subprocess.call(server.worker_command(args.pool, args.limit), env=env, cwd=PROJECT)
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m flows", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--port", type=int, default=server.DEFAULT_PORT, help="the project's Prefect server port")
    sub = p.add_subparsers(dest="command", required=True)
    srv = sub.add_parser("server", help="run the Prefect server until interrupted")
    srv.add_argument(
        "--host",
        default=server.LOCAL,
        help="address to bind (default 127.0.0.1; 0.0.0.0 for every address). The server has no "
        "authentication: only on a private network or behind an authenticating proxy",
    )
    wrk = sub.add_parser("worker", help="run a worker of a process work pool against this project's server")
    wrk.add_argument("--pool", required=True, help="work pool name (a process pool, created if missing)")
    wrk.add_argument("--api-url", help="the server's API (default: PREFECT_API_URL, else this project's server)")
    wrk.add_argument("--limit", type=int, default=None, help="flow runs at a time on this worker")
    wrk.add_argument(
        "--threads",
        type=int,
        help="CPU threads for each flow run's stages (OMP_NUM_THREADS); with several workers on one machine, "
        "its cores divided by the workers, or they slow each other down",
    )
    api = argparse.ArgumentParser(add_help=False)
    api.add_argument(
        "--api-url",
        help="the Prefect server's API, e.g. http://HOST:4200/api (default: PREFECT_API_URL, else this "
        "project's server on 127.0.0.1); never falls back to a temporary server",
    )
    run = sub.add_parser("pipeline", parents=[api], help="reproduce the pipeline, or run it as an experiment")
    run.add_argument("-S", "--set-param", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--name", help="experiment name (implies `dvc exp run`)")
    run.add_argument("--repo", default=str(PROJECT))
    grid = sub.add_parser(
        "sweep", parents=[api], help="run a grid of experiments on DVC's queue or a Prefect work pool"
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
    sub.add_parser("serve", help="serve both flows as deployments of this process")
    args = p.parse_args(argv)

    if args.command == "server":
        process = server.start(HOME, args.port, host=args.host)
        print(
            f"Prefect server: http://{server.advertised(args.host)}:{args.port} bound to {args.host} "
            f"(PREFECT_HOME={HOME}); Ctrl-C stops it"
        )
        try:
            process.wait()
        except KeyboardInterrupt:
            server.stop(process)
        return 0

    if args.command == "worker":
        return _worker(args)

    try:
        _use_server(args.port, getattr(args, "api_url", None), required=bool(getattr(args, "pool", None)))
    except NoServer as err:
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
    except (StageFailed, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
