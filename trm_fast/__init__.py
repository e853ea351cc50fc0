"""trm_fast: a fast engine for Tiny Recursive Models (TRM) and HRM.

`trm_fast.TRM`, `trm_fast.HRM` and `trm_fast.ACTLossHead` are drop-in replacements for the official
classes; `Engine` runs their whole ACT loop on the device (`Engine(model, batch_size).solve(inputs,
puzzle_identifiers)`); `AdamATan2` and `SignSGD` are the official recipe's optimizers; `load_checkpoint`
reads official checkpoints.
"""

from .checkpoint import load_checkpoint
from .engine import Engine, Solution
from .models import ACTLossHead, CastedSparseEmbedding, HRM, TRM
from .optim import AdamATan2, SignSGD

__version__ = "0.1.0"

__all__ = ["ACTLossHead", "AdamATan2", "CastedSparseEmbedding", "Engine", "HRM", "SignSGD", "Solution", "TRM",
           "load_checkpoint"]
