"""Every tile of the persistent gate/up + SwiGLU kernel (kernels/linear_swiglu.py) timed alone at one shape,
against cuBLAS's GEMM alone and cuBLAS + inductor's SwiGLU: what the autotuner chooses from, and how far the
best tile is from cuBLAS. One line per config, and JSON lines with --json:

    python bench/gemm_tiles.py --batch 768 --seq 97            # sudoku_attn's MLP
    python bench/gemm_tiles.py --batch 192 --seq 916 --json out.jsonl

On Hopper, with trm_fast._C built with CUTLASS, also the CUTLASS path (csrc/sm90/gemm_swiglu.h): its GEMM over
the grouped weight alone, then as the op runs it, gathering the weight per call; its training form (gate_up
written too) against cuBLAS's GEMM and SwiGLU's kernel; and cuBLAS's GEMM of one half alone (N columns). Each
shape of the QKV + RoPE kernel (csrc/sm90/gemm_rope.h) on the (M, N) half as a plain GEMM, then with RoPE. And
CUTLASS's plain GEMM with its own epilogue (csrc/sm90/gemm_plain.h) in each mainloop shape, beside cuBLAS.
--sm90-only skips the Triton tiles.

Each config's output is checked against the unfused reference before it is timed (a fast wrong tile is no
result). Times are Triton's do_bench medians (ms), converted to TFLOP/s over the GEMM's 4 M N K FLOPs (the
half GEMMs' rows over their own 2 M N K).
"""

import argparse
import json
import sys

