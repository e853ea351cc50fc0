"""Building blocks shared by TRM and HRM: casted linears and embeddings, RoPE tables, attention,
SwiGLU, the post-norm block and the reasoning module (input injection, then the layers).

Parameters stay fp32 and are cast to the activation dtype where they are used, as in the official
code; initialisation follows JAX's truncated normal, so training from scratch behaves the same.
Module and parameter names match the official ones: state_dicts load strictly both ways.
"""

import math
from typing import Optional

import torch
import torch.utils.checkpoint
import torch.nn.functional as F
from torch import nn

from .. import ops


def trunc_normal_init_(tensor: torch.Tensor, std: float = 1.0, lower: float = -2.0, upper: float = 2.0):
    """Truncated normal whose standard deviation really is `std` (as jax.nn.initializers does;
    torch.nn.init.trunc_normal_ gives a smaller one). Truncation at [lower, upper] std units."""
    with torch.no_grad():
        if std == 0:
            return tensor.zero_()
        a, b = math.erf(lower / math.sqrt(2)), math.erf(upper / math.sqrt(2))
        z = (b - a) / 2
        c = (2 * math.pi) ** -0.5
        pdf_lo, pdf_hi = c * math.exp(-0.5 * lower**2), c * math.exp(-0.5 * upper**2)
        # std of a unit normal truncated to [lower, upper], to rescale to the requested std
        trunc_std = math.sqrt(1 - (upper * pdf_lo - lower * pdf_hi) / z - ((pdf_lo - pdf_hi) / z) ** 2)
        scale = std / trunc_std
        tensor.uniform_(a, b).erfinv_().mul_(math.sqrt(2) * scale)
        return tensor.clip_(lower * scale, upper * scale)


class CastedLinear(nn.Module):
    """Linear layer with fp32 weights (LeCun truncated-normal init) cast to the input dtype."""

    def __init__(self, in_features: int, out_features: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(trunc_normal_init_(torch.empty(out_features, in_features), std=in_features**-0.5))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.weight.to(x.dtype), bias)


class CastedEmbedding(nn.Module):
    """Embedding table with fp32 weights, looked up and cast to the activation dtype."""

    def __init__(self, num_embeddings: int, embedding_dim: int, init_std: float, cast_to: torch.dtype):
        super().__init__()
        self.cast_to = cast_to
        self.embedding_weight = nn.Parameter(trunc_normal_init_(torch.empty(num_embeddings, embedding_dim), std=init_std))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.embedding_weight.to(self.cast_to))


class RotaryEmbedding(nn.Module):
    """cos/sin tables (positions x head_dim, fp32) in the rotate-half layout; not persistent."""

    def __init__(self, dim: int, max_positions: int, base: float):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        freqs = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq)
        angles = torch.cat((freqs, freqs), dim=-1)
        self.cos_cached = nn.Buffer(angles.cos(), persistent=False)
        self.sin_cached = nn.Buffer(angles.sin(), persistent=False)

    def forward(self):
        return self.cos_cached, self.sin_cached


class Attention(nn.Module):
    """Non-causal multi-head self-attention with a fused QKV projection and optional RoPE. `recompute`: its
    backward recomputes what it can (ops.self_attention)."""

    def __init__(self, hidden_size: int, num_heads: int, backend: str, recompute: bool = False):
        super().__init__()
        self.backend, self.recompute = backend, recompute
        self.num_heads, self.head_dim = num_heads, hidden_size // num_heads
        self.qkv_proj = CastedLinear(hidden_size, 3 * hidden_size, bias=False)
        self.o_proj = CastedLinear(hidden_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos_sin, project: bool = True) -> torch.Tensor:
        """project=False stops before the output projection (B, S, H D): the post-norm block hands o_proj's
        weight to one op with the residual add and the norm after it."""
        # the projection's weight goes to the op with RoPE and attention, which may fuse the projection and
        # RoPE (qkv_proj's own forward, and so its hooks, are not called); heads: q, then k, then v
        qkv_weight = self.qkv_proj.weight.to(x.dtype)
        mixed = ops.self_attention(x, qkv_weight, cos_sin, self.num_heads, backend=self.backend,
                                   recompute=self.recompute)
        return self.o_proj(mixed) if project else mixed


