"""The inference engine: the whole ACT loop on the device, with early exit and row refill."""

from .engine import HALTING, Engine, Solution

__all__ = ["Engine", "HALTING", "Solution"]
