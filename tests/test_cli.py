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


def test_a_reader_that_leaves_early_is_no_error():
    # `spikmamba datasets | head -1`: the pipe closes before we finish writing
    proc = subprocess.Popen([sys.executable, "-m", "spikmamba", "datasets"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_models_counts_without_building_and_describes_in_full(capsys):
    from spikmamba.models import count_parameters, create_model, list_models, model_description
    from spikmamba.models.factory import count_model_parameters

    for name in list_models():
        assert count_model_parameters(name) == count_parameters(create_model(name)), name
    assert model_description("spikmamba_tiny_sps").endswith("rotation direction of SynthActions).")
    assert main(["models", "--filter", "tiny_sps"]) == 0
    assert "rotation direction of SynthActions)." in capsys.readouterr().out


def test_unknown_key_suggests_the_closest(capsys):
    assert main(["train", "epoch=3"]) == 2
    assert "did you mean 'schedule.epochs'" in capsys.readouterr().err
