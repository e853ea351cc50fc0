"""The inference engine: the whole ACT loop on the device, with early exit and row refill."""

from .engine import HALTING, Engine, Solution
from .training import checkpoints_calls, training_forward

__all__ = ["Engine", "HALTING", "Solution", "checkpoints_calls", "training_forward"]
