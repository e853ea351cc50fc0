"""Hopper's gate/up projection with SwiGLU in a CUTLASS GEMM's epilogue (csrc/sm90/gemm_swiglu.cu, op
linear_swiglu_sm90) against the fp64 reference, on an H100/H200 with the extension built with CUTLASS. Off
such a GPU: the reasons it gives, and that the op's other paths run instead."""

import pytest
import torch
from helpers import assert_close_at_worst, rounding_atol, sm90_gpu
from trm_fast import _native, backend, ops
from trm_fast.ops.linear_swiglu import (grouped_pairs, launch_sm90, linear_swiglu_fused, linear_swiglu_reference,
                                        linear_swiglu_sm90, swiglu_keep_sm90, unsupported_sm90)
from trm_fast.ops.swiglu import swiglu

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
HOPPER = torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)
# (B, R, K, N): TRM's MLP at batch 768 and 1, HRM's sequence (82), and odd sizes: rows and columns that are
# not multiples of a tile, K not a multiple of the 64-wide K step
SHAPES = [(768, 97, 512, 1536), (1, 97, 512, 1536), (3, 82, 512, 1536), (2, 5, 40, 24), (1, 1, 16, 16)]


def _inputs(shape, seed, row_pad=0):
    """bf16 x (B, R, K), seen through rows of K + row_pad elements where row_pad > 0, and weight (2N, K)."""
    b, r, k, n = shape
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(b, r, k + row_pad, generator=gen)[..., :k]
    w = torch.randn(2 * n, k, generator=gen) * k**-0.5
    return x.to(DEVICE, torch.bfloat16), w.to(DEVICE, torch.bfloat16)


def _assert_matches(h, x, w, what):
    truth = linear_swiglu_reference(x.double(), w.double())
    # a few times PyTorch's own bf16 error against fp64: the kernel rounds the gate where the reference does,
    # and multiplies the up half unrounded
    torch_err = (linear_swiglu_reference(x, w).double() - truth).abs().max().item()
    assert_close_at_worst(h, truth, atol=rounding_atol(torch_err, truth, torch.bfloat16), rtol=0, what=what)


