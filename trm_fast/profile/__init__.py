"""`trm-fast profile`: where a training step or an evaluation spends its time, kernel by kernel, per stage
of the recursion (stages.py), against the ceilings trm_fast.bench measures; Nsight Compute on request."""

from .runner import profile

__all__ = ["profile"]
