"""Memories and running statistics: the rollout memory (rollout), the replay memory (replay; in files: replay_map)
and the normalisers (normalize)."""
