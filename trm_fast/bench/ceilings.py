"""What the hardware can do at TRM's own shapes, measured in the same run as the benchmarks:
cuBLAS bf16 GEMM rates at the model's matmul shapes, the attention kernel's rate at the model's
attention shape, device-to-device copy bandwidth, and, below the batch at which those shapes fill the GPU,
the latency model's rates (the same shapes at that batch, and a copy within L2). Shared by bench and profile."""

import torch
import torch.nn.functional as F

from .flops import _DTYPE_BYTES, _swiglu_inner, attention_flops
from .timing import summary, time_unit

BACK_TO_BACK = 50  # calls per timed unit, captured in one CUDA graph: no launch latency, as in the engine
# Rows at which every GEMM of the model fills an H100 or H200 with tiles (N = 512 in 128 x 256 tiles: 1,024 of
# them, 7.8 waves of 132 SMs); sudoku_attn's batch 768 has 74,496. Below it the latency model bounds the floor.
FULL_ROWS = 65_536
L2_COPY_BYTES = 8 * 2**20  # read + written by the L2 copy: within any Hopper's 50 MB L2, as a layer's weights are


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


def measure_l2_copy(device, reps: int = 5) -> float:
    """TB/s (bytes read + bytes written) of a copy whose source and destination stay in L2, replayed back to back
    from a CUDA graph: the rate at which a kernel can read weights that an earlier layer left there."""
    n = L2_COPY_BYTES // 4  # bf16 elements in each half
    src = torch.randn(n, dtype=torch.bfloat16, device=device)
    dst = torch.empty_like(src)
    ms = per_call_ms(lambda: dst.copy_(src), device, reps)
    return L2_COPY_BYTES / (ms * 1e-3) / 1e12


def full_batch(cfg, batch: int) -> int:
    """The smallest batch, at least `batch`, whose rows fill the GPU with every GEMM's tiles (FULL_ROWS)."""
    return max(batch, -(-FULL_ROWS // cfg.full_seq_len))


def measure(cfg, batch: int, device, backward: bool = False):
    """Ceilings for this config and batch, and the floor time of one block application; with `backward`,
    that of its backward too (its GEMMs at their own shapes' rates; attention's 2.5x forward FLOPs at the
    forward kernel's rate). MLP-t's forward token mix counts at the best rate of the other GEMMs.

    The forward's floor is the lower of two. The library floor: each GEMM at cuBLAS's rate at its own shape,
    attention at SDPA's, each a kernel of its own. Below FULL_ROWS a persistent or fused kernel can beat that, so
    the latency model bounds it too: the layer's weights read once from L2, or its FLOPs at the rates its GEMMs'
    (K, N) and SDPA reach where the rows fill the GPU, whichever takes longer.
    From FULL_ROWS rows on the two are the same rates and the library floor stands alone. (Training runs at
    batches that fill the GPU: its backward keeps the library floor.)"""
    gemms = []
    library_s = sum(seconds for _, _, seconds in _forward_gemms(cfg, batch, batch, device, gemms, "gemm"))
    backward_s = None
    for m, k, n in backward_gemm_shapes(cfg, batch) if backward else []:
        tflops = measure_gemm(m, k, n, device)
        gemms.append(dict(kind="gemm backward", M=m, K=k, N=n, tflops=tflops))
        backward_s = (backward_s or 0.0) + 2 * m * k * n / (tflops * 1e12)
    result = dict(gemm=gemms, copy_tb_per_s=measure_copy(device))
    if not cfg.mlp_t:
        heads, s = cfg.num_heads, cfg.full_seq_len
        attn = measure_attention(batch, heads, s, cfg.hidden_size // heads, device)
        result["attention_tflops"] = attn
        attn_s = batch * attention_flops(cfg) / (attn * 1e12)
        library_s += attn_s
        if backward:
            backward_s += 2.5 * attn_s
    result["layer_floor_ms"] = result["layer_library_floor_ms"] = library_s * 1e3
    full = full_batch(cfg, batch)
    if full > batch:
        latency_s = _latency_s(cfg, batch, full, device, gemms, result)
        result["layer_latency_floor_ms"] = latency_s * 1e3
        result["layer_floor_ms"] = min(library_s, latency_s) * 1e3
    if backward:
        result["layer_backward_floor_ms"] = backward_s * 1e3
    return result


def _forward_gemms(cfg, batch: int, rate_batch: int, device, gemms: list, kind: str):
    """(K, N, seconds) of each of one block application's forward GEMMs at `batch`, its FLOPs at cuBLAS's rate
    at `rate_batch`'s shape (each rate appended to `gemms`). MLP-t's token mix runs as one kernel
    (kernels/token_mix.py) that writes none of what cuBLAS's two GEMMs at its shapes must (the (B D, 2I)
    activation alone is 805 MB at batch 768), so their rate is no floor for it: its FLOPs count at the fastest
    rate cuBLAS reaches at the model's other GEMMs."""
    scale = batch / rate_batch  # the rows at `batch` over those at `rate_batch`
    shapes, mix = gemm_shapes(cfg, rate_batch), token_mix_shapes(cfg, rate_batch)
    timed = []
    for m, k, n in shapes[:len(shapes) - len(mix)]:  # the token mix's come last
        tflops = measure_gemm(m, k, n, device)
        gemms.append(dict(kind=kind, M=m, K=k, N=n, tflops=tflops))
        timed.append((k, n, 2 * m * k * n * scale / (tflops * 1e12), tflops))
    best = max(tflops for *_, tflops in timed)
    return [(k, n, seconds) for k, n, seconds, _ in timed] + \
        [(k, n, 2 * m * k * n * scale / (best * 1e12)) for m, k, n in mix]


def _latency_s(cfg, batch: int, full: int, device, gemms: list, result: dict) -> float:
    """The latency model's seconds for one block application at `batch`: the layer's weights read once from L2,
    or its FLOPs at the rates of `full`'s shapes (which fill the GPU), whichever takes longer (a kernel may read
    the next GEMM's weights during this one's math, so the two overlap across the layer). Its rates go into
    `gemms` (kind "gemm, latency model") and `result`."""
    weights_bytes, compute_s = 0, 0.0
    for k, n, seconds in _forward_gemms(cfg, batch, full, device, gemms, "gemm, latency model"):
        weights_bytes += k * n * _DTYPE_BYTES[cfg.forward_dtype]
        compute_s += seconds
    if not cfg.mlp_t:
        heads, s = cfg.num_heads, cfg.full_seq_len
        attn = measure_attention(full, heads, s, cfg.hidden_size // heads, device)
        result["attention_tflops_latency_model"] = attn
        compute_s += batch * attention_flops(cfg) / (attn * 1e12)
    result["l2_copy_tb_per_s"] = measure_l2_copy(device)
    return max(weights_bytes / (result["l2_copy_tb_per_s"] * 1e12), compute_s)
