"""Benchmarks of trm_fast against plain PyTorch: `python -m trm_fast.bench --help`."""

from .configs import CONFIGS
from .harness import BACKENDS, run

__all__ = ["BACKENDS", "CONFIGS", "run"]
