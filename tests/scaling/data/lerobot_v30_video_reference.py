"""LeRobot's own reading of the golden folder: frames, state, action, task per index (the test's reference)."""
import sys

import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset

root, out = sys.argv[1], sys.argv[2]
ds = LeRobotDataset("local/golden", root=root, video_backend="pyav")
imgs, state, action, task = [], [], [], []
for i in range(len(ds)):
    it = ds[i]
    imgs.append((it["observation.images.top"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    state.append(it["observation.state"].numpy())
    action.append(it["action"].numpy())
    task.append(it["task"])
np.savez_compressed(out, images=np.stack(imgs), state=np.stack(state), action=np.stack(action), task=np.array(task))
print(len(ds), ds.meta.stats["action"].keys())
