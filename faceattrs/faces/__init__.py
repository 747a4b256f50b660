"""Faces in pictures: finding them with detectors that ship inside installed packages."""
