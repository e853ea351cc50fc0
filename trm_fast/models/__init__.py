"""Reference TRM and HRM, the ACT loss head and the sparse puzzle embedding."""

from .act import Carry, InnerCarry
from .config import HRMConfig, TRMConfig
from .hrm import HRM
from .losses import ACTLossHead
from .sparse_embedding import CastedSparseEmbedding
from .trm import TRM

__all__ = ["ACTLossHead", "Carry", "CastedSparseEmbedding", "HRM", "HRMConfig", "InnerCarry", "TRM", "TRMConfig"]
