import os
from pathlib import Path

import pytest
import torch

from latentface.data.synth import generate_dataset

# pytest-xdist runs one worker per core: one thread each avoids oversubscribing the CPU.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """``make(n_train, n_val, size=64, rates=(75,), seed=0) -> root``: each distinct synthetic dataset is
    generated once per test session (and xdist worker) and shared; tests must treat it as read-only."""
    made: dict[tuple, Path] = {}

    def make(n_train: int, n_val: int, size: int = 64, rates=(75,), seed: int = 0) -> Path:
        key = (n_train, n_val, size, tuple(rates), seed)
        if key not in made:
            root = tmp_path_factory.mktemp(f"synth{size}-{n_train}-{n_val}-s{seed}")
            generate_dataset(root, n_train, n_val, size=size, rates=tuple(rates), seed=seed, progress=False)
            made[key] = root
        return made[key]

    return make


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on a shared CPU: one thread is the fastest and keeps runs bitwise reproducible.
    A module asks for it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
