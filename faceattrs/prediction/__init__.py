"""Predicting the attributes of new images with a trained model, and writing them out."""
