"""Shared fixtures: the real recordings in ``../shared/data`` (tests skip cleanly without them)."""
import os
from pathlib import Path

import torch

if not torch.cuda.is_available():
    # Triton kernels run on CPU tensors in Triton's interpreter (tests/test_triton.py). The switch is
    # read when a function is decorated, Triton's own library functions included, so it must be set
    # before anything imports triton (torch.compile may).
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory) -> Path:
    """What spikmamba caches for the user (ONNX exports) goes to this test session's folder, not ~/.cache."""
    folder = tmp_path_factory.mktemp("user-cache")
    before = os.environ.get("SPIKMAMBA_CACHE")
    os.environ["SPIKMAMBA_CACHE"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("SPIKMAMBA_CACHE", None)
    else:
        os.environ["SPIKMAMBA_CACHE"] = before


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real recordings not available: {SHARED_DATA} is absent (a folder beside the repository on "
                    f"the project's machines; see README.md, 'Datasets and their folder layouts')")
    return SHARED_DATA


def random_events(n: int, sensor=(128, 128), t_max: int = 1_000_000, seed: int = 0) -> np.ndarray:
    from spikmamba.events import make_events

    rng = np.random.default_rng(seed)
    return make_events(np.sort(rng.integers(0, t_max, n)), rng.integers(0, sensor[0], n), rng.integers(0, sensor[1], n),
                       rng.integers(0, 2, n))
