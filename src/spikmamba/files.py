"""Writing files so that a failure never leaves a half-written one behind (checkpoints, configs,
reports): the bytes go to a temporary file beside the target, which is then renamed into place."""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from .errors import SpikmambaError


class FileWriteError(SpikmambaError, OSError):
    """A file could not be written (disk full, read-only folder); the previous version is intact."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place; on failure
    the temporary file is removed, ``path`` is untouched, and the error says why in words."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise FileWriteError(err.errno, _write_failure(path, len(data), err)) from None


def _write_failure(path: Path, size: int, err: OSError) -> str:
    kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        try:
            free = f"{shutil.disk_usage(path.parent).free / 1e6:.1f} MB free"
        except OSError:
            free = "free space unknown"
        why = "the file would be larger than this process may write" if err.errno == errno.EFBIG else \
            "no space left on the device"
        return f"could not write {path}: {why} ({size / 1e6:.1f} MB needed, {free}); {kept}"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"could not write {path}: {path.parent} is not writable ({err.strerror}); {kept}"
    return f"could not write {path}: {err.strerror or err}; {kept}"
