"""Prefect flows over the DVC pipeline; the only package that imports prefect, so `dvc repro` never needs it."""
