"""Optimizers of the official training recipe."""

from .adam_atan2 import AdamATan2
from .sign_sgd import SignSGD

__all__ = ["AdamATan2", "SignSGD"]