class SwiGLU(nn.Module):
    """Gated MLP; the inner width is 2/3 * expansion * width rounded up to a multiple of 256. `recompute`: its
    backward recomputes what it can (ops.swiglu_mlp)."""

    def __init__(self, width: int, expansion: float, backend: str, recompute: bool = False):
        super().__init__()
        self.backend, self.recompute = backend, recompute
        inner = -(round(expansion * width * 2 / 3) // -256) * 256
        self.gate_up_proj = CastedLinear(width, 2 * inner, bias=False)
        self.down_proj = CastedLinear(inner, width, bias=False)

    def forward(self, x: torch.Tensor, eps: Optional[float] = None, positions: bool = False) -> torch.Tensor:
        """MLP(x); with `eps`, rms_norm(x + MLP(x)), the post-norm block's second half. With `positions` (and
        `eps`), MLP-t's sublayer: x (B, S, D), this MLP as wide as its positions S, applied and normalised along
        them, in x's layout (the op may skip the official model's transposes)."""
        # the weights go to one op, which chooses the kernels (gate_up_proj's and down_proj's own forwards, and
        # so their hooks, are not called)
        gate_up_weight, down_weight = self.gate_up_proj.weight.to(x.dtype), self.down_proj.weight.to(x.dtype)
        if positions:
            return ops.token_mix(x, gate_up_weight, down_weight, eps, backend=self.backend, recompute=self.recompute)
        if eps is None:
            return ops.swiglu_mlp(x, gate_up_weight, down_weight, backend=self.backend, recompute=self.recompute)
        return ops.swiglu_mlp_add_rms_norm(x, gate_up_weight, down_weight, eps, backend=self.backend,
                                           recompute=self.recompute)


class Block(nn.Module):
    """Post-norm block: token mixing (attention, or MLP-t across positions), then the MLP."""

    def __init__(self, config):
        super().__init__()
        self.eps, self.backend = config.rms_norm_eps, config.backend
        self.use_mlp_t = config.mlp_t
        # recompute "mlp": the token mixer keeps what its backward uses, the channel MLP recomputes
        mixer_recomputes = config.recompute is True
        if config.mlp_t:
            self.mlp_t = SwiGLU(config.full_seq_len, config.expansion, config.backend, mixer_recomputes)
        else:
            self.self_attn = Attention(config.hidden_size, config.num_heads, config.backend, mixer_recomputes)
        self.mlp = SwiGLU(config.hidden_size, config.expansion, config.backend, bool(config.recompute))

    def forward(self, h: torch.Tensor, cos_sin) -> torch.Tensor:
        # each sublayer goes to one op with the residual add and the norm after it, which chooses the kernels
        # (o_proj's own forward, and so its hooks, is not called); MLP-t's token mix normalises across positions
        if self.use_mlp_t:
            h = self.mlp_t(h, eps=self.eps, positions=True)
        else:
            if ops.small_layer_offered(self.backend, h):  # the whole layer as one kernel for one puzzle
                weights = self.weights(h.dtype)
                heads = self.self_attn.num_heads
                if ops.small_layer_takes(h, *weights, cos_sin, heads, self.backend):
                    return ops.small_layer(h, *weights, cos_sin, heads, self.eps, self.backend)
            mixed = self.self_attn(h, cos_sin, project=False)
            h = ops.linear_add_rms_norm(mixed, self.self_attn.o_proj.weight.to(mixed.dtype), h, self.eps,
                                        backend=self.backend)
        return self.mlp(h, eps=self.eps)

    def weights(self, dtype):
        """The attention layer's four weights in `dtype`: qkv, o, gate/up, down."""
        return [m.weight.to(dtype) for m in (self.self_attn.qkv_proj, self.self_attn.o_proj, self.mlp.gate_up_proj,
                                             self.mlp.down_proj)]

    def carried(self, y: torch.Tensor, partials: Optional[torch.Tensor], cos_sin):
        """This attention layer on the carried RMSNorm (trm_fast.ops.carried_norm): y (B, S, D) un-normalised with
        its partial sums of squares (None: y as it is) in, the layer's output the same way out; forward only. The
        norms are never a pass of their own: each residual projection writes y and its partials, and the next GEMM
        applies the row's scale in its epilogue."""
        qkv_w, o_w, gate_up_w, down_w = self.weights(y.dtype)
        heads = self.self_attn.num_heads
        # q and k rotated in RoPE's pair order, which attention does not see
        mixed = ops.rope_attention(ops.linear_rope_sm90(y, qkv_w, *cos_sin, heads, partials, self.eps), None, heads,
                                   self.backend)
        y, partials = ops.linear_residual_sm90(mixed, o_w, y, partials, self.eps)
        h = ops.linear_swiglu_sm90(y, gate_up_w, partials, self.eps)
        return ops.linear_residual_sm90(h, down_w, y, partials, self.eps)


class ReasoningModule(nn.Module):
    """f(h, injection): add the injection once, then apply the layers. With config.recompute, a call that
    carries gradients keeps each sublayer's input alone and its ops recompute the rest in the backward (on a
    GPU, ops.recomputes_in_ops; "mlp": the channel MLP's alone); elsewhere it stores only h and injection and runs
    its layers again."""

    def __init__(self, config, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(Block(config) for _ in range(num_layers))
        self.recompute, self.backend = bool(config.recompute), config.backend

    def checkpoints(self, device) -> bool:
        """Whether a call that carries gradients on `device` is checkpointed whole (recompute, without the ops
        that recompute inside the layers)."""
        return self.recompute and not ops.recomputes_in_ops(self.backend, device)

    def forward(self, h: torch.Tensor, injection: torch.Tensor, cos_sin=None) -> torch.Tensor:
        if torch.is_grad_enabled() and self.checkpoints(h.device):
            # the layers draw no random numbers: no generator state to save (nor to read while a CUDA graph
            # is being captured, which that would forbid)
            return torch.utils.checkpoint.checkpoint(self._run_layers, h, injection, cos_sin, use_reentrant=False,
                                                     preserve_rng_state=False)
        return self._run_layers(h, injection, cos_sin)

    def _run_layers(self, h: torch.Tensor, injection: torch.Tensor, cos_sin) -> torch.Tensor:
        h = h + injection
        if self._carries(h, cos_sin):
            y, partials = h, None
            for layer in self.layers:
                y, partials = layer.carried(y, partials, cos_sin)
            return ops.carried_normalize(y, partials, self.layers[0].eps)
        for layer in self.layers:
            h = layer(h, cos_sin)
        return h

    def _carries(self, h: torch.Tensor, cos_sin) -> bool:
        """Whether the layers run on the carried RMSNorm (Block.carried): attention layers, the chain offered
        (trm_fast.ops.carried_norm.offered) and able to take them, and not one puzzle, whose layers run whole as
        one kernel each (small_layer)."""
        first = self.layers[0]
        if first.use_mlp_t or not ops.carried_offered(self.backend, h, self.parameters()):
            return False
        weights = first.weights(h.dtype)
        heads = first.self_attn.num_heads
        if ops.small_layer_offered(self.backend, h) and ops.small_layer_takes(h, *weights, cos_sin, heads,
                                                                                self.backend):
            return False
        return ops.carried_layer_unsupported(h, *weights, cos_sin, heads) is None
