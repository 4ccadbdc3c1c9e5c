"""Corrupt files: every reader either returns valid events or raises EventFormatError naming the file.

Seeded mutations (random bytes, truncation, flipped bytes) of small valid files written by our
own writers, for every format with a writer; then Hypothesis-driven truncations, byte flips and
random blobs, each read under tracemalloc with an allocation bound proportional to the file
size. Before these tests, a corrupt .npy header escaped as tokenize.TokenError and a corrupt .h5
as KeyError/RuntimeError from inside h5py."""
import random
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def _seed_bytes(tmp_path, ext) -> bytes:
    n = 100
    events = make_events(np.arange(n) * 7, np.arange(n) % 30, np.arange(n) % 20, np.arange(n) % 2)
    path = tmp_path / f"seed{ext}"
    write_events(path, events, sensor_size=(32, 32))
    return path.read_bytes()


def _read_bounded(path, size: int):
    """read_events under tracemalloc: returns (events or the EventFormatError, peak bytes allocated)."""
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                result = read_events(path).events
            except EventFormatError as err:
                assert str(path) in str(err)
                result = err
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# allocation bound for a corrupt file: proportional to its size, plus a fixed allowance for
# parsers, buffers and numpy's small-array caches
MEMORY_BOUND = lambda size: 64 * size + (4 << 20)  # noqa: E731


@pytest.mark.parametrize("ext", FORMATS)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hypothesis_mutations_are_read_or_refused_within_a_memory_bound(tmp_path, ext, data):
    if ext == ".h5":
        pytest.importorskip("h5py")
    original = _seed_bytes(tmp_path, ext)
    keep = data.draw(st.integers(0, len(original)), label="truncate to")
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(0, 255)), max_size=12),
                      label="byte flips")
    mutated = bytearray(original[:keep])
    for at, value in flips:
        if at < len(mutated):
            mutated[at] = value
    path = tmp_path / f"mutated{ext}"
    path.write_bytes(bytes(mutated))
    result, peak = _read_bounded(path, len(mutated))
    assert peak <= MEMORY_BOUND(len(mutated)), f"{peak} bytes allocated for a {len(mutated)}-byte file"
    if not isinstance(result, EventFormatError):
        assert np.all(np.diff(result["t"].astype(np.int64)) >= 0)


@pytest.mark.parametrize("ext", FORMATS)
@settings(max_examples=60, deadline=None)
@given(blob=st.binary(max_size=600))
def test_hypothesis_random_bytes_are_refused_or_read(tmp_path_factory, ext, blob):
    if ext == ".h5":
        pytest.importorskip("h5py")
    path = tmp_path_factory.mktemp("blob") / f"blob{ext}"
    path.write_bytes(blob)
    _, peak = _read_bounded(path, len(blob))
    assert peak <= MEMORY_BOUND(len(blob))


def test_npy_header_claiming_a_trillion_events_is_refused_without_allocating_them(tmp_path):
    path = tmp_path / "huge.npy"
    write_events(path, make_events([0, 1], [0, 1], [0, 1], [0, 1]))
    raw = path.read_bytes()
    header_end = raw.index(b"\n") + 1
    header = raw[:header_end].replace(b"(2,)", b"(1000000000000,)")
    path.write_bytes(header + raw[header_end:])
    result, peak = _read_bounded(path, path.stat().st_size)
    assert isinstance(result, EventFormatError) and peak < (8 << 20)
