"""The built-in DVS simulator: one SynthActions clip generated (64x64, 0.5 s, 48 rendered frames)
against reading the same clip back from an .npz file, the alternative of generating once to disk.
Generation must stay cheap enough that the default run (3000 clips) does not wait on it."""
import atexit
import shutil
import tempfile
from pathlib import Path

from spikmamba.data import SynthActions
from spikmamba.events.io import read_events, write_events


def setup(quick: bool):
    clips = 4 if quick else 32
    ds = SynthActions(num_samples=clips, seed=0, cache=False)
    folder = Path(tempfile.mkdtemp(prefix="spikmamba-bench-synth-"))
    atexit.register(shutil.rmtree, folder, True)
    paths = []
    for i in range(clips):
        paths.append(folder / f"{i}.npz")
        write_events(paths[-1], ds.events(i), sensor_size=ds.sensor_size)

    def generate():
        for i in range(clips):
            ds.events(i)

    def read():
        for path in paths:
            read_events(path)

    return {"what": f"{clips} simulated action clips, 64x64, 0.5 s each", "impls": {
        "SynthActions.events (generate)": generate, "read_events of the same clips (.npz)": read}}


BENCHMARKS = {"synth": setup}
