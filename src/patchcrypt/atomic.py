"""``atomic_write``: every file patchcrypt writes appears whole or not at all.

The data goes to a temporary file beside the target (same folder, so the rename cannot cross file systems),
which then replaces the target in one ``os.replace``. A reader never sees a half-written checkpoint, key or
report, and a crash or Ctrl-C leaves the previous file as it was and no temporary file behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Union

Writer = Callable[[BinaryIO], None]


def atomic_write(path: Union[str, os.PathLike], data: Union[bytes, str, Writer], mode: Optional[int] = None) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path.

    Args:
        path: the target file; its folder must exist.
        data: bytes, text (written as UTF-8), or a function that writes into the open binary file (e.g.
            ``lambda f: torch.save(obj, f)`` or ``lambda f: fig.savefig(f, format="png")``).
        mode: permission bits to set exactly (whatever the umask), e.g. 0o600 for a key file.

    The file is created with mode 0600 (``tempfile.mkstemp``'s), so files holding plain images or keys are
    never readable by others, not even for a moment. OSError propagates; callers phrase it for their user.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
