"""Memories and running statistics: the rollout memory (rollout) and the normalisers (normalize)."""
