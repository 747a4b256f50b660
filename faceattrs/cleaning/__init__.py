"""Cleaning the raw dataset: duplicates, unreadable images and label conflicts."""
