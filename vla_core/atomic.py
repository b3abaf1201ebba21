"""`write_atomic`: write a whole file so that readers see the old content or the new, never a part.

It lives in `vla_core`, the bottom of the import graph, so every package may import it. It uses
the standard library only.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder, then rename it into place.

    Why: results, configs and tables are read by other processes (workers, the sweep driver, a
    resumed run) and may be read after this one is killed. Writing in place would leave a
    half-written file that looks complete; here the target only ever holds the old content or the
    whole new content, because `os.replace` within one folder is atomic. A killed writer leaves at
    most a hidden ``.NAME.tmp-PID`` file beside the target, which nothing reads.

    Args:
        path: the file to write; its parent folder is made if missing.
        data: the whole content; a str is written as UTF-8 (no newline translation).

    Returns:
        The target path.

    Raises:
        TypeError: `data` is neither str nor bytes (nothing is written).
        OSError: the write or the rename failed; the temporary file is removed and the target is
            left as it was.
    """
    if isinstance(data, str):
        payload = data.encode("utf-8")
    elif isinstance(data, (bytes, bytearray)):
        payload = bytes(data)
    else:
        raise TypeError(f"write_atomic({path}): data must be str or bytes, not {type(data).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
