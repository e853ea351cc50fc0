"""The residual projection that carries the RMSNorm as partial sums of squares (csrc/sm90/gemm_residual.cu,
trm_fast.ops.carried_norm) against the fp64 reference on a Hopper GPU; everywhere, that its reference is the
official add + RMSNorm rearranged, and the reasons it gives where it cannot run."""

import pytest
import torch
from helpers import assert_close_at_worst, rounding_atol, sm90_gpu
from trm_fast.ops.carried_norm import (carried_scale_reference, grouped_weight, launch_sm90,
                                       linear_residual_reference, partials_reference, partials_unsupported,
                                       unsupported_sm90)
from trm_fast.ops.rms_norm import rms_norm_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
EPS = 1e-5
# (M, K, N): sudoku_attn's o and down projections at batch 768, odd row counts (not multiples of a tile), one
# row, K not a multiple of the 64-wide K step, N of one group and of three (not whole 128-column tiles)
SHAPES = [(768 * 97, 512, 512), (768 * 97, 1536, 512), (37, 520, 192), (1, 64, 64), (130, 72, 1024)]


def _inputs(m, k, n, seed, device=DEVICE, partials=True):
    """x (M, K), weight (N, K), r (M, N) bf16, and r's partials as the previous residual GEMM leaves them (or
    None)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=gen).bfloat16()
    w = (torch.randn(n, k, generator=gen) * k**-0.5).bfloat16()
    r = (torch.randn(m, n, generator=gen) * 3).bfloat16()  # un-normalised, as a carried y is
    r_partials = partials_reference(r) if partials else None
    return tuple(t.to(device) if t is not None else None for t in (x, w, r, r_partials))


def _check(y, partials, x, w, r, r_partials, what):
    want_y = linear_residual_reference(x.double(), w.double(), r.double(),
                                       None if r_partials is None else r_partials.double(), EPS)[0]
    torch_y = linear_residual_reference(x, w, r, r_partials, EPS)[0]
    torch_err = (torch_y.double() - want_y).abs().max().item()
    assert_close_at_worst(y, want_y, atol=rounding_atol(torch_err, want_y, torch.bfloat16), rtol=0, what=what)
    # the partials of the kernel's own y: fp32 sums of 64 squares in another order
    own = partials_reference(y.double())
    assert_close_at_worst(partials, own, atol=1e-3, rtol=1e-5, what=f"{what}: partials")


def test_reference_is_the_official_add_and_norm_rearranged():
    """y with r's scale is x W^T + rms_norm(r); the scale from y's partials turns y into rms_norm(y)."""
    x, w, r, r_partials = _inputs(37, 40, 128, seed=1, device="cpu")
    x, w, r, r_partials = x.double(), w.double(), r.double(), r_partials.double()
    y, partials = linear_residual_reference(x, w, r, r_partials, EPS)
    # r's partials are fp32 sums (as the kernel leaves them): the scale agrees to fp32's precision
    torch.testing.assert_close(y, x @ w.t() + rms_norm_reference(r, EPS), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(carried_scale_reference(partials, 128, EPS).double()[:, None] * y,
                               rms_norm_reference(y, EPS), rtol=1e-6, atol=1e-6)


def test_off_hopper_the_reason_is_given():
    x, w, r, r_partials = _inputs(5, 16, 64, seed=2, device="cpu")
    y, partials = torch.empty_like(r), torch.empty_like(r_partials)
    reason = unsupported_sm90(x, w, r, r_partials, y, partials)
    assert reason is not None and "CUDA device" in reason


def test_partials_must_start_16_byte_aligned():
    """The readers copy a tile's partials 16 bytes at a time: partials one float past an aligned start are refused
    with the reason, on any device."""
    rows = torch.zeros(9, 128).bfloat16()
    storage = torch.zeros(9 * 2 + 4)
    assert partials_unsupported(rows, storage[:18].view(9, 2)) is None
    reason = partials_unsupported(rows, storage[1:19].view(9, 2), "x_partials")
    assert reason is not None and "x_partials must start 16-byte aligned" in reason


@sm90_gpu
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("carried", [True, False])
def test_matches_reference(shape, carried):
    x, w, r, r_partials = _inputs(*shape, seed=torch.seed() % 2**31, partials=carried)
    y = torch.full_like(r, float("nan"))
    partials = torch.full((shape[0], shape[2] // 64), float("nan"), device=DEVICE)
    assert unsupported_sm90(x, w, r, r_partials, y, partials) is None
    launch_sm90(x, w, r, r_partials, y, partials, EPS)
    assert not y.isnan().any() and not partials.isnan().any()
    _check(y, partials, x, w, r, r_partials, f"{shape} carried={carried}")


@sm90_gpu
def test_in_place_over_the_residual_and_padded_rows():
    """y written over r (each thread reads its residual before it stores), x read through rows longer than K."""
    m, k, n = 130, 64, 192
    x, w, r, r_partials = _inputs(m, k, n, seed=3)
    padded = torch.randn(m, k + 8, device=DEVICE).bfloat16()
    padded[:, :k] = x
    rows = padded[:, :k]
    r_before = r.clone()
    partials = torch.full((m, n // 64), float("nan"), device=DEVICE)
    launch_sm90(rows, w, r, r_partials, r, partials, EPS)
    _check(r, partials, x, w, r_before, r_partials, "in place")


@sm90_gpu
def test_the_weight_is_one_gather_of_the_grouped_order():
    w = torch.randn(192, 16, device=DEVICE).bfloat16()
    grouped = grouped_weight(w)
    # accumulator column 64 g + 8 i + 2 q + e holds y's column 64 g + 16 q + 2 i + e
    for g, i, q, e in ((0, 0, 0, 0), (1, 3, 2, 1), (2, 7, 3, 1)):
        assert torch.equal(grouped[64 * g + 8 * i + 2 * q + e], w[64 * g + 16 * q + 2 * i + e])


@sm90_gpu
def test_bad_inputs_name_the_problem():
    x, w, r, r_partials = _inputs(9, 64, 128, seed=4)
    y, partials = torch.empty_like(r), torch.empty_like(r_partials)
    assert unsupported_sm90(x, w, r, r_partials, y, partials) is None
    assert "bfloat16" in unsupported_sm90(x.half(), w, r, r_partials, y, partials)
    assert "multiple of 64" in unsupported_sm90(x, w[:96], r[:, :96], None, y[:, :96], partials)
    big = torch.zeros(1088, 64, device=DEVICE).bfloat16()
    assert "up to 1024" in unsupported_sm90(x, big, r, None, y, partials)
    assert "weight must be (N, K)" in unsupported_sm90(x, w[:, :32], r, r_partials, y, partials)
    assert "r must be" in unsupported_sm90(x, w, r[:5], r_partials, y, partials)
    assert "partials must be" in unsupported_sm90(x, w, r, r_partials, y, partials.double())
    assert "16-byte aligned" in unsupported_sm90(x, w, r, r_partials, torch.empty(9, 136, device=DEVICE)
                                                 .bfloat16()[:, 1:129], partials)
    assert "must not be r's partials" in unsupported_sm90(x, w, r, r_partials, y, r_partials)
    assert "multiple of 8" in unsupported_sm90(torch.zeros(9, 60, device=DEVICE).bfloat16(),
                                               torch.zeros(128, 60, device=DEVICE).bfloat16(), r, None, y, partials)


@sm90_gpu
@pytest.mark.parametrize("m", [768 * 97, 37, 1])
def test_the_next_gemms_apply_the_scale(m):
    """gate/up + SwiGLU and QKV + RoPE on an un-normalised y with its partials: as the official ops on rms_norm(y)
    (x normalised in fp64, then rounded to bf16 as the official norm's output is)."""
    from trm_fast.models.layers import RotaryEmbedding
    from trm_fast.ops.linear_rope import launch_sm90 as rope_sm90
    from trm_fast.ops.linear_rope import linear_rope_pairs_reference, rope_pair_order
    from trm_fast.ops.linear_swiglu import launch_sm90 as swiglu_sm90
    from trm_fast.ops.linear_swiglu import linear_swiglu_reference

    seq, heads, d, k = 97 if m % 97 == 0 else m, 8, 64, 512
    gen = torch.Generator().manual_seed(torch.seed() % 2**31)
    y = (torch.randn(m, k, generator=gen) * 3).bfloat16().to(DEVICE)
    partials = partials_reference(y)
    assert partials_unsupported(y, partials) is None
    normed = rms_norm_reference(y.double(), EPS).bfloat16()
    w = (torch.randn(2 * 1536, k, generator=gen) * k**-0.5).bfloat16().to(DEVICE)
    h = torch.full((m, 1536), float("nan"), device=DEVICE).bfloat16()
    swiglu_sm90(y, w, h, partials, EPS)
    want = linear_swiglu_reference(normed.double(), w.double())
    err = (linear_swiglu_reference(normed, w).double() - want).abs().max().item()
    assert_close_at_worst(h, want, atol=2 * rounding_atol(err, want, torch.bfloat16), rtol=0, what="SwiGLU")

    qkv = (torch.randn(3 * heads * d, k, generator=gen) * k**-0.5).bfloat16().to(DEVICE)
    cos, sin = (t.to(DEVICE) for t in RotaryEmbedding(d, seq, 10000.0)())
    out = torch.full((m, 3 * heads * d), float("nan"), device=DEVICE).bfloat16()
    pairs = rope_pair_order(qkv, heads, dim=0)
    rope_sm90(y, pairs, out, cos, sin, seq, heads, partials, EPS)
    want = linear_rope_pairs_reference(normed.double().view(-1, seq, k), qkv.double(), cos.double(),
                                                   sin.double(), heads).view(m, -1)
    got_torch = linear_rope_pairs_reference(normed.view(-1, seq, k), qkv, cos, sin, heads).view(m, -1)
    err = (got_torch.double() - want).abs().max().item()
    assert_close_at_worst(out, want, atol=2 * rounding_atol(err, want, torch.bfloat16), rtol=0, what="RoPE")


@sm90_gpu
def test_partials_bad_inputs_name_the_problem():
    y = torch.zeros(9, 128, device=DEVICE).bfloat16()
    good = torch.zeros(9, 2, device=DEVICE)
    assert partials_unsupported(y, good) is None
    assert "float32" in partials_unsupported(y, good.double())
    assert "(9, 2)" in partials_unsupported(y, good[:, :1])
    assert "contiguous" in partials_unsupported(y, torch.zeros(2, 9, device=DEVICE).t())
    assert "multiple of 64" in partials_unsupported(y[:, :96], good)


@sm90_gpu
def test_opcheck_of_the_chain_ops_with_partials():
    """torch.library.opcheck of the residual op, with and without r's partials, and of the QKV + RoPE and gate/up +
    SwiGLU ops given x's partials (their carried instantiations)."""
    from trm_fast.models.layers import RotaryEmbedding
    from trm_fast.ops.carried_norm import linear_residual_sm90
    from trm_fast.ops.linear_rope import linear_rope_sm90
    from trm_fast.ops.linear_swiglu import linear_swiglu_sm90

    b, s, k, n, heads, d = 2, 9, 64, 128, 2, 32
    x, w, r, r_partials = _inputs(b * s, k, n, seed=5)
    x, r = x.view(b, s, k), r.view(b, s, n)
    for carried in (r_partials, None):
        torch.library.opcheck(linear_residual_sm90, (x, w, r, carried, EPS))
    x_partials = partials_reference(x.view(-1, k))
    gate_up = (torch.randn(2 * 40, k, device=DEVICE) * k**-0.5).bfloat16()
    torch.library.opcheck(linear_swiglu_sm90, (x, gate_up, x_partials, EPS))
    qkv = (torch.randn(3 * heads * d, k, device=DEVICE) * k**-0.5).bfloat16()
    cos, sin = (t.to(DEVICE) for t in RotaryEmbedding(d, s, 10000.0)())
    torch.library.opcheck(linear_rope_sm90, (x, qkv, cos, sin, heads, x_partials, EPS))