@sm90_gpu
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference(shape):
    x, w = _inputs(shape, seed=torch.seed() % 2**31)
    h = linear_swiglu_sm90(x, w)
    assert h.shape == (*x.shape[:-1], w.shape[0] // 2) and h.dtype == torch.bfloat16 and h.is_contiguous()
    _assert_matches(h, x, w, f"{shape}")


@sm90_gpu
def test_poisoned_output_and_padded_rows():
    """Straight to the launcher: every element of a NaN-filled output written, x read through rows longer
    than K (its leading dimension), 4-D and 1-row x through the op."""
    x, w = _inputs((3, 37, 64, 40), seed=11, row_pad=8)
    rows = x.view(-1, 64)
    out = torch.full((rows.shape[0], 40), float("nan"), device=DEVICE, dtype=torch.bfloat16)
    launch_sm90(rows, w, out)
    assert not out.isnan().any()
    _assert_matches(out.view(3, 37, 40), x, w, "padded rows")
    for xs in (x.reshape(1, 3, 37, 64), x[0, :1]):
        _assert_matches(linear_swiglu_sm90(xs, w), xs, w, f"x {tuple(xs.shape)}")


@sm90_gpu
def test_opcheck_and_dispatch():
    x, w = _inputs((2, 9, 64, 40), seed=12)
    torch.library.opcheck(linear_swiglu_sm90, (x, w))
    # 'auto' and 'fused' take it only where AUTO_OPS names it (it does: measured faster), else Triton's kernel
    saved = set(backend.AUTO_OPS)
    try:
        backend.AUTO_OPS.add("linear_swiglu_sm90")
        for name in ("auto", "fused"):
            assert torch.equal(ops.linear_swiglu(x, w, backend=name), linear_swiglu_sm90(x, w))
        backend.AUTO_OPS.discard("linear_swiglu_sm90")
        for name in ("auto", "fused"):
            assert torch.equal(ops.linear_swiglu(x, w, backend=name), linear_swiglu_fused(x, w))
    finally:
        backend.AUTO_OPS.clear()
        backend.AUTO_OPS.update(saved)


@sm90_gpu
@pytest.mark.parametrize("shape", SHAPES)
def test_keep_writes_gate_up_and_h(shape):
    """The training form: gate_up as PyTorch's bf16 GEMM rounds it (within its error against fp64), h as SwiGLU's
    own op computes it from that gate_up, both into NaN-poisoned outputs, x read through padded rows."""
    b, r, k, n = shape
    x, w = _inputs(shape, seed=torch.seed() % 2**31, row_pad=8 if k % 8 == 0 else 0)
    rows = x.reshape(-1, k)
    ext = _native.extension()
    gate_up = torch.full((rows.shape[0], 2 * n), float("nan"), device=DEVICE, dtype=torch.bfloat16)
    h = torch.full((rows.shape[0], n), float("nan"), device=DEVICE, dtype=torch.bfloat16)
    order = grouped_pairs(w)
    workspace = torch.empty(ext.gemm_swiglu_keep_sm90_workspace(rows.shape[0], n, k), dtype=torch.uint8,
                            device=DEVICE)
    ext.gemm_swiglu_keep_sm90(rows.data_ptr(), rows.stride(0), order.data_ptr(), k, gate_up.data_ptr(), 2 * n,
                              h.data_ptr(), n, rows.shape[0], n, k, workspace.data_ptr(), x.device.index,
                              _native.stream(x))
    torch.cuda.synchronize()
    truth = rows.double() @ w.double().t()
    torch_err = ((rows @ w.t()).double() - truth).abs().max().item()
    assert_close_at_worst(gate_up, truth, atol=rounding_atol(torch_err, truth, torch.bfloat16), rtol=0,
                          what=f"gate_up {shape}")
    # from the same rounded gate_up: SwiGLU's op and the kernel differ only in how each divides (2 ulp in fp32)
    torch.testing.assert_close(h, swiglu(gate_up, backend="reference"), atol=1e-2, rtol=1e-2)
    got = swiglu_keep_sm90(rows, w)
    assert torch.equal(got[0], gate_up) and torch.equal(got[1], h)


@sm90_gpu
def test_bad_inputs_name_the_problem():
    x, w = _inputs((2, 9, 64, 40), seed=13)
    assert "bfloat16" in unsupported_sm90(x.half(), w.half())
    assert "must have one dtype" in unsupported_sm90(x, w.float())
    assert "multiples of 8" in unsupported_sm90(x[..., :60], w[:, :60])
    assert "aligned" in unsupported_sm90(torch.randn(2, 9, 72, device=DEVICE, dtype=torch.bfloat16)[..., 1:65], w)
    # one row per sequence: the rows' stride is the batch axis's, 66 elements here
    assert "aligned" in unsupported_sm90(torch.randn(2, 1, 66, device=DEVICE, dtype=torch.bfloat16)[..., :64], w)
    assert "unit stride along K" in unsupported_sm90(x.transpose(1, 2).contiguous().transpose(1, 2), w)
    assert "weight must be (2N, K)" in unsupported_sm90(x, w[:-1])


def test_off_hopper_the_reason_is_given_and_the_other_paths_run():
    x, w = _inputs((2, 5, 16, 8), seed=14)
    if not HOPPER:
        reason = unsupported_sm90(x, w)
        assert reason is not None and ("CUDA device" in reason or "Hopper" in reason or "CUTLASS" in reason
                                       or "trm_fast._C" in reason)
    assert not backend.offers("reference", "linear_swiglu", lambda: None)
    assert not backend.offers("auto", "not_an_op", lambda: None)
    assert not backend.offers("fused", "not_an_op", lambda: None)  # 'fused' too: only what AUTO_OPS names
    assert backend.offers("fused", "linear_swiglu", lambda: None)
    assert not backend.offers("auto", "linear_swiglu", lambda: "no")
    want = linear_swiglu_reference(x.float(), w.float())
    torch.testing.assert_close(ops.linear_swiglu(x.float(), w.float(), backend="reference"), want)


@pytest.mark.parametrize("n", [24, 32, 40, 768])
def test_grouped_pairs_give_each_lane_eight_columns_of_h(n):
    # what the grouped shape relies on: in 64-column group g of x @ grouped^T, column 8 i + 2 q is gate_j and the
    # next column up_j for j = 32 g + 8 q + i; the columns past 2N (rounded up to a group) are zero
    gen = torch.Generator().manual_seed(16)
    x, w = torch.randn(5, 16, generator=gen), torch.randn(2 * n, 16, generator=gen)
    product = x @ grouped_pairs(w).t()
    groups = -(-2 * n // 64)
    assert product.shape == (5, 64 * groups)
    gate, up = x @ w[:n].t(), x @ w[n:].t()
    for g in range(groups):
        for q in range(4):
            for i in range(8):
                j, column = 32 * g + 8 * q + i, 64 * g + 8 * i + 2 * q
                want = (gate[:, j], up[:, j]) if j < n else (torch.zeros(5), torch.zeros(5))
                torch.testing.assert_close(product[:, column], want[0])
                torch.testing.assert_close(product[:, column + 1], want[1])


def test_grouped_pairs_is_the_permuted_view_copied():
    # the one gather (trm_fast._native.gather_rows) against the 5-D permuted copy it replaced, whole 8-byte words
    # (K = 16 bf16) and not (K = 6), with padding (N = 33) and without
    gen = torch.Generator().manual_seed(17)
    for n, k in ((1536, 16), (40, 6), (33, 8)):
        w = torch.randn(2 * n, k, generator=gen).bfloat16()
        padded = -(-n // 32) * 32
        halves = [torch.nn.functional.pad(t, (0, 0, 0, padded - n)) for t in (w[:n], w[n:])]
        want = torch.cat(halves).view(2, padded // 32, 4, 8, k).permute(1, 3, 2, 0, 4).reshape(2 * padded, k)
        assert torch.equal(grouped_pairs(w), want), (n, k)


def test_gather_rows_takes_any_width_and_offset():
    # the CUTLASS ops' weight layout helper: whole rows as 8-byte words where width and offset allow, else
    # element by element; the order is kept per key and size
    gen = torch.Generator().manual_seed(18)
    base = torch.randn(12 * 16 + 1, generator=gen).bfloat16()
    for w in (base[1:].view(12, 16), base[:12 * 16].view(12, 16), base[:36].view(12, 3), base[:48].view(12, 4).t()):
        assert torch.equal(_native.gather_rows(w, ("test",), lambda r: r.flip(0)), w.flip(0))
