"""Evaluating a trained model: measures, thresholds and the noise ceiling."""
