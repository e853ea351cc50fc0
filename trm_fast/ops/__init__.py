"""The operations of the recursion block, one module each: a plain-PyTorch reference and the
public function the model calls (the place where a fused backend dispatches)."""

from .attention import attention
from .rms_norm import add_rms_norm
from .rope import rope
from .swiglu import swiglu

__all__ = ["add_rms_norm", "attention", "rope", "swiglu"]
