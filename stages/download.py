"""DVC stage download: fill the raw folder in CelebA's published layout from ``data.source``.

python -m stages.download --raw data/raw --downloads data/downloads --report reports/download.json
"""

from __future__ import annotations

from pathlib import Path

from faceattrs.core import atomic, stage
from faceattrs.core.provenance import provenance
from faceattrs.data import sources
from faceattrs.synthetic import source as _synthetic  # noqa: F401  registers data.source synthetic

# The params keys this stage reads: dvc.yaml's params for it, derived (tools/stage_deps.py).
PARAMS = ("data",)


def main() -> None:
    p = stage.parser(__doc__)
    p.add_argument("--raw", type=Path, required=True, help="the CelebA folder to write")
    p.add_argument("--downloads", type=Path, required=True, help="where downloads are kept and resumed")
    p.add_argument("--report", type=Path, required=True)
    args = p.parse_args()
    atomic.remove_stale(args.raw, args.report)  # what a killed run left
    params = stage.params_of(args, PARAMS)
    with atomic.atomic_dir(args.raw) as tmp:
        counts = sources.fetch(params.data, tmp, args.downloads, workers=0, progress=stage.show_progress(args))
    atomic.write_json(
        args.report, {"source": params.data.source, **counts, **provenance(sources.public_params(params.data))}
    )
    print(f"download: {counts['images']} images from {params.data.source} -> {args.raw}")


if __name__ == "__main__":
    stage.run(main, "download")
