"""Write a tiny LeRobot 0.4 dataset with LeRobotDataset itself: two image cameras and a task that changes
within an episode; then LeRobot's own reading of it (the test's reference).

    PYTHONHASHSEED=0 python lerobot_v30_cameras_make.py OUT_DIR REFERENCE.npz

PYTHONHASHSEED fixes the order LeRobot gives an episode's tasks (it takes them from a set).
"""
import shutil
import sys
from pathlib import Path

import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset

root, reference = Path(sys.argv[1]), sys.argv[2]
shutil.rmtree(root, ignore_errors=True)
features = {
    "observation.images.top": {"dtype": "image", "shape": (16, 16, 3), "names": ["height", "width", "channels"]},
    "observation.images.wrist": {"dtype": "image", "shape": (16, 16, 3), "names": ["height", "width", "channels"]},
    "observation.state": {"dtype": "float32", "shape": (3,), "names": ["x", "y", "grip"]},
    "action": {"dtype": "float32", "shape": (2,), "names": ["dx", "dy"]},
}
ds = LeRobotDataset.create("local/cameras", fps=10, root=root, features=features, use_videos=False,
                           robot_type="toy")
rng = np.random.default_rng(0)
# Episode 0 changes task twice (A, B, A); episode 1 keeps one task.
episode_tasks = [["pick up the red block"] * 3 + ["place it in the blue zone"] * 3 + ["pick up the red block"] * 2,
                 ["touch the green circle"] * 5]
for e, tasks in enumerate(episode_tasks):
    for t, task in enumerate(tasks):
        top = np.zeros((16, 16, 3), np.uint8)
        top[..., 0] = 40 + 20 * t       # the top camera: a red ramp over time
        top[..., 2] = 60 * e
        wrist = np.zeros((16, 16, 3), np.uint8)
        wrist[..., 1] = 200 - 20 * t    # the wrist camera: a green ramp down
        wrist[2 * t:2 * t + 2, :, 0] = 255
        ds.add_frame({"observation.images.top": top, "observation.images.wrist": wrist,
                      "observation.state": rng.standard_normal(3).astype(np.float32),
                      "action": rng.standard_normal(2).astype(np.float32), "task": task})
    ds.save_episode()
ds.finalize()
print("wrote", root)

ds = LeRobotDataset("local/cameras", root=root)
out = {"top": [], "wrist": [], "state": [], "action": [], "task": [], "episode": []}
for i in range(len(ds)):
    it = ds[i]
    for cam in ("top", "wrist"):
        img = it[f"observation.images.{cam}"].permute(1, 2, 0).numpy()
        out[cam].append((img * 255).round().astype(np.uint8))
    out["state"].append(it["observation.state"].numpy())
    out["action"].append(it["action"].numpy())
    out["task"].append(it["task"])
    out["episode"].append(int(it["episode_index"]))
np.savez_compressed(reference, **{k: np.stack(v) if k not in ("task", "episode") else np.array(v)
                                  for k, v in out.items()})
print("wrote", reference, len(ds), "frames")
