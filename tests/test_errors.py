"""One error base for what a user can fix (issue 31): ``main`` prints a ``SpikmambaError`` or an
``OSError`` in one line and exits 2; anything else is a bug and keeps its traceback."""
import importlib
import inspect
from pathlib import Path

import pytest

from spikmamba import cli
from spikmamba.errors import InputError, Interrupted, MissingDependency, SpikmambaError

#: every error class a user meets, by module: each must be a SpikmambaError (and keep its builtin base)
USER_ERRORS = {
    "spikmamba.events.io.errors": {"EventFormatError": ValueError},
    "spikmamba.models.weights": {"WeightsError": ValueError},
    "spikmamba.engine.checkpoint": {"CheckpointError": ValueError, "CheckpointWriteError": OSError},
    "spikmamba.engine.export": {"ExportError": RuntimeError},
    "spikmamba.engine.run_dir": {"RunDirBusy": RuntimeError},
    "spikmamba.engine.trainer": {"NonFiniteLoss": FloatingPointError, "TooManySkipped": ValueError},
    "spikmamba.engine.model": {"UnknownModelArgument": ValueError},
    "spikmamba.engine.inputs": {"EmptyRecording": ValueError},
    "spikmamba.data.base": {"DatasetLayoutError": FileNotFoundError, "SampleError": ValueError,
                            "DatasetPathError": ValueError},
    "spikmamba.data.video": {"VideoReadError": ValueError},
}


@pytest.mark.parametrize("module", sorted(USER_ERRORS))
def test_every_user_error_is_a_spikmamba_error_and_keeps_its_builtin_base(module):
    mod = importlib.import_module(module)
    for name, builtin in USER_ERRORS[module].items():
        cls = getattr(mod, name)
        assert issubclass(cls, SpikmambaError) and issubclass(cls, builtin), name
    assert issubclass(InputError, ValueError) and issubclass(MissingDependency, ImportError)
    assert not issubclass(Interrupted, SpikmambaError)  # a stop on request, not an error


def test_no_module_raises_a_bare_value_error():
    """User-facing checks raise InputError (a ValueError), so that the command line can tell them
    from a bug; a bare ``raise ValueError(`` in the package would print a traceback to a user."""
    root = Path(inspect.getfile(SpikmambaError)).parent
    offenders = [str(p) for p in root.rglob("*.py") if "raise ValueError(" in p.read_text()]
    assert offenders == []


def _run_with(monkeypatch, error):
    def boom(args):
        raise error

    monkeypatch.setattr(cli, "_cmd_models", boom)
    return cli.main(["models"])


@pytest.mark.parametrize("error", [InputError("batch_size is 0; give a positive number"),
                                   MissingDependency("reading videos needs PyAV: pip install av"),
                                   FileNotFoundError(2, "No such file or directory", "/nowhere/clip.aedat4")])
def test_a_user_error_is_one_line_without_a_traceback(monkeypatch, capsys, error):
    assert _run_with(monkeypatch, error) == 2
    err = capsys.readouterr().err
    assert err.startswith("spikmamba models: ") and err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("error", [ValueError("internal"), RuntimeError("internal"), KeyError("internal"),
                                   TypeError("internal")])
def test_anything_else_is_a_bug_and_keeps_its_traceback(monkeypatch, error):
    with pytest.raises(type(error), match="internal"):
        _run_with(monkeypatch, error)


def test_an_interrupted_run_exits_130_in_one_line(monkeypatch, capsys):
    assert _run_with(monkeypatch, Interrupted("stopped; resume with --resume runs/x/last.pt")) == 130
    assert capsys.readouterr().err == "spikmamba models: stopped; resume with --resume runs/x/last.pt\n"
