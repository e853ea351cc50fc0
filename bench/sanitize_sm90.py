"""Run Hopper's CUTLASS kernels (csrc/sm90: gate/up + SwiGLU, and its form that writes gate_up too, QKV + RoPE, both
also on the carried RMSNorm's x, the residual projection that carries it, the plain GEMM in each shape config) at
small odd sizes, for compute-sanitizer:

    compute-sanitizer --tool memcheck  python bench/sanitize_sm90.py
    compute-sanitizer --tool racecheck python bench/sanitize_sm90.py

The references are computed on the CPU, so that the only kernels the tools see are trm_fast's and PyTorch's
elementwise and gather ones (racecheck reports hazards
inside cuBLAS's warp-specialised kernels, which are not ours to judge). Rows and columns are not multiples of
any tile, and x is read through padded rows. PyTorch's caching allocator is off, so that memcheck sees each
tensor's own bounds. Exits 1 if a result is off from the reference (bf16 rounding apart), 2 where the GPU or
the build has no sm90 kernels.
"""

import os
import sys

os.environ.setdefault("PYTORCH_NO_CUDA_MEMORY_CACHING", "1")  # before torch allocates anything

import torch  # noqa: E402

from trm_fast import _native  # noqa: E402
from trm_fast.models.layers import RotaryEmbedding  # noqa: E402
from trm_fast.ops import carried_norm, linear_rope  # noqa: E402
from trm_fast.ops.linear_swiglu import (launch_sm90, linear_swiglu_reference, swiglu_keep_sm90,  # noqa: E402
                                        unsupported_sm90)

EPS = 1e-5


def carried_x(x_full, k, carried):
    """x (m, k) as the readers take it, read through x_full's padded rows: (x on the GPU, its partials on the GPU or
    None, the rows the reference multiplies, fp32). Carried, x is 3 times larger, so that a scale left out would be
    off by more than the tolerance."""
    if carried:
        x_full = x_full * 3
    x_cpu = x_full[:, :k]
    if not carried:
        return x_full.cuda()[:, :k], None, x_cpu.float()  # .cuda() of x_cpu would make it contiguous
    partials = carried_norm.partials_reference(x_cpu.contiguous())
    scale = carried_norm.carried_scale_reference(partials, k, EPS)[:, None]
    return x_full.cuda()[:, :k], partials.cuda(), x_cpu.float() * scale


def gemm_swiglu(m, n, k, pad, carried=False):
    """The launcher on (m, k) x read through rows of k + pad (carried: with x's partials, gemm_swiglu_carried.cu),
    against the fp32 reference; True if it agrees."""
    gen = torch.Generator().manual_seed(m * n + k)
    x_full = torch.randn(m, k + pad, generator=gen).bfloat16()
    w_cpu = (torch.randn(2 * n, k, generator=gen) * k**-0.5).bfloat16()
    x, partials, x_ref = carried_x(x_full, k, carried)
    out = torch.full((m, n), float("nan"), dtype=torch.bfloat16, device="cuda")
    launch_sm90(x, w_cpu.cuda(), out, partials, EPS)  # the weight's gather in groups is PyTorch's index_select
    torch.cuda.synchronize()
    want = linear_swiglu_reference(x_ref, w_cpu.float())
    err = (out.cpu().float() - want).abs().max().item()
    ok = err <= 0.05 * max(1.0, want.abs().max().item())
    print(f"gemm_swiglu_sm90 m {m} n {n} k {k} pad {pad} carried {carried}: max error {err:.3g}"
          f"{'' if ok else '  <-- OFF'}")
    return ok


def gemm_swiglu_keep(m, n, k, pad):
    """The training form (gate_up and h) on (m, k) x read through rows of k + pad, against the fp32 references;
    True if both agree. The weight's gather runs on the GPU (PyTorch's index_select)."""
    gen = torch.Generator().manual_seed(m * n + k + 99)
    x_full = torch.randn(m, k + pad, generator=gen).bfloat16()
    x_cpu = x_full[:, :k]
    w_cpu = (torch.randn(2 * n, k, generator=gen) * k**-0.5).bfloat16()
    gate_up, h = swiglu_keep_sm90(x_full.cuda()[:, :k], w_cpu.cuda())
    torch.cuda.synchronize()
    want_gu = x_cpu.float() @ w_cpu.float().t()
    want_h = linear_swiglu_reference(x_cpu.float(), w_cpu.float())
    err = max((gate_up.cpu().float() - want_gu).abs().max().item(), (h.cpu().float() - want_h).abs().max().item())
    ok = err <= 0.05 * max(1.0, want_gu.abs().max().item())
    print(f"gemm_swiglu_keep_sm90 m {m} n {n} k {k} pad {pad}: max error {err:.3g}{'' if ok else '  <-- OFF'}")
    return ok


