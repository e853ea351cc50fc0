"""Micro-benchmarks: each fused kernel against its plain-PyTorch reference, forward and backward, in bf16
at sudoku_attn's shape (batch 768 x 97 positions, hidden 512, SwiGLU width 1536; attention also at ARC's
916 positions, batch 64). Times are GPU times.
Run on a GPU machine from the repository root, trm_fast installed: `pytest bench/ --benchmark-only`.
extra_info's `bytes` is the least a call must move: divide it by a row's mean time for GB/s."""

import functools

import pytest
import torch

from trm_fast.models.layers import RotaryEmbedding
from trm_fast.ops import add_rms_norm, swiglu
from trm_fast.ops.attention import rope_attention_fused, rope_attention_reference
from trm_fast.ops.linear_swiglu import linear_swiglu_reference
from trm_fast.ops.rms_norm import add_rms_norm_fused, add_rms_norm_reference

M = 768 * 97  # rows: every position of every sequence in the batch
D = 512
INNER = 1536
EPS = 1e-5
HEADS, HEAD_DIM = 8, 64
BF16 = 2  # bytes per element
IMPLS = ("fused", "reference")


def _randn(*shape, grad=False):
    return torch.randn(*shape, device="cuda", dtype=torch.bfloat16, requires_grad=grad)


# Each case returns ({impl: call}, bytes, shape). The calls return their results, so the two
# implementations can be compared before either is timed.

def _add_rms_norm_forward():
    x, delta = _randn(M, D), _randn(M, D)
    calls = {"fused": lambda: add_rms_norm_fused(x, delta, EPS)[0],
             "reference": lambda: add_rms_norm_reference(x, delta, EPS)}
    return calls, 3 * M * D * BF16, (M, D)


def _add_rms_norm_backward():
    x, delta, dy = _randn(M, D, grad=True), _randn(M, D, grad=True), _randn(M, D)

    def grads(impl):
        # the graph is built once, here, so that the timed call runs the backward alone;
        # retain_graph lets every round walk the same graph again
        y = add_rms_norm(x, delta, EPS, backend=impl)
        return lambda: torch.autograd.grad(y, (x, delta), dy, retain_graph=True)

    return {impl: grads(impl) for impl in IMPLS}, 3 * M * D * BF16, (M, D)


def _swiglu_forward():
    gate_up = _randn(M, 2 * INNER)
    calls = {impl: functools.partial(swiglu, gate_up, backend=impl) for impl in IMPLS}
    return calls, 3 * M * INNER * BF16, (M, 2 * INNER)


def _swiglu_backward():
    gate_up, dh = _randn(M, 2 * INNER, grad=True), _randn(M, INNER)

    def grads(impl):
        h = swiglu(gate_up, backend=impl)
        return lambda: torch.autograd.grad(h, gate_up, dh, retain_graph=True)

    return {impl: grads(impl) for impl in IMPLS}, 5 * M * INNER * BF16, (M, 2 * INNER)


def _rope_attention_forward(batch, seq, tma=None, rope=True):
    """The model's attention: qkv (B, S, 3H, D) from the projection and the RoPE tables in, (B, S, H*D) out.
    The reference is what the compiled model ran before the kernel: inductor's RoPE pass, then SDPA (so it
    is compiled here, unlike the other references; it compiles in the comparison, before any timing).
    `tma`: one kernel (True: the persistent TMA one), None: the op's choice. `rope=False`: no tables (q and k
    arrive rotated, as from the QKV + RoPE GEMM), against SDPA alone."""
    from trm_fast.kernels.attention import rope_attention_fwd

    qkv = _randn(batch, seq, 3 * HEADS, HEAD_DIM)
    cos, sin = (t.cuda() for t in RotaryEmbedding(HEAD_DIM, seq, 10000.0)()) if rope else (None, None)
    reference = torch.compile(rope_attention_reference, dynamic=False)
    calls = {"fused": (lambda: rope_attention_fused(qkv, cos, sin, HEADS)) if tma is None else
             (lambda: rope_attention_fwd(qkv, cos, sin, HEADS, tma=tma)),
             "reference": lambda: reference(qkv, cos, sin, HEADS)}
    # the floor: qkv read and the output written once, plus the two fp32 tables
    nbytes = 4 * batch * seq * HEADS * HEAD_DIM * BF16 + (2 * seq * HEAD_DIM * 4 if rope else 0)
    return calls, nbytes, (batch, seq, 3 * HEADS, HEAD_DIM)


