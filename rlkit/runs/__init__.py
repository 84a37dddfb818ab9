"""A run on disk: its directory and lock, metrics, checkpoints, several ranks, notebook kernels."""
