"""What the hardware can do at TRM's own shapes, measured in the same run as the benchmarks:
cuBLAS bf16 GEMM rates at the model's matmul shapes, the attention kernel's rate at the model's
attention shape, and device-to-device copy bandwidth. Shared by bench and profile."""

import torch
import torch.nn.functional as F

from .flops import _swiglu_inner
from .timing import summary, time_unit

BACK_TO_BACK = 50  # calls per timed unit, captured in one CUDA graph: no launch latency, as in the engine


def gemm_shapes(cfg, batch: int):
    """(M, K, N) of every matmul in one block application (each occurs once)."""
    s, d = cfg.full_seq_len, cfg.hidden_size
    inner = _swiglu_inner(d, cfg.expansion)
    m = batch * s
    return [(m, d, 2 * inner), (m, inner, d)] + (token_mix_shapes(cfg, batch) or [(m, d, 3 * d), (m, d, d)])


def token_mix_shapes(cfg, batch: int):
    """(M, K, N) of MLP-t's two matmuls across positions (the official order's: rows of the transposed view), or
    [] without MLP-t."""
    if not cfg.mlp_t:
        return []
    s, d = cfg.full_seq_len, cfg.hidden_size
    inner_t = _swiglu_inner(s, cfg.expansion)
    return [(batch * d, s, 2 * inner_t), (batch * d, inner_t, s)]


def backward_gemm_shapes(cfg, batch: int):
    """(M, K, N) of the matmuls of one block application's backward: per forward (M, K, N), the input's
    gradient (M, N) x (N, K) and the weight's (K, M) x (M, N). Their rates differ from the forward's: MLP-t's
    forward reduces over 97 positions, its weight gradient over every row of the batch."""
    return [shape for m, k, n in gemm_shapes(cfg, batch) for shape in ((m, n, k), (k, m, n))]


def measure_gemm(m: int, k: int, n: int, device, reps: int = 5) -> float:
    """TFLOP/s of a bf16 (M, K) x (K, N) matmul through cuBLAS, in the fastest of the four layouts of its
    operands (row- or column-major each): the model's activations may come in either (MLP-t mixes positions
    on a transposed view), and torch.compile picks the layout of what it materialises. With K or N odd (97)
    one layout's rows are misaligned and several times slower: a floor timed there alone is no floor."""
    def operand(rows, cols, column_major):
        if column_major:
            return torch.randn(cols, rows, device=device, dtype=torch.bfloat16).t()
        return torch.randn(rows, cols, device=device, dtype=torch.bfloat16)

    best_ms = float("inf")
    for a_col in (False, True):
        a = operand(m, k, a_col)
        for b_col in (False, True):
            b = operand(k, n, b_col)
            best_ms = min(best_ms, per_call_ms(lambda: a @ b, device, reps))
            del b
        del a
    return 2 * m * n * k / (best_ms * 1e-3) / 1e12


def per_call_ms(fn, device, reps):
    """Milliseconds per call of `fn` replayed back to back from a CUDA graph. (Timed one launch at a time,
    small shapes measure the host's launch cost instead: the batch-1 floor then came out three times
    above what a captured graph of the whole evaluation takes.)"""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        fn()  # library handles and workspaces, before capture
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(BACK_TO_BACK):
            fn()
    graph.replay()
    return summary(time_unit(graph.replay, device, reps))["ms"] / BACK_TO_BACK


def measure_attention(batch: int, heads: int, seq: int, head_dim: int, device, reps: int = 5) -> float:
    """TFLOP/s (4 * B * H * S^2 * D per call) of PyTorch's fastest SDPA kernel at this shape."""
    q, k, v = (torch.randn(batch, heads, seq, head_dim, device=device, dtype=torch.bfloat16) for _ in range(3))
    ms = per_call_ms(lambda: F.scaled_dot_product_attention(q, k, v), device, reps)
    return 4 * batch * heads * seq * seq * head_dim / (ms * 1e-3) / 1e12


def measure_copy(device, gbytes: float = 2.0, reps: int = 10) -> float:
    """TB/s of a device-to-device copy (bytes read + bytes written)."""
    n = int(gbytes * 1e9) // 2
    src = torch.empty(n, dtype=torch.bfloat16, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    ms = summary(time_unit(lambda: dst.copy_(src), device, reps))["ms"]
    return 2 * n * 2 / (ms * 1e-3) / 1e12


def measure(cfg, batch: int, device, backward: bool = False):
    """Ceilings for this config and batch, and the floor time of one block application; with `backward`,
    that of its backward too (its GEMMs at their own shapes' rates; attention's 2.5x forward FLOPs at the
    forward kernel's rate). MLP-t's forward token mix counts at the best rate of the other GEMMs."""
    def gemm_floor_s(shapes, kind):
        seconds = 0.0
        for m, k, n in shapes:
            tflops = measure_gemm(m, k, n, device)
            gemms.append(dict(kind=kind, M=m, K=k, N=n, tflops=tflops))
            seconds += 2 * m * n * k / (tflops * 1e12)
        return seconds

    gemms = []
    shapes, mix = gemm_shapes(cfg, batch), token_mix_shapes(cfg, batch)
    layer_s = gemm_floor_s(shapes[:len(shapes) - len(mix)], "gemm")  # the token mix's come last
    if mix:
        # MLP-t's token mix runs as one kernel (kernels/token_mix.py) that writes none of what cuBLAS's two GEMMs
        # at these shapes must (the (B D, 2I) activation alone is 805 MB at batch 768), so their rate is no floor
        # for it: its FLOPs count at the fastest rate cuBLAS reaches at the model's other GEMMs
        best = max(g["tflops"] for g in gemms)
        layer_s += sum(2 * m * k * n for m, k, n in mix) / (best * 1e12)
    backward_s = gemm_floor_s(backward_gemm_shapes(cfg, batch), "gemm backward") if backward else None
    result = dict(gemm=gemms, copy_tb_per_s=measure_copy(device))
    if not cfg.mlp_t:
        heads, s = cfg.num_heads, cfg.full_seq_len
        attn = measure_attention(batch, heads, s, cfg.hidden_size // heads, device)
        result["attention_tflops"] = attn
        attn_s = 4 * batch * s * s * cfg.hidden_size / (attn * 1e12)
        layer_s += attn_s
        if backward:
            backward_s += 2.5 * attn_s
    result["layer_floor_ms"] = layer_s * 1e3
    if backward:
        result["layer_backward_floor_ms"] = backward_s * 1e3
    return result
