"""Reference implementations the tests compare the kit against: plain loops written from the definitions."""
import numpy as np


def reference_gae(rewards, values, last, gamma, lam, terminated=None, truncated=None, final_values=None):
    """A plain loop per env from the definitions; without `terminated` the stream never ends."""
    T, N = rewards.shape
    adv = np.zeros((T, N))
    for i in range(N):
        gae = 0.0
        for t in reversed(range(T)):
            if terminated is not None and terminated[t, i]:
                delta, gae = rewards[t, i] - values[t, i], 0.0
            elif truncated is not None and truncated[t, i]:
                delta, gae = rewards[t, i] + gamma * final_values[t, i] - values[t, i], 0.0
            else:
                nxt = last[i] if t == T - 1 else values[t + 1, i]
                delta = rewards[t, i] + gamma * nxt - values[t, i]
            gae = delta + gamma * lam * gae
            adv[t, i] = gae
    return adv
