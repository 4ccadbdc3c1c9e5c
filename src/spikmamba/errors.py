"""One base for the errors a user causes and can fix, so that ``spikmamba`` catches them once.

``SpikmambaError`` and its subclasses name the problem and the fix: a bad value, a damaged file,
a missing dataset folder, a busy run folder. The command line prints them in a line or two and
exits with 2. Anything else that escapes is a bug and keeps its traceback.

Each subclass also derives from the built-in type a Python caller would expect (``ValueError``
for a bad value or file, ``FileNotFoundError`` for a missing folder, ...), so library code that
catches those keeps working. This module imports nothing: every layer may raise these.
"""


class SpikmambaError(Exception):
    """An error in the user's input, files or environment, with a message that says how to fix it."""


class InputError(SpikmambaError, ValueError):
    """A value given to spikmamba (an argument, a config key, an option, a tensor's shape) is out
    of range or inconsistent with another."""


class MissingDependency(SpikmambaError, ImportError):
    """An optional package that the requested feature needs is not installed; names the pip command."""


class Interrupted(Exception):
    """Stopped on a signal, not an error: training after writing ``last.pt`` (resume with
    ``--resume``), data preparation with nothing to save. The command line exits with 130."""
