"""The folder a run writes: never another run's, never shared by two live processes.

Why: with the default ``out_dir`` every ``spikmamba train`` used to write into ``runs/synth``,
so a second run replaced the config, truncated the log and overwrote ``last.pt`` of a run that
was still going. Now:

* a new run whose ``out_dir`` already holds a run's files writes to the first free numbered
  sibling instead (``runs/synth-2``, ``runs/synth-3``, ...), and says so; ``run.overwrite=true``
  replaces the old run's files instead (as trainers elsewhere have ``exist_ok`` /
  ``overwrite_output_dir``);
* resuming writes into the run's own folder, as it should;
* while a run is going, ``out_dir/.lock`` holds its process id and host; a second process that
  wants the same folder (a resume started twice, ``run.overwrite=true`` beside a live run) is refused
  with the process named. A lock left by a process that no longer exists (killed with SIGKILL)
  is taken over, with a note. The lock is written whole in one step (a temporary file linked
  into place), so an empty or unreadable lock is never a run's own: it is treated as live and
  refused with its path, never taken over.
"""
from __future__ import annotations

import errno
import os
import shutil
import socket
import time
from pathlib import Path

from ..errors import SpikmambaError

LOCK_NAME = ".lock"
#: files and folders that make a folder "hold a run"
RUN_FILES = ("config.yaml", "last.pt", "best.pt", "log.csv", "summary.json", "training_curves.png", "tensorboard",
             LOCK_NAME)


class RunDirBusy(SpikmambaError, RuntimeError):
    """Another live process is writing the run folder."""


def holds_run(folder: str | os.PathLike) -> list[str]:
    """The run files present in ``folder`` (empty: free to use)."""
    folder = Path(folder)
    return [name for name in RUN_FILES if (folder / name).exists()] if folder.is_dir() else []


def _candidates(out: Path):
    yield out
    n = 2
    while True:
        yield out.with_name(f"{out.name}-{n}")
        n += 1


def fresh_run_dir(out_dir: str | os.PathLike) -> Path:
    """``out_dir`` if it holds no run, else the first ``out_dir-N`` (N = 2, 3, ...) that holds none."""
    return next(c for c in _candidates(Path(out_dir)) if not holds_run(c))


def claim_run_dir(out_dir: str | os.PathLike, mode: str = "new") -> RunLock:
    """Lock the folder this run will write and return the held :class:`RunLock` (``.folder``).

    ``mode``: ``"new"``, the first of ``out_dir``, ``out_dir-2``, ... that holds no run (taken
    under its lock, so two runs started at once never pick the same one); ``"overwrite"``,
    ``out_dir`` itself with the previous run's files removed, but only once its lock is held (a
    live run there is never touched); ``"resume"``, ``out_dir`` as it is."""
    out = Path(out_dir)
    if mode in ("resume", "overwrite"):
        lock = RunLock(out).acquire()
        if mode == "overwrite":
            lock.removed = clear_run_files(out)
        return lock
    for candidate in _candidates(out):
        if holds_run(candidate):
            continue
        try:
            lock = RunLock(candidate).acquire()
        except RunDirBusy:
            continue
        if [f for f in holds_run(candidate) if f != LOCK_NAME]:  # a run wrote there meanwhile
            lock.release()
            continue
        return lock
    raise AssertionError("unreachable")


def clear_run_files(folder: str | os.PathLike) -> list[str]:
    """Remove a previous run's files (``run.overwrite=true``); other files in the folder are kept."""
    removed = []
    for name in RUN_FILES:
        path = Path(folder) / name
        if name == LOCK_NAME or not path.exists():
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """``with RunLock(folder):`` holds ``folder/.lock`` (pid, host, start time) for the run's lifetime."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.note = ""
        self.removed: list[str] = []
        self.created = False
        self._held = False

    def _holder(self) -> tuple[int, str, str] | None:
        try:
            pid, host, started = self.path.read_text().split("\n")[:3]
            return int(pid), host, started
        except (OSError, ValueError):
            return None

    def _create(self, content: str) -> bool:
        """Create the lock with its content in one step (a temporary file, then a hard link), so
        that no process ever sees it empty; False when a lock already exists."""
        tmp = self.path.with_name(f"{LOCK_NAME}.tmp{os.getpid()}")
        try:
            tmp.write_text(content)
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return False
            except OSError as err:  # a file system without hard links: exclusive create, then rename over it
                if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                if self.path.exists():
                    return False
                os.replace(tmp, self.path)
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def acquire(self) -> RunLock:
        self.created = not self.folder.exists()  # made by this run: removed again if the run writes nothing
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = f"{os.getpid()}\n{socket.gethostname()}\n{time.strftime('%Y-%m-%d %H:%M:%S')}\n"
        for _ in range(3):
            if self._create(me):
                self._held = True
                return self
            holder = self._holder()
            if holder is None:
                if not self.path.exists():
                    continue  # released meanwhile
                raise RunDirBusy(
                    f"{self.path} exists but cannot be read as a lock (empty or damaged); a run may be starting "
                    f"there, so it is left alone. If no run is writing {self.path.parent}, delete {self.path}")
            pid, host, started = holder
            if pid == os.getpid():
                raise RunDirBusy(f"{self.path.parent} is already locked by this process")
            if host != socket.gethostname() or _alive(pid):
                raise RunDirBusy(
                    f"{self.path.parent} is being written by process {pid} on {host} (since {started}); "
                    f"wait for it to finish, or give this run another run.out_dir. If that process is gone "
                    f"(another machine's run that crashed), delete {self.path}")
            self.note = f"took over {self.path} left by process {pid} (no longer running; started {started})"
            self.path.unlink(missing_ok=True)
        raise RunDirBusy(f"could not take {self.path}: another process keeps creating it")

    def release(self, remove_if_unused: bool = False) -> None:
        """Let the folder go; ``remove_if_unused``: also remove it when this run made it and wrote
        nothing there (a run refused before it began leaves no empty folder behind)."""
        self._release()
        if remove_if_unused and self.created:
            try:
                self.folder.rmdir()  # only when empty
            except OSError:
                pass

    def _release(self) -> None:
        if self._held:
            holder = self._holder()
            if holder is not None and holder[0] == os.getpid():
                try:
                    self.path.unlink()
                except OSError as err:
                    if err.errno != errno.ENOENT:
                        raise
            self._held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
