"""faceattrs: a reproducible DVC + Prefect pipeline from CelebA to a 40-attribute face classifier."""

__version__ = "0.1.0"
