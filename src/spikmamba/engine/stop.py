"""Ctrl-C and SIGTERM as a request to stop, never a traceback.

Why: a KeyboardInterrupt raised wherever the main thread happens to be (inside a DataLoader's
queue, in the middle of writing ``last.pt``) printed 55 lines of traceback, left loader workers
behind, or lost the checkpoint being written. Here a signal only sets a flag, acknowledged at
once; the loop checks it where stopping is clean (between steps, between batches of data
preparation) and raises :class:`Interrupted`, which the command prints in one line."""
from __future__ import annotations

import os
import signal
import sys

from ..errors import Interrupted

__all__ = ["Interrupted", "StopFlag"]


class StopFlag:
    """Turns SIGTERM / SIGINT into a flag checked between steps (a checkpoint, then a clean exit).

    Each press is acknowledged at once. The first asks for a stop after the current step, with
    ``last.pt`` saved; a second only repeats that (two quick presses used to kill the run mid-save
    with a traceback); a third stops at once, except while ``last.pt`` is being written: that
    save is finished first. With ``doing`` (data preparation: nothing to save) every press only
    asks for the stop."""

    def __init__(self, out: str | None = None, doing: str | None = None):
        self.raised = False
        self.raised_everywhere = False  # under DDP: on any process (agreed at each step)
        self.presses = 0
        self.saving = False
        self.hurry = False  # a third press during a save: stop right after it
        self._old = {}
        self._where = f"{out}/last.pt" if out else "last.pt"
        self._doing = doing  # set: nothing to save (data preparation); the stop is immediate
        self._pid = os.getpid()

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            if sig == signal.SIGINT and signal.getsignal(sig) == signal.SIG_IGN:
                continue  # started with Ctrl-C ignored (nohup, `cmd &` in a script): it stays ignored
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals cannot be caught here
                pass
        return self

    def _handle(self, signum, frame):
        if os.getpid() != self._pid:  # a loader worker forked while the handler was in place: not its to say
            return
        self.presses += 1
        self.raised = True
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        if self._doing:
            if self.presses == 1:
                self._say(f"{name}: stopping {self._doing}")
            return
        if self.presses == 1:
            self._say(f"{name}: stopping after this step; {self._where} is saved first (press Ctrl-C twice more "
                      f"to stop without saving)")
        elif self.presses == 2:
            self._say(f"{name}: still stopping; {self._where} is saved first (once more to stop without saving)")
        elif self.saving:
            self.hurry = True
            self._say(f"{name}: {self._where} is being written; stopping as soon as it is")
        else:
            raise KeyboardInterrupt

    @staticmethod
    def _say(text: str) -> None:
        try:
            sys.stderr.write(f"\n{text}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def __exit__(self, *exc):
        # the handlers as they were: a process that goes on (a notebook, a test session) keeps its
        # Ctrl-C; the command ignores late presses itself while it exits (cli.run)
        for sig, old in self._old.items():
            signal.signal(sig, old)
