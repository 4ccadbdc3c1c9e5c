import subprocess
import sys

from spikmamba.cli import main


def test_help_lists_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "models" in out and "spikmamba" in out


def test_models_lists_parameter_counts(capsys):
    assert main(["models", "--filter", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "spikmamba_tiny " in out and "M  " in out


def test_models_unknown_filter_fails(capsys):
    assert main(["models", "--filter", "no-such-model"]) == 1
    assert "no registered model" in capsys.readouterr().err


def test_console_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "spikmamba.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "COMMAND" in result.stdout


def test_datasets_command_prints_layouts(capsys):
    from spikmamba.cli import main

    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("nmnist", "dvsgesture", "hardvs", "paf", "efaction", "ncaltech101"):
        assert name in out
    assert "trials_to_train.txt" in out and "action_001" in out
    assert main(["datasets", "nope"]) == 1
