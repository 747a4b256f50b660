"""The embedded synthetic CelebA: labels, drawn faces, planted flaws and their ground truth."""
