"""Corrupt files: every reader either returns valid events or raises EventFormatError naming the file.

Seeded mutations (random bytes, truncation, flipped bytes) of small valid files written by our
own writers, for every format with a writer. Before this test, a corrupt .npy header escaped as
tokenize.TokenError and a corrupt .h5 as KeyError/RuntimeError from inside h5py."""
import random
import warnings

import numpy as np
import pytest

from spikmamba.events import make_events
from spikmamba.events.io import WRITERS, EventFormatError, read_events, write_events
from spikmamba.events.io.dispatch import EXTENSIONS

FORMATS = sorted({ext for ext, fmt in EXTENSIONS.items() if fmt in WRITERS})


def _mutate(original: bytes, rng: random.Random, p_random: float, p_truncate: float, max_flips: int) -> bytes:
    """Random bytes (probability p_random), a truncation (p_truncate), or 1..max_flips changed bytes."""
    roll = rng.random()
    if roll < p_random:
        return rng.randbytes(rng.randint(0, 300))
    if roll < p_random + p_truncate:
        return original[: rng.randint(0, len(original))]
    data = bytearray(original)
    for _ in range(rng.randint(1, max_flips)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


@pytest.mark.parametrize("ext", FORMATS)
def test_mutated_files_read_or_raise_event_format_error(tmp_path, ext):
    if ext == ".h5":
        pytest.importorskip("h5py")
    n = 200
    events = make_events(np.arange(n) * 10, np.arange(n) % 30, np.arange(n) % 20, np.arange(n) % 2)
    seed_file = tmp_path / f"seed{ext}"
    write_events(seed_file, events, sensor_size=(32, 32))
    original = seed_file.read_bytes()
    rng = random.Random(ext)
    outcomes = {"read": 0, "refused": 0}
    for i in range(60):
        path = tmp_path / f"m{i}{ext}"
        path.write_bytes(_mutate(original, rng, p_random=0.2, p_truncate=0.3, max_flips=8))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # unsorted-timestamp warnings are expected here
                rec = read_events(path)
        except EventFormatError as err:
            assert str(path) in str(err)
            outcomes["refused"] += 1
            continue
        ev = rec.events
        assert ev.dtype.names is not None and set("txyp") <= set(ev.dtype.names)
        assert np.all(np.diff(ev["t"].astype(np.int64)) >= 0)  # sorted, as read_events promises
        outcomes["read"] += 1
    assert outcomes["refused"] > 0, outcomes  # the mutations do reach the error paths


def test_mutated_real_aedat4_reads_or_raises_event_format_error(shared_data, tmp_path):
    pytest.importorskip("aedat")
    original = (shared_data / "aedat4" / "data_sample.aedat4").read_bytes()
    rng = random.Random(1)
    refused = 0
    for i in range(30):
        path = tmp_path / f"m{i}.aedat4"
        path.write_bytes(_mutate(original, rng, p_random=0.0, p_truncate=0.3, max_flips=20))
        try:  # BaseException too: a panic in the Rust decoder would be a PanicException
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                read_events(path)
        except EventFormatError as err:
            assert str(path) in str(err)
            refused += 1
        except BaseException as err:  # noqa: B036 - the point is to see anything else
            pytest.fail(f"mutation {i} escaped as {type(err).__name__}: {err}")
        path.unlink()
    assert refused > 0
