"""Command line for the flows: start this project's Prefect server, run the pipeline or a sweep, serve them.

python -m flows server                         # Prefect UI at http://127.0.0.1:4200
python -m flows pipeline [-S loss.gamma=3 ...] [--name NAME]
python -m flows sweep -g "loss.gamma=[0,1,2,3]" -g "augment.mixup_alpha=[0,0.2]"
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


def _use_project_server(port: int) -> None:
    """Point Prefect at this project's server unless PREFECT_API_URL already says where to go."""
    if os.environ.get("PREFECT_API_URL"):
        return
    if server.healthy(server.api_url(port)):
        os.environ.update(
            {k: v for k, v in server.server_env(HOME, port).items() if k.startswith("PREFECT_") or k == "DO_NOT_TRACK"}
        )
    else:
        print(
            f"No Prefect server answers on 127.0.0.1:{port} (start one with `python -m flows server`); "
            "running against a temporary one, so the run will not stay visible.",
            file=sys.stderr,
        )
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m flows", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--port", type=int, default=server.DEFAULT_PORT, help="the project's Prefect server port")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("server", help="run the Prefect server on 127.0.0.1 until interrupted")
    run = sub.add_parser("pipeline", help="reproduce the pipeline, or run it as an experiment")
    run.add_argument("-S", "--set-param", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--name", help="experiment name (implies `dvc exp run`)")
    run.add_argument("--repo", default=str(PROJECT))
    grid = sub.add_parser("sweep", help="run a grid of experiments, one after another")
    grid.add_argument("-g", "--grid", action="append", required=True, metavar="KEY=[V1,V2,...]")
    grid.add_argument("--prefix", help="experiment name prefix (default: the start time)")
    grid.add_argument("--repo", default=str(PROJECT))
    sub.add_parser("serve", help="serve both flows as deployments of this process")
    args = p.parse_args(argv)

    if args.command == "server":
        process = server.start(HOME, args.port)
        print(f"Prefect server: http://127.0.0.1:{args.port} (PREFECT_HOME={HOME}); Ctrl-C stops it")
        try:
            process.wait()
        except KeyboardInterrupt:
            server.stop(process)
        return 0

    _use_project_server(args.port)
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
            table = sweep(grid=args.grid, repo=args.repo, prefix=args.prefix)
            for row in table:
                print(row)
    except StageFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
