"""Fixtures for the training and evaluation tests; the helpers live in _trainutil.py next to this file."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # wherever the tests run from
from _trainutil import write_reverse_dataset  # noqa: E402


@pytest.fixture
def reverse_data(tmp_path):
    """Factory: reverse_data(**kwargs) -> path of a fresh tiny dataset."""
    count = [0]

    def make(**kwargs):
        count[0] += 1
        return write_reverse_dataset(tmp_path / f"data{count[0]}", **kwargs)
    return make


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train several times faster on one thread than on two (and so do the subprocesses)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