def _linear_swiglu_forward(batch, seq, k, n, transposed=False, tma=None, sm90=False):
    """The MLP's gate/up projection and SwiGLU (MLP-t's on the transposed activation). The reference is what
    the compiled model runs without the kernel: cuBLAS's GEMM, then inductor's SwiGLU kernel (compiled here,
    before any timing). `tma`: which Triton kernel (None: the persistent TMA one where it runs, as the op
    does); `sm90`: Hopper's CUTLASS op (linear_swiglu_sm90) instead (bench/gemm_tiles.py --sm90-only times its
    GEMM alone too)."""
    from trm_fast.kernels.linear_swiglu import linear_swiglu
    from trm_fast.ops.linear_swiglu import linear_swiglu_sm90

    x = _randn(batch, k, seq).transpose(1, 2) if transposed else _randn(batch, seq, k)
    w = _randn(2 * n, k) * k**-0.5
    reference = torch.compile(linear_swiglu_reference, dynamic=False)
    fused = (lambda: linear_swiglu_sm90(x, w)) if sm90 else (lambda: linear_swiglu(x, w, tma=tma))
    calls = {"fused": fused, "reference": lambda: reference(x, w)}
    return calls, (batch * seq * (k + n) + 2 * n * k) * BF16, (batch, seq, k, n)


def _gemm_plain_sm90(batch, seq, k, n, config=0):
    """CUTLASS's plain GEMM (csrc/sm90/gemm_plain.h, its own TMA-store epilogue, nothing fused) in shape `config`
    against cuBLAS's, at the gate/up projection's (M, 2N): the yardstick for the fused epilogues' shapes, which
    share its mainloops (for Nsight Compute: `fused_bench.sh COMMIT ncu` with NCU_CASES naming both)."""
    from trm_fast._native import gemm_plain_sm90

    x, w = _randn(batch * seq, k), _randn(2 * n, k) * k**-0.5
    m = x.shape[0]
    out = torch.empty(m, 2 * n, device="cuda", dtype=torch.bfloat16)
    calls = {"fused": lambda: gemm_plain_sm90(config, x, w, out), "reference": lambda: torch.nn.functional.linear(x, w)}
    return calls, (m * (k + 2 * n) + 2 * n * k) * BF16, (m, k, 2 * n)


