"""Using what was trained: load a run's policy, evaluate it anew, record it playing, export it.

    policy = rlkit.load(run_dir)                 # policy.py: weights-only policy.pt + config.yaml
    evaluate(policy, episodes=100)               # evaluate.py: one row per episode -> <run>/evals/<name>.csv
    record_video(policy, "play.mp4")             # video.py: rgb_array frames -> MP4 (imageio-ffmpeg)
    export(policy, "policy.ts", "torchscript")   # export.py: one file, observation -> action, no rlkit needed
"""
from rlkit.trained.policy import Policy, load  # noqa: F401
# imported with the package: without a display it points MuJoCo at off-screen EGL before any env is made
from rlkit.trained.video import record_video  # noqa: F401, E402
