"""Developer tools: the offline plots page, dvc.yaml code deps, the README figures."""
