"""Every README snippet runs as written (issue 25): the Python blocks, after the `spikmamba synth`
lines of the bash blocks that prepare their files, in a fresh folder."""
import re
from pathlib import Path

import pytest

from spikmamba.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def blocks(lang: str) -> "list[str]":
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), re.S)


def test_readme_python_snippets_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    synth = [line.split("#")[0].split("&&")[0].split() for block in blocks("bash") for line in block.splitlines()
             if line.startswith("spikmamba synth")]
    assert synth, "the README no longer shows how to make the files its snippets read"
    for argv in synth:
        assert main(argv[1:]) == 0
    snippets = blocks("python")
    assert len(snippets) >= 2
    for code in snippets:
        exec(compile(code, "README.md", "exec"), {})


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data (the real sample recordings) is not here")
def test_the_read_snippet_on_every_shared_recording_works_or_says_what_is_missing():
    from spikmamba.events import read_events, to_frames

    files = [p for p in SHARED.rglob("*") if p.suffix in (".bs2", ".bin", ".aedat4", ".raw", ".dat")]
    assert len(files) > 5
    for path in files:
        events, sensor_size, fmt, skipped = read_events(path)
        if sensor_size is None:  # the README's second form
            with pytest.raises(ValueError, match="pass \\(width, height\\)"):
                to_frames(events, sensor_size, n_frames=16)
            sensor_size = (int(events["x"].max()) + 1, int(events["y"].max()) + 1)
            events, sensor_size, fmt, skipped = read_events(path, sensor_size=sensor_size)
        frames = to_frames(events, sensor_size, n_frames=16)
        assert frames.shape == (16, 2, sensor_size[1], sensor_size[0]) and frames.sum() == len(events), path
