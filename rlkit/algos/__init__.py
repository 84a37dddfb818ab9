"""Algorithms: the contracts the loop calls and their registry (base), PPO, A2C, and hooks such as RND."""
