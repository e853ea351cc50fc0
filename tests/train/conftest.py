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
