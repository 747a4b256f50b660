"""Build plots/offline.html: DVC's plots page template with Vega, Vega-Lite and vega-embed inlined.

DVC's default page loads these three from a CDN, so `dvc plots show` draws nothing
offline. This fetches the pinned releases from the npm registry (`npm pack`, which
checks each tarball's integrity), inlines their minified builds, and leaves out DVC's
``{scripts}`` placeholder so no CDN tag is added. .dvc/config points DVC at the page.

    python tools/offline_plots.py            # rewrite plots/offline.html
"""

from __future__ import annotations

import argparse
import subprocess
import tarfile
import tempfile
from pathlib import Path

# The versions dvc-render's own page asks the CDN for.
PACKAGES = {"vega": "5.20.2", "vega-lite": "5.2.0", "vega-embed": "6.18.2"}
OUT = Path(__file__).resolve().parents[1] / "plots" / "offline.html"

PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>faceattrs plots</title>
    <!-- {versions}, inlined by tools/offline_plots.py so the page draws with no network -->
{scripts}
    <style>
        body {{ font-family: sans-serif; }}
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def minified(package: str, version: str, workdir: Path) -> str:
    tarball = (
        subprocess.run(
            ["npm", "pack", f"{package}@{version}", "--silent"], cwd=workdir, check=True, capture_output=True, text=True
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    with tarfile.open(workdir / tarball) as tar:
        script = tar.extractfile(f"package/build/{package}.min.js").read().decode()
    if "</script" in script.lower():
        raise SystemExit(f"{package}@{version}: its build contains '</script' and cannot be inlined")
    return script


def build(out: Path = OUT) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        scripts = "\n".join(
            f"    <script>/* {name}@{version} */\n{minified(name, version, Path(tmp))}\n    </script>"
            for name, version in PACKAGES.items()
        )
    versions = ", ".join(f"{name}@{version}" for name, version in PACKAGES.items())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(PAGE.format(versions=versions, scripts=scripts), encoding="utf8")
    return out


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    print(build())
