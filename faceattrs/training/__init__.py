"""Training: models, losses, augmentations, optimizers and schedules, the loader and the loop."""
