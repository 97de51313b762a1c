"""The training loop, data loading, checkpoints and logging."""
