"""The inference engine: the whole ACT loop on the device, with early exit and row refill."""

from .engine import HALTING, Engine, Solution
from .training import training_forward

__all__ = ["Engine", "HALTING", "Solution", "training_forward"]
