"""Write a tiny LeRobot 0.4 dataset with LeRobotDataset itself (video camera), as LeRobot lays it out."""
import shutil
import sys
from pathlib import Path

import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset

root = Path(sys.argv[1])
shutil.rmtree(root, ignore_errors=True)
features = {
    "observation.images.top": {"dtype": "video", "shape": (32, 32, 3), "names": ["height", "width", "channels"]},
    "observation.state": {"dtype": "float32", "shape": (3,), "names": ["x", "y", "grip"]},
    "action": {"dtype": "float32", "shape": (2,), "names": ["dx", "dy"]},
}
ds = LeRobotDataset.create("local/golden", fps=10, root=root, features=features, use_videos=True,
                           robot_type="toy")
rng = np.random.default_rng(0)
tasks = ["push the red block left", "touch the blue circle"]
for e in range(2):
    for t in range(8):
        img = np.zeros((32, 32, 3), np.uint8)
        img[..., e] = 40 + 25 * t          # a colour ramp, easy to check after lossy coding
        img[4 * t:4 * t + 4, :, 2 - e] = 255  # a moving bar
        ds.add_frame({"observation.images.top": img,
                      "observation.state": rng.standard_normal(3).astype(np.float32),
                      "action": rng.standard_normal(2).astype(np.float32),
                      "task": tasks[e]})
    ds.save_episode()
ds.finalize()
print("wrote", root)