def _linear_rope_forward(batch, seq, sm90=False):
    """The attention's QKV projection with RoPE: x (B, S, 512) in, q and k rotated and v out. The reference is
    what the compiled model runs without the kernel: cuBLAS's GEMM, then inductor's RoPE kernel writing q and
    k (v stays a view), compiled here before any timing. `sm90`: Hopper's CUTLASS GEMM with RoPE in its
    epilogue (op linear_rope_sm90) instead, whose q and k come in RoPE's pair order: it is checked
    against the reference's result reordered ("expected", compiled apart) and timed against the reference as
    the model runs it. (Timing a reference that writes the pair order itself is unfair: with that transposition
    it took ~900 us on an H100, ..._2c85212_sm90_microbench_sm90.json, where without it it took 335-447 us on
    an H200 in earlier runs, ..._8e8edbf_microbench.json.)"""
    from trm_fast.kernels.linear_rope import linear_rope
    from trm_fast.ops.linear_rope import linear_rope_sm90
    from trm_fast.ops.rope import rope_reference

    x, w = _randn(batch, seq, D), _randn(3 * HEADS * HEAD_DIM, D) * D**-0.5
    cos, sin = (t.cuda() for t in RotaryEmbedding(HEAD_DIM, seq, 10000.0)())

    def unfused(x, w, cos, sin):
        q, k, v = torch.nn.functional.linear(x, w).view(batch, seq, 3 * HEADS, HEAD_DIM).split(HEADS, dim=2)
        return (*rope_reference(q, k, cos, sin), v)

    reference = torch.compile(unfused, dynamic=False)
    kernel = linear_rope_sm90 if sm90 else linear_rope
    calls = {"fused": lambda: kernel(x, w, cos, sin, HEADS).split(HEADS, dim=2),
             "reference": lambda: reference(x, w, cos, sin)}
    if sm90:  # each head's dims j and j + D/2 side by side
        def expected():
            q, k, v = reference(x, w, cos, sin)
            return (*(t.unflatten(-1, (2, HEAD_DIM // 2)).transpose(-1, -2).flatten(-2) for t in (q, k)), v)

        calls["expected"] = expected
    return calls, (batch * seq * (D + 3 * HEADS * HEAD_DIM) + 3 * HEADS * HEAD_DIM * D) * BF16, (batch, seq, D)


def _linear_add_rms_norm_forward(batch, seq, k):
    """A sublayer's closing projection with the residual add and RMSNorm: x (B, S, K), the weight (512, K), the
    residual (B, S, 512). The reference is what the compiled model runs: cuBLAS's GEMM, then inductor's add +
    RMSNorm (compiled here, before any timing)."""
    from trm_fast.kernels.linear_add_rms_norm import linear_add_rms_norm
    from trm_fast.ops.linear_add_rms_norm import linear_add_rms_norm_reference

    x, w, residual = _randn(batch, seq, k), _randn(D, k) * k**-0.5, _randn(batch, seq, D)
    reference = torch.compile(linear_add_rms_norm_reference, dynamic=False)
    calls = {"fused": lambda: linear_add_rms_norm(x, w, residual, 1e-5),
             "reference": lambda: reference(x, w, residual, 1e-5)}
    return calls, (batch * seq * (k + 2 * D) + D * k) * BF16, (batch, seq, k, D)


def _attention_backward(batch, seq):
    """The training attention's backward into the QKV projection's gradient: the kept rotated projection, the
    output, its logsumexp and dout in, dqkv (B, S, 3H, D) out with dq and dk rotated back. The reference is what
    kept_attention runs without the kernel: PyTorch's attention backward (cuDNN's on Hopper), then the packing
    pass (kernels/rope.rope_pack_backward)."""
    from trm_fast.ops.recomputed_attention import _attention_forward, _heads, _packed_grads

    qkv, dout = _randn(batch, seq, 3 * HEADS, HEAD_DIM), _randn(batch, seq, HEADS * HEAD_DIM)
    cos, sin = (t.cuda() for t in RotaryEmbedding(HEAD_DIM, seq, 10000.0)())
    out, lse = _attention_forward(*_heads(qkv, HEADS))
    out = out.transpose(1, 2).reshape(batch, seq, -1)
    calls = {impl: functools.partial(_packed_grads, dout, qkv, out, lse, cos, sin, HEADS, impl == "fused")
             for impl in IMPLS}
    # the floor's bytes: q, k, v, out and dout read, dq, dk and dv written
    return calls, 8 * batch * seq * HEADS * HEAD_DIM * BF16, (batch, seq, HEADS, HEAD_DIM)


def _down_swiglu_backward(batch, seq):
    """The MLP's backward through the down projection and SwiGLU (kernels/down_swiglu_backward.py): dy (M, D), the
    down weight (D, I) and the forward's gate_up (M, 2I) in, dgate_up and h out. The reference is the pair it
    replaces in trm_fast.ops.swiglu_linear's backward: cuBLAS's dh = dy W, then SwiGLU's backward kernel writing
    h over dh."""
    from trm_fast.kernels.down_swiglu_backward import down_swiglu_backward
    from trm_fast.ops.swiglu_linear import down_swiglu_grads

    m = batch * seq
    dy, w, gate_up = _randn(m, D), _randn(D, INNER) * D**-0.5, _randn(m, 2 * INNER)
    calls = {"fused": lambda: down_swiglu_backward(dy, w, gate_up),
             "reference": lambda: down_swiglu_grads(dy, w, gate_up, False)}
    # the floor's bytes: gate_up read, dgate_up and h written (dy and the weight, 13 and 1.5 MB, apart)
    return calls, 5 * m * INNER * BF16, (m, D, INNER)


def _token_mix_forward(batch):
    """MLP-t's token mix (sudoku_mlpt: 97 positions, hidden 512, inner width 512): h (B, S, D) and the two weights
    in, rms_norm over positions of h + MLP(h) out. The reference is what the compiled model ran before the
    kernels: the official transposed order, cuBLAS's GEMMs and inductor's SwiGLU and add + RMSNorm (compiled
    here, before any timing)."""
    from trm_fast.kernels.token_mix import token_mix
    from trm_fast.ops.token_mix import token_mix_reference

    seq, inner = 97, 512
    h, w_gu, w_down = _randn(batch, seq, D), _randn(2 * inner, seq) * seq**-0.5, _randn(seq, inner) * inner**-0.5
    reference = torch.compile(token_mix_reference, dynamic=False)
    calls = {"fused": lambda: token_mix(h, w_gu, w_down, EPS)[0], "reference": lambda: reference(h, w_gu, w_down, EPS)}
    # the floor's bytes: h read twice and y written, the SwiGLU activation written and read once
    return calls, batch * D * (3 * seq + 2 * inner) * BF16, (batch, seq, D, inner)


CASES = {
    "add_rms_norm forward": _add_rms_norm_forward,
    "add_rms_norm backward": _add_rms_norm_backward,
    "swiglu forward": _swiglu_forward,
    "swiglu backward": _swiglu_backward,
    "rope_attention forward": functools.partial(_rope_attention_forward, 768, 97),  # sudoku_attn
    "rope_attention forward tma": functools.partial(_rope_attention_forward, 768, 97, tma=True),  # persistent
    "rope_attention forward tma no rope": functools.partial(_rope_attention_forward, 768, 97, tma=True, rope=False),
    "rope_attention forward arc": functools.partial(_rope_attention_forward, 64, 916),  # arc_attn, batch 64
    "linear_swiglu forward": functools.partial(_linear_swiglu_forward, 768, 97, D, INNER),  # sudoku_attn's MLP
    "linear_swiglu forward pointer": functools.partial(_linear_swiglu_forward, 768, 97, D, INNER, tma=False),
    "linear_swiglu forward b1": functools.partial(_linear_swiglu_forward, 1, 97, D, INNER),
    "linear_swiglu forward arc": functools.partial(_linear_swiglu_forward, 192, 916, D, INNER),
    "linear_swiglu forward mlp_t": functools.partial(_linear_swiglu_forward, 768, D, 97, 512, transposed=True),
    "linear_swiglu forward sm90": functools.partial(_linear_swiglu_forward, 768, 97, D, INNER, sm90=True),
    "linear_swiglu forward sm90 b1": functools.partial(_linear_swiglu_forward, 1, 97, D, INNER, sm90=True),
    "linear_swiglu forward sm90 arc": functools.partial(_linear_swiglu_forward, 192, 916, D, INNER, sm90=True),
    "gemm_plain sm90": functools.partial(_gemm_plain_sm90, 768, 97, D, INNER),  # ping-pong 128x128: the SwiGLU GEMM
    "linear_add_rms_norm forward": functools.partial(_linear_add_rms_norm_forward, 768, 97, D),  # o projection
    "linear_add_rms_norm forward down": functools.partial(_linear_add_rms_norm_forward, 768, 97, INNER),
    "linear_add_rms_norm forward b1": functools.partial(_linear_add_rms_norm_forward, 1, 97, INNER),
    "linear_rope forward": functools.partial(_linear_rope_forward, 768, 97),  # sudoku_attn's QKV
    "linear_rope forward b1": functools.partial(_linear_rope_forward, 1, 97),
    "linear_rope forward arc": functools.partial(_linear_rope_forward, 192, 916),
    "linear_rope forward sm90": functools.partial(_linear_rope_forward, 768, 97, sm90=True),
    "linear_rope forward sm90 b1": functools.partial(_linear_rope_forward, 1, 97, sm90=True),
    "linear_rope forward sm90 arc": functools.partial(_linear_rope_forward, 192, 916, sm90=True),
    "attention backward": functools.partial(_attention_backward, 768, 97),  # sudoku_attn's training step
    "attention backward hrm": functools.partial(_attention_backward, 768, 82),
    "down_swiglu backward": functools.partial(_down_swiglu_backward, 768, 97),  # sudoku_attn's training step
    "down_swiglu backward arc": functools.partial(_down_swiglu_backward, 192, 916),
    "token_mix forward": functools.partial(_token_mix_forward, 768),  # sudoku_mlpt
    "token_mix forward b1": functools.partial(_token_mix_forward, 1),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kernel", list(CASES), ids=[k.replace(" ", "_") for k in CASES])
def test_kernel(benchmark, kernel, impl):
    torch.manual_seed(0)
    calls, nbytes, shape = CASES[kernel]()
    # a fast wrong kernel is no result: the two must agree (to bf16 rounding) before anything is timed
    # ("expected": the reference's result in the kernel's layout, where the two differ)
    torch.testing.assert_close(calls["fused"](), calls.get("expected", calls["reference"])(), atol=2e-2, rtol=2e-2)
    call = calls[impl]

    def timed():
        call()
        torch.cuda.synchronize()  # launches return before the GPU is done

    timed()  # Triton's JIT and the allocator's first growth stay out of the rounds
    benchmark.group = kernel
    benchmark.extra_info.update(bytes=nbytes, shape=list(shape))
    benchmark(timed)
