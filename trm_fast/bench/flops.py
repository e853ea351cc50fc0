"""Analytic FLOP and byte counts of one training step and one ACT step (see bench/NOTES.md).

Counted: every matmul (2 * M * N * K) and attention's two batched matmuls (4 * S^2 * D per layer);
not counted: norms, activations, RoPE, softmax (memory-bound). A backward costs twice its forward,
attention's 2.5 times (its backward recomputes the scores), as torch.utils.flop_counter counts it.
The same formula for every backend.
Matches torch.utils.flop_counter on the official model (e.g. sudoku_attn: 28.58 GFLOP per sequence
and ACT step; 47.77 per sequence and training step).
"""


def _swiglu_inner(width: int, expansion: float) -> int:
    return -(round(expansion * width * 2 / 3) // -256) * 256


def attention_flops(cfg) -> float:
    """Attention's two batched matmuls in one block application on one sequence: 4 S^2 D."""
    return float(4 * cfg.full_seq_len ** 2 * cfg.hidden_size)


def layer_flops(cfg, backward: bool = False) -> float:
    """One block application (or its backward) on one sequence of cfg.full_seq_len positions."""
    s, d = cfg.full_seq_len, cfg.hidden_size
    inner = _swiglu_inner(d, cfg.expansion)
    mlp = 2 * s * d * 2 * inner + 2 * s * inner * d
    if cfg.mlp_t:
        inner_t = _swiglu_inner(s, cfg.expansion)
        mix = 2 * d * s * 2 * inner_t + 2 * d * inner_t * s
        attn = 0
    else:
        mix = 2 * s * d * 3 * d + 2 * s * d * d
        attn = attention_flops(cfg)
    if backward:
        return float(2 * (mix + mlp) + 2.5 * attn)
    return float(mix + mlp + attn)


def _applications(cfg, is_hrm: bool):
    """(layer applications per ACT step, of which carry gradients)."""
    if is_hrm:
        per_step = cfg.H_cycles * (cfg.L_cycles * cfg.L_layers + cfg.H_layers)
        return per_step, cfg.L_layers + cfg.H_layers
    per_step = cfg.H_cycles * (cfg.L_cycles + 1) * cfg.L_layers
    return per_step, (cfg.L_cycles + 1) * cfg.L_layers


def step_flops(cfg, is_hrm: bool, batch: int, train: bool, learns_q_continue: bool) -> float:
    """FLOPs of one ACT step for the whole batch; `train` adds the backward (2x forward) of the
    gradient-carrying applications and, where Q-continue is learned, the target's extra forward."""
    return sum(step_flops_split(cfg, is_hrm, batch, train, learns_q_continue))


def step_flops_split(cfg, is_hrm: bool, batch: int, train: bool, learns_q_continue: bool):
    """step_flops as (forward FLOPs, backward FLOPs): the floor times each part at its own GEMMs' rates."""
    apps, grad_apps = _applications(cfg, is_hrm)
    heads = 2 * cfg.full_seq_len * cfg.hidden_size * cfg.vocab_size + 2 * cfg.hidden_size * 2
    fwd = apps * layer_flops(cfg) + heads
    if not train:
        return batch * fwd, 0.0
    forward = 2 * fwd if learns_q_continue else fwd
    return batch * forward, batch * (grad_apps * layer_flops(cfg, backward=True) + 2 * heads)


def layer_bytes(cfg) -> float:
    """HBM bytes of one block application on one sequence when every matmul, the attention kernel, MLP-t's
    token mix and each fused elementwise kernel (add + RMSNorm, SwiGLU) reads its inputs and writes its output
    once: trm_fast's kernel structure. Weights (L2-resident) and the injection add are not counted."""
    s, d = cfg.full_seq_len, cfg.hidden_size
    inner = _swiglu_inner(d, cfg.expansion)
    # channel MLP: gate/up (in SD, out 2SI), SwiGLU (in 2SI, out SI), down (in SI, out SD), add+norm (3SD)
    elements = 5 * s * d + 6 * s * inner
    if cfg.mlp_t:  # the token mix's one kernel (kernels/token_mix.py): h read, y written, the rest on chip
        elements += 2 * s * d
    else:  # QKV (in SD, out 3SD), attention (in 3SD, out SD), projection (SD, SD), add+norm (3SD)
        elements += 13 * s * d
    return float(elements * _DTYPE_BYTES[cfg.forward_dtype])


_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "float64": 8}
ADAM_BYTES_PER_PARAM = 28  # fp32 read param, grad, m, v; write param, m, v


def step_bytes(cfg, is_hrm: bool, batch: int, train: bool, learns_q_continue: bool, n_params: int) -> float:
    """Bytes of one ACT step for the whole batch, counted like step_flops: a backward moves twice its
    forward; training adds one AdamATan2 pass over the weights."""
    apps, grad_apps = _applications(cfg, is_hrm)
    fwd = apps * layer_bytes(cfg)
    if not train:
        return batch * fwd
    total = fwd + grad_apps * 2 * layer_bytes(cfg) + (fwd if learns_q_continue else 0)
    return batch * total + ADAM_BYTES_PER_PARAM * n_params
