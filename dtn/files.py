"""Files a node writes for its owner alone (key files, zstd dictionaries): atomically, so a
crash leaves the old file or the new one, and readable by the owner only from the start."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file (fsync, rename) created with mode 600.
    OSError as the system gives it."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)  # exactly 600, whatever the umask
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
