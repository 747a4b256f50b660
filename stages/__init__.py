"""The DVC stages, one module each: ``python -m stages.<name>``."""
