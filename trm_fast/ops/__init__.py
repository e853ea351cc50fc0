"""The operations of the recursion block, one module each: a plain-PyTorch reference and the
public function the model calls (the place where a fused backend dispatches). The model reaches the
backend switch (trm_fast.backend) only through here: its names, and resolving a config's choice."""

from ..backend import BACKENDS
from ..backend import recomputes_in_ops
from ..backend import resolve as resolve_backend
from .attention import rope_attention, self_attention
from .carried_norm import layer_unsupported as carried_layer_unsupported
from .carried_norm import linear_residual_sm90
from .carried_norm import normalize as carried_normalize
from .carried_norm import offered as carried_offered
from .linear_add_rms_norm import linear_add_rms_norm
from .linear_rope import linear_rope_sm90
from .linear_swiglu import linear_swiglu, linear_swiglu_sm90
from .mlp import swiglu_mlp, swiglu_mlp_add_rms_norm
from .rms_norm import add_rms_norm
from .small_layer import offered as small_layer_offered
from .small_layer import small_layer
from .small_layer import takes as small_layer_takes
from .swiglu import swiglu
from .swiglu_linear import swiglu_linear
from .token_mix import token_mix

__all__ = ["BACKENDS", "add_rms_norm", "carried_layer_unsupported", "carried_normalize", "carried_offered",
           "linear_add_rms_norm", "linear_residual_sm90", "linear_rope_sm90", "linear_swiglu", "linear_swiglu_sm90",
           "recomputes_in_ops", "resolve_backend", "rope_attention", "self_attention", "small_layer",
           "small_layer_offered", "small_layer_takes", "swiglu", "swiglu_linear", "swiglu_mlp",
           "swiglu_mlp_add_rms_norm", "token_mix"]
