"""The training loop (trainer), evaluation, and the guards around a run."""
