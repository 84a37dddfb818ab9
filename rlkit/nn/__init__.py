"""Networks: encoders, distributions and actor-critic builders (networks), the optimizer (optim), and plain MLPs
in numpy for the CPU (numpy_mlp)."""