import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=768)
    parser.add_argument("--seq", type=int, default=97)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--inner", type=int, default=1536)
    parser.add_argument("--commit", default="unknown")
    parser.add_argument("--json", help="append one JSON line per row to this file")
    parser.add_argument("--sm90-only", action="store_true", help="time the CUTLASS shapes alone")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("needs a CUDA device; none is visible")
    import triton
    from triton.tools.tensor_descriptor import TensorDescriptor

    from trm_fast.kernels import linear_swiglu as ls
    from trm_fast.kernels import tma_gemm
    from trm_fast.ops.swiglu import swiglu_reference

    torch.manual_seed(0)
    m, k, n = args.batch * args.seq, args.hidden, args.inner
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(2 * n, k, device="cuda", dtype=torch.bfloat16) * k**-0.5
    out = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
    flops = 4 * m * n * k
    gate_up = torch.nn.functional.linear(x, w)
    expected = swiglu_reference(gate_up)
    unfused = torch.compile(lambda x, w: swiglu_reference(torch.nn.functional.linear(x, w)), dynamic=False)

    rows = []

    def report(name, ms, half=False, shape=None, **extra):
        # shape (M, K, N) of another GEMM than the gate/up one: its own 2 M K N FLOPs
        work = flops / (2 if half else 1) if shape is None else 2 * shape[0] * shape[1] * shape[2]
        row = {"commit": args.commit, "shape": list(shape or (m, k, n)), "name": name, "ms": ms,
               "tflops": work / ms / 1e9, **extra}
        rows.append(row)
        print(f"{name:<42} {ms * 1e3:9.1f} us {row['tflops']:7.1f} TFLOP/s", flush=True)

    report("cuBLAS GEMM alone (no SwiGLU)", triton.testing.do_bench(lambda: torch.nn.functional.linear(x, w)))
    report("cuBLAS + inductor SwiGLU", triton.testing.do_bench(lambda: unfused(x, w)))
    sm90(x, w, expected, report, triton.testing.do_bench)
    rope_sm90(x, w[:n], args.seq, report, triton.testing.do_bench)
    residual_sm90(x, w, report, triton.testing.do_bench)
    kernel = ls._linear_swiglu_tma_kernel
    unset = [1, 1]
    descs = {"x_desc": TensorDescriptor.from_tensor(x, unset), "w_desc": TensorDescriptor.from_tensor(w, unset),
             "y_desc": TensorDescriptor.from_tensor(out, unset)}
    for config in kernel.configs if not args.sm90_only else []:
        meta = config.kwargs
        tile = (f"{meta['BLOCK_M']}x{meta['BLOCK_N']}x{meta['BLOCK_K']} w{config.num_warps} s{config.num_stages} "
                f"ctas{meta['CTAS']}")
        if not tma_gemm.fits_shared_memory(config, x.element_size(), b_blocks=2):
            print(f"{tile:<42} does not fit shared memory", flush=True)
            continue
        config.pre_hook({**descs, **meta})

        def call():
            launch = tma_gemm.grid(x.device, tma_gemm.tiles(m, n))
            kernel.fn[launch](*descs.values(), m, n, k, x.element_size(), INPUT_PRECISION="tf32", **meta,
                              num_warps=config.num_warps, num_stages=config.num_stages)

        try:
            out.fill_(float("nan"))
            call()
            torch.cuda.synchronize()
        except Exception as error:  # a tile the compiler or the launch refuses: say so, try the next
            print(f"{tile:<42} failed: {type(error).__name__}: {str(error).splitlines()[0][:80]}", flush=True)
            continue
        if not torch.allclose(out.float(), expected.float(), atol=2e-2, rtol=2e-2):
            print(f"{tile:<42} WRONG: max error {(out.float() - expected.float()).abs().max().item():.3g}")
            continue
        report(tile, triton.testing.do_bench(call))
    if args.json:
        with open(args.json, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return 0


def sm90(x, w, expected, report, do_bench):
    """The CUTLASS path's rows (see the module's docstring), where this GPU and build have it."""
    from trm_fast import _native
    from trm_fast.ops.linear_swiglu import grouped_pairs, linear_swiglu_sm90, unsupported_sm90

    why = unsupported_sm90(x, w)
    if why is not None:
        print(f"no CUTLASS rows: {why}", flush=True)
        return
    m, k = x.shape
    n = w.shape[0] // 2
    up = w[n:]
    out = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
    report("cuBLAS GEMM of one half (N columns)", do_bench(lambda: torch.nn.functional.linear(x, up)), half=True)
    ext = _native.extension()
    plain_sm90(ext, x, w, up, report, do_bench)
    keep_sm90(x, w, report, do_bench)
    groups = grouped_pairs(w)
    ws = torch.empty(ext.gemm_swiglu_sm90_workspace(m, n, k), dtype=torch.uint8, device="cuda")

    def alone():
        ext.gemm_swiglu_sm90(x.data_ptr(), k, groups.data_ptr(), k, out.data_ptr(), n, 0, 0.0, m, n, k, ws.data_ptr(),
                             x.device.index, _native.stream(x))

    out.fill_(float("nan"))
    alone()
    both = linear_swiglu_sm90(x, w)
    error = max((t.float() - expected.float()).abs().max().item() for t in (out, both))
    if not error <= 2e-2 + 2e-2 * expected.float().abs().max().item():
        print(f"CUTLASS gate/up + SwiGLU WRONG: max error {error:.3g}", flush=True)
        return
    report("CUTLASS gate/up + SwiGLU: one GEMM over grouped pairs", do_bench(alone))
    report("CUTLASS gate/up + SwiGLU: the op (weight gathered per call)", do_bench(lambda: linear_swiglu_sm90(x, w)))
    # x as the carried RMSNorm's y (trm_fast.ops.carried_norm): its rows' scale applied before SwiGLU
    from trm_fast.ops.carried_norm import carried_scale_reference, partials_reference
    from trm_fast.ops.linear_swiglu import launch_sm90
    from trm_fast.ops.swiglu import swiglu_reference

    partials = partials_reference(x)
    scale = carried_scale_reference(partials, k, 1e-5)[:, None]
    scaled = swiglu_reference(torch.nn.functional.linear((x.float() * scale).bfloat16(), w))

    def carried():
        launch_sm90(x, w, out, partials, 1e-5)

    if right("CUTLASS gate/up + SwiGLU, carried scale", carried, out, scaled):
        report("CUTLASS gate/up + SwiGLU: the op, carried scale (x's partials read)", do_bench(carried))


def keep_sm90(x, w, report, do_bench):
    """The training form (gate_up kept for the backward, h for the down projection): the gradient cycle's pair,
    cuBLAS's GEMM and SwiGLU's Triton kernel, against the CUTLASS GEMM writing both (its weight gathered per call)."""
    from trm_fast.kernels.swiglu import swiglu_fwd
    from trm_fast.ops.linear_swiglu import swiglu_keep_sm90

    gate_up, h = swiglu_keep_sm90(x, w)
    want = torch.nn.functional.linear(x, w)
    if not (torch.equal(gate_up, want) or (gate_up.float() - want.float()).abs().max().item() <= 2e-2):
        print("CUTLASS keep WRONG: gate_up", flush=True)
        return
    pair = lambda: swiglu_fwd(torch.nn.functional.linear(x, w))  # noqa: E731
    report("training pair: cuBLAS gate_up + SwiGLU kernel", do_bench(pair))
    report("CUTLASS keep: gate_up and h, the op", do_bench(lambda: swiglu_keep_sm90(x, w)))


def right(name, call, out, expected):
    """Whether `call`, writing into a NaN-filled `out`, leaves it within bf16's error of `expected`; says so where
    not (a fast wrong kernel is no result)."""
    out.fill_(float("nan"))
    call()
    error = (out.float() - expected.float()).abs().max().item()
    if error <= 2e-2 + 2e-2 * expected.float().abs().max().item():
        return True
    print(f"{name}: WRONG, max error {error:.3g}", flush=True)
    return False


def plain_sm90(ext, x, w, up, report, do_bench):
    """CUTLASS's plain GEMM (csrc/sm90/gemm_plain.h: its own TMA-store epilogue, nothing fused) in each mainloop
    shape, on the whole (M, 2N) weight and on one half: against the cuBLAS rows of the same GEMMs, the pace of the
    mainloop apart from this folder's fused epilogues."""
    from trm_fast import _native

    for weight, half, what in ((w, False, "(M, 2N)"), (up, True, "one half (N columns)")):
        expected = torch.nn.functional.linear(x, weight)
        out = torch.empty(x.shape[0], weight.shape[0], device="cuda", dtype=torch.bfloat16)
        for config in range(ext.PLAIN_SM90_CONFIGS):
            def call():
                _native.gemm_plain_sm90(config, x, weight, out)

            if right(f"CUTLASS plain GEMM config {config}, {what}", call, out, expected):
                report(f"CUTLASS plain GEMM config {config}: {what}", do_bench(call), half=half,
                       plain_sm90_config=config)


def rope_sm90(x, w, seq, report, do_bench, heads=8):
    """The CUTLASS QKV + RoPE kernel (csrc/sm90/gemm_rope.h) on the same x with an (N, K) weight read as the QKV
    projection's (N = 3 H D): first as a plain GEMM (nothing turned: its pairs epilogue stores the accumulators
    as they are), then with q and k turned, so that the mainloop's and the rotation's costs show apart, then as
    the op (the weight gathered per call); against "cuBLAS GEMM of one half" above, the same (M, N) GEMM."""
    from trm_fast import _native
    from trm_fast.models.layers import RotaryEmbedding
    from trm_fast.ops import linear_rope

    m, k = x.shape
    n = w.shape[0]
    d = n // (3 * heads)
    cos, sin = (t.cuda() for t in RotaryEmbedding(d, seq, 10000.0)())
    why = linear_rope.unsupported_sm90(x.view(m // seq, seq, k), w, cos, sin, heads)
    if why is not None:
        print(f"no CUTLASS RoPE rows: {why}", flush=True)
        return
    ext = _native.extension()
    pairs = linear_rope.rope_pair_order(w, heads, dim=0)
    plain = torch.nn.functional.linear(x, pairs)
    turned = linear_rope.linear_rope_pairs_reference(x.view(m // seq, seq, k), w, cos, sin, heads).view(m, n)
    out = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
    ws = torch.empty(ext.gemm_rope_sm90_workspace(m, n, k), dtype=torch.uint8, device="cuda")
    grouped = linear_rope.sm90_weight(w, heads)
    for rotated, expected, what in ((0, plain, "plain GEMM (nothing turned)"), (2 * heads * d, turned, "q, k turned")):
        def call():
            ext.gemm_rope_sm90(x.data_ptr(), k, grouped.data_ptr(), k, out.data_ptr(), n, cos.data_ptr(),
                               sin.data_ptr(), seq, d, rotated, 0, 0.0, m, n, k, ws.data_ptr(), x.device.index,
                               _native.stream(x))

        if right(f"CUTLASS RoPE, {what}", call, out, expected):
            report(f"CUTLASS RoPE: {what}", do_bench(call), half=True)
    # x as the carried RMSNorm's y (trm_fast.ops.carried_norm): its rows' scale applied in the epilogue
    from trm_fast.ops.carried_norm import carried_scale_reference, partials_reference

    partials = partials_reference(x)
    scaled = turned * carried_scale_reference(partials, k, 1e-5)[:, None].to(turned.dtype)

    def carried():
        linear_rope.launch_sm90(x, pairs, out, cos, sin, seq, heads, partials, 1e-5)

    if right("CUTLASS RoPE, carried scale", carried, out, scaled):
        report("CUTLASS RoPE: q, k turned, carried scale (x's partials read)", do_bench(carried), half=True)
    x3 = x.view(m // seq, seq, k)
    report("CUTLASS RoPE: the op (weight gathered per call)",
           do_bench(lambda: linear_rope.linear_rope_sm90(x3, w, cos, sin, heads)), half=True)


def residual_sm90(x, w, report, do_bench, eps=1e-5):
    """The residual projection that carries the RMSNorm (csrc/sm90/gemm_residual.h) at the o projection's shape
    (K = hidden) and the down projection's (K = the MLP's inner width), N = hidden: against cuBLAS's GEMM alone
    and cuBLAS + inductor's add + RMSNorm (what the block runs today), then the kernel with a plain residual and
    with a carried one (r's partials read, its scale applied)."""
    from trm_fast.ops import carried_norm
    from trm_fast.ops.rms_norm import rms_norm_reference

    m, hidden = x.shape
    inner = w.shape[0] // 2
    unfused = torch.compile(lambda x, w, r: rms_norm_reference(r + torch.nn.functional.linear(x, w), eps),
                            dynamic=False)
    for what, k in (("o", hidden), ("down", inner)):
        rows = x if k == hidden else torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        weight = w[:hidden, :k] if k <= w.shape[1] else torch.randn(hidden, k, device="cuda").bfloat16() * k**-0.5
        weight = weight.contiguous()
        r = torch.randn(m, hidden, device="cuda", dtype=torch.bfloat16)
        r_partials = carried_norm.partials_reference(r)
        y = torch.empty_like(r)
        partials = torch.empty_like(r_partials)
        why = carried_norm.unsupported_sm90(rows, weight, r, r_partials, y, partials)
        if why is not None:
            print(f"no CUTLASS residual rows: {why}", flush=True)
            return
        shape = (m, k, hidden)
        report(f"{what}: cuBLAS GEMM alone", do_bench(lambda: torch.nn.functional.linear(rows, weight)), shape=shape)
        report(f"{what}: cuBLAS + inductor's add + RMSNorm", do_bench(lambda: unfused(rows, weight, r)), shape=shape)
        for carried in (None, r_partials):
            name = f"{what}: CUTLASS residual GEMM, {'carried scale' if carried is not None else 'plain residual'}"
            expected = carried_norm.linear_residual_reference(rows, weight, r, carried, eps)[0]

            def call():
                carried_norm.launch_sm90(rows, weight, r, carried, y, partials, eps)

            if right(name, call, y, expected):
                report(name, do_bench(call), shape=shape)


if __name__ == "__main__":
    sys.exit(main())