def gemm_rope(batch, seq, k, heads, d, pad, carried=False):
    """The QKV + RoPE launcher on (batch * seq, k) x read through rows of k + pad (carried: with x's partials,
    gemm_rope_carried.cu), against the fp32 reference in RoPE's pair order; True if it agrees."""
    gen = torch.Generator().manual_seed(batch * seq + k + d)
    x_full = torch.randn(batch * seq, k + pad, generator=gen).bfloat16()
    w_cpu = (torch.randn(3 * heads * d, k, generator=gen) * k**-0.5).bfloat16()
    cos_cpu, sin_cpu = RotaryEmbedding(d, seq, 10000.0)()
    pairs_cpu = linear_rope.rope_pair_order(w_cpu, heads, dim=0)
    x, partials, x_ref = carried_x(x_full, k, carried)
    pairs, cos, sin = (t.cuda() for t in (pairs_cpu, cos_cpu, sin_cpu))
    out = torch.full((batch * seq, 3 * heads * d), float("nan"), dtype=torch.bfloat16, device="cuda")
    linear_rope.launch_sm90(x, pairs, out, cos, sin, seq, heads, partials, EPS)
    torch.cuda.synchronize()
    want = linear_rope.linear_rope_pairs_reference(x_ref.view(batch, seq, k), w_cpu.float(), cos_cpu, sin_cpu,
                                                   heads).view(batch * seq, -1)
    err = (out.cpu().float() - want).abs().max().item()
    ok = err <= 0.05 * max(1.0, want.abs().max().item())
    print(f"gemm_rope_sm90 batch {batch} seq {seq} k {k} heads {heads} d {d} pad {pad} carried {carried}: "
          f"max error {err:.3g}{'' if ok else '  <-- OFF'}")
    return ok


def gemm_residual(m, k, n, carried, in_place):
    """The residual projection (csrc/sm90/gemm_residual.h) into NaN-filled y and partials, or in place over r,
    against the fp32 reference; True if both agree."""
    gen = torch.Generator().manual_seed(m * n + k)
    x_cpu = torch.randn(m, k, generator=gen).bfloat16()
    w_cpu = (torch.randn(n, k, generator=gen) * k**-0.5).bfloat16()
    r_cpu = torch.randn(m, n, generator=gen).bfloat16()
    rp_cpu = carried_norm.partials_reference(r_cpu) if carried else None
    x, w, r = x_cpu.cuda(), w_cpu.cuda(), r_cpu.cuda()
    r_partials = rp_cpu.cuda() if carried else None
    y = r if in_place else torch.full((m, n), float("nan"), dtype=torch.bfloat16, device="cuda")
    partials = torch.full((m, n // 64), float("nan"), device="cuda")
    carried_norm.launch_sm90(x, w, r, r_partials, y, partials, 1e-5)
    torch.cuda.synchronize()
    want_y, want_p = carried_norm.linear_residual_reference(x_cpu, w_cpu, r_cpu, rp_cpu, 1e-5)
    err = (y.cpu().float() - want_y.float()).abs().max().item()
    err_p = ((partials.cpu() - want_p).abs() / want_p.abs().clamp_min(1)).max().item()
    ok = err <= 0.05 * max(1.0, want_y.float().abs().max().item()) and err_p <= 0.05
    print(f"gemm_residual_sm90 m {m} k {k} n {n} carried {carried} in place {in_place}: max error {err:.3g}, "
          f"partials {err_p:.3g}{'' if ok else '  <-- OFF'}")
    return ok


def gemm_plain(config, m, n, k, pad):
    """The plain GEMM on (m, k) x read through rows of k + pad, against the fp32 product; True if it agrees."""
    gen = torch.Generator().manual_seed(m * n + k + config)
    x_full = torch.randn(m, k + pad, generator=gen).bfloat16()
    x_cpu = x_full[:, :k]
    w_cpu = (torch.randn(n, k, generator=gen) * k**-0.5).bfloat16()
    x, w = x_full.cuda()[:, :k], w_cpu.cuda()  # .cuda() of the sliced view would make it contiguous
    out = torch.full((m, n), float("nan"), dtype=torch.bfloat16, device="cuda")
    _native.gemm_plain_sm90(config, x, w, out)
    torch.cuda.synchronize()
    want = x_cpu.float() @ w_cpu.float().t()
    err = (out.cpu().float() - want).abs().max().item()
    ok = err <= 0.05 * max(1.0, want.abs().max().item())
    print(f"gemm_plain_sm90 config {config} m {m} n {n} k {k} pad {pad}: max error {err:.3g}"
          f"{'' if ok else '  <-- OFF'}")
    return ok


def main():
    probe = torch.zeros(1, 8, dtype=torch.bfloat16, device="cuda")
    why = unsupported_sm90(probe, torch.zeros(16, 8, dtype=torch.bfloat16, device="cuda"))
    if why is not None:
        print(f"no sm90 kernels to check: {why}")
        return 2
    shapes = [(3 * 37, 40, 72, 8), (130, 136, 520, 0), (1, 16, 16, 0)]
    ok = [gemm_swiglu(*shape) for shape in shapes]
    ok += [gemm_swiglu_keep(*shape) for shape in shapes]
    # whole 64-column groups and head dims in 16s, rows not a multiple of a tile, padded rows, one row; a head
    # dim of 128, whose groups load their own tables (not their row's)
    rope_shapes = [(3, 37, 72, 2, 32, 8), (2, 65, 520, 3, 64, 0), (1, 1, 16, 4, 16, 0), (2, 33, 64, 1, 128, 0)]
    ok += [gemm_rope(*shape) for shape in rope_shapes]
    # the readers' carried forms: K in whole 64-column groups (the partials' unit), padded rows, one row
    ok += [gemm_swiglu(*shape, carried=True) for shape in [(3 * 37, 40, 128, 8), (1, 16, 64, 0)]]
    ok += [gemm_rope(*shape, carried=True) for shape in [(3, 37, 128, 2, 32, 8), (2, 33, 64, 1, 128, 0)]]
    # rows not a multiple of a tile, N of three groups (a tile's second group past N), K not a multiple of 64
    ok += [gemm_residual(*shape) for shape in [(130, 520, 192, True, False), (37, 64, 512, False, True),
                                               (1, 72, 64, True, True)]]
    ok += [gemm_plain(config, *shape) for config in range(_native.extension().PLAIN_SM90_CONFIGS) for shape in shapes]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
