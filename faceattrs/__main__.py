"""``python -m faceattrs``: the ``faceattrs`` command."""

from faceattrs.cli import main

main()
