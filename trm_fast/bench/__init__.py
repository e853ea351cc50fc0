"""Benchmarks of trm_fast against plain PyTorch (`trm-fast bench`) and the ceilings they are read against;
the per-kernel view is trm_fast.profile (`trm-fast profile`)."""

from .configs import NAMES, BenchConfig, load
from .harness import BACKENDS, run

__all__ = ["BACKENDS", "NAMES", "BenchConfig", "load", "run"]
