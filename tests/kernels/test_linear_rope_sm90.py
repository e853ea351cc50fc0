"""Hopper's QKV projection with RoPE in a CUTLASS GEMM's epilogue (csrc/sm90/gemm_rope.cu, op linear_rope_sm90)
against the fp64 reference in RoPE's pair order, on an H100/H200 with the extension built with CUTLASS. Without
a GPU: that the pair order is a reordering attention does not see, that the kernel's arithmetic (turning
adjacent pairs of the GEMM's output) is RoPE in that order, and the reasons the op gives."""

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close_at_worst, rounding_atol, sm90_gpu
from trm_fast import backend
from trm_fast.models.layers import RotaryEmbedding
from trm_fast.ops.attention import attention_reference, self_attention
from trm_fast.ops.linear_rope import (grouped_rows, launch_sm90, linear_rope_pairs_reference,
                                      linear_rope_reference, linear_rope_sm90, rope_pair_order, sm90_weight,
                                      unsupported_sm90)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# (B, S, K, H, D): TRM's attention at batch 768 and 1, HRM's sequence (82), ARC's (916) at a small batch, a
# 128-wide head, and odd sizes: rows and columns that are not multiples of a tile, K not one of the 64-wide K step
SHAPES = [(768, 97, 512, 8, 64), (1, 97, 512, 8, 64), (3, 82, 512, 8, 64), (2, 916, 512, 8, 64),
          (2, 33, 64, 1, 128), (2, 5, 40, 2, 8), (1, 1, 16, 1, 8)]


def _inputs(shape, seed, dtype=torch.bfloat16, device=DEVICE):
    """x (B, S, K), weight (3 H D, K) and RoPE's fp32 tables (S, D) as the model makes them."""
    b, s, k, h, d = shape
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(b, s, k, generator=gen)
    w = torch.randn(3 * h * d, k, generator=gen) * k**-0.5
    cos, sin = RotaryEmbedding(d, s, 10000.0)()
    return x.to(device, dtype), w.to(device, dtype), cos.to(device), sin.to(device)


def _assert_matches(out, x, w, cos, sin, h, what):
    truth = linear_rope_pairs_reference(x.double(), w.double(), cos.double(), sin.double(), h)
    # a few times PyTorch's own bf16 error against fp64: the reference rounds the projection before RoPE, the
    # kernel turns the fp32 accumulators
    torch_err = (linear_rope_pairs_reference(x, w, cos, sin, h).double() - truth).abs().max().item()
    assert_close_at_worst(out, truth, atol=rounding_atol(torch_err, truth, torch.bfloat16), rtol=0, what=what)


def _refused(x, w, cos, sin, h):
    """True where the kernel's groups cannot take these sizes, after checking that it says why."""
    n = w.shape[0]
    if n % 64 == 0 and n // (3 * h) % 16 == 0:
        return False
    assert "the kernel's groups" in unsupported_sm90(x, w, cos, sin, h)
    return True


@sm90_gpu
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference(shape):
    x, w, cos, sin = _inputs(shape, seed=torch.seed() % 2**31)
    b, s, _, h, d = shape
    if _refused(x, w, cos, sin, h):
        return
    out = linear_rope_sm90(x, w, cos, sin, h)
    assert out.shape == (b, s, 3 * h, d) and out.dtype == torch.bfloat16 and out.is_contiguous()
    _assert_matches(out, x, w, cos, sin, h, f"{shape}")


@sm90_gpu
def test_poisoned_output_and_padded_rows():
    """Straight to the launcher: every element of a NaN-filled output written, x read through rows longer than
    K (its leading dimension); then one row through the op."""
    b, s, k, h, d = 3, 37, 64, 2, 32  # 3 H D = 192: whole 64-column groups
    x, w, cos, sin = _inputs((b, s, k + 8, h, d), seed=11)
    x, w = x[..., :k], w[:, :k].contiguous()
    out = torch.full((b * s, 3 * h * d), float("nan"), device=DEVICE, dtype=torch.bfloat16)
    launch_sm90(x.reshape(b * s, k), rope_pair_order(w, h, dim=0), out, cos, sin, s, h)
    assert not out.isnan().any()
    _assert_matches(out.view(b, s, 3 * h, d), x, w, cos, sin, h, "padded rows")
    one = x[:1, :1]
    _assert_matches(linear_rope_sm90(one, w, cos[:1], sin[:1], h), one, w, cos[:1], sin[:1], h, "one row")


@sm90_gpu
def test_opcheck_and_attention_through_it():
    x, w, cos, sin = _inputs((2, 9, 64, 2, 32), seed=12)  # D 32: the least 'fused' attention takes
    torch.library.opcheck(linear_rope_sm90, (x, w, cos, sin, 2))
    # self_attention takes it where AUTO_OPS names it: the same attention as the official steps', to bf16
    want = self_attention(x, w, (cos, sin), 2, backend="reference")
    saved = set(backend.AUTO_OPS)
    try:
        backend.AUTO_OPS.add("linear_rope_sm90")
        for name in ("auto", "fused"):
            got = self_attention(x, w, (cos, sin), 2, backend=name)
            torch.testing.assert_close(got, want, atol=2e-2, rtol=2e-2)
    finally:
        backend.AUTO_OPS.clear()
        backend.AUTO_OPS.update(saved)


@sm90_gpu
def test_bad_inputs_name_the_problem():
    # 3 H D = 192 and D = 32: whole groups, so that each refusal below is for its own reason
    x, w, cos, sin = _inputs((2, 9, 64, 2, 32), seed=13)
    assert "bfloat16" in unsupported_sm90(x.half(), w.half(), cos, sin, 2)
    assert "must have x's dtype" in unsupported_sm90(x, w.float(), cos, sin, 2)
    assert "multiple of 8" in unsupported_sm90(x[..., :60], w[:, :60], cos, sin, 2)
    assert "(3 * num_heads * D, K)" in unsupported_sm90(x, w[:-1], cos, sin, 2)
    assert "even" in unsupported_sm90(*_inputs((2, 9, 64, 2, 9), seed=13)[:2], cos[:, :9].contiguous(),
                                      sin[:, :9].contiguous(), 2)
    assert "float32" in unsupported_sm90(x, w, cos.double(), sin, 2)
    assert "(S, D)" in unsupported_sm90(x, w, cos[:-1], sin[:-1], 2)
    assert "aligned" in unsupported_sm90(torch.randn(2, 9, 72, device=DEVICE, dtype=torch.bfloat16)[..., 1:65],
                                         w, cos, sin, 2)
    assert "one stride" in unsupported_sm90(x.transpose(0, 1).contiguous().transpose(0, 1), w, cos, sin, 2)
    x, w, cos, sin = _inputs((2, 9, 64, 2, 16), seed=13)
    assert "the kernel's groups" in unsupported_sm90(x, w, cos, sin, 2)  # 3 H D = 96: not whole groups


def test_off_hopper_the_reason_is_given():
    x, w, cos, sin = _inputs((2, 5, 16, 1, 8), seed=14, dtype=torch.float32, device="cpu")
    reason = unsupported_sm90(x, w, cos, sin, 1)
    assert reason is not None and "CUDA device" in reason
    # where it cannot run, self_attention takes the official steps even with it in AUTO_OPS
    saved = set(backend.AUTO_OPS)
    try:
        backend.AUTO_OPS.add("linear_rope_sm90")
        torch.testing.assert_close(self_attention(x, w, (cos, sin), 1, backend="auto"),
                                   self_attention(x, w, (cos, sin), 1, backend="reference"))
    finally:
        backend.AUTO_OPS.clear()
        backend.AUTO_OPS.update(saved)


@pytest.mark.parametrize("shape", [(2, 7, 16, 2, 8), (1, 5, 24, 3, 4)])
def test_pair_order_is_what_the_kernel_computes_and_attention_does_not_see(shape):
    """The kernel's arithmetic emulated in fp64: x @ rope_pair_order(W)^T, then each q and k pair (2i, 2i + 1)
    turned by cos/sin[position, i % (D/2)]; it equals the official projection + RoPE in pair order, and
    attention on q and k in that order equals attention on them in the official one."""
    b, s, k, h, d = shape
    x, w, cos, sin = (t.double() for t in _inputs(shape, seed=15, dtype=torch.float32, device="cpu"))
    acc = F.linear(x, rope_pair_order(w, h, dim=0))  # (B, S, 3 H D)
    a, c = acc[..., : 2 * h * d : 2], acc[..., 1 : 2 * h * d : 2]
    pair = torch.arange(h * d) % (d // 2)  # pair i of each of the 2H q and k heads
    cos_i, sin_i = cos[:, pair], sin[:, pair]  # (S, H D): the first half of each table's row
    turned = torch.stack((a * cos_i - c * sin_i, c * cos_i + a * sin_i), dim=-1).flatten(-2)
    emulated = torch.cat((turned, acc[..., 2 * h * d:]), dim=-1).view(b, s, 3 * h, d)
    official = linear_rope_reference(x, w, cos, sin, h)
    torch.testing.assert_close(emulated, linear_rope_pairs_reference(x, w, cos, sin, h))
    torch.testing.assert_close(attention_reference(*emulated.split(h, dim=2)),
                               attention_reference(*official.split(h, dim=2)))
    # the weight's order is the projection's: rows reordered are columns reordered
    torch.testing.assert_close(F.linear(x, rope_pair_order(w, h, dim=0)), rope_pair_order(F.linear(x, w), h, dim=2))


def test_grouped_rows_give_each_lane_sixteen_adjacent_columns():
    # what the grouped shape relies on: accumulator column 64 g + 8 i + 2 q + e of x @ grouped_rows(pairs)^T is
    # the output's column 64 g + 16 q + 2 i + e, a permutation within each group
    rows = torch.arange(192.0).view(192, 1).expand(192, 3)
    order = grouped_rows(rows)[:, 0].long()
    assert sorted(order.tolist()) == list(range(192))
    for c in range(192):
        g, i, q, e = c // 64, c % 64 // 8, c % 8 // 2, c % 2
        assert order[c] == 64 * g + 16 * q + 2 * i + e


@pytest.mark.parametrize("heads,d,k", [(8, 64, 512), (2, 32, 24), (4, 16, 6)])
def test_the_ops_weight_is_one_gather_of_both_orders(heads, d, k):
    # what linear_rope_sm90 hands the kernel: the weight in rope_pair_order, then grouped_rows, gathered at once
    # (rows of 6 bf16: not whole 8-byte words, gathered element by element)
    w = torch.randn(3 * heads * d, k).bfloat16()
    assert torch.equal(sm90_weight(w, heads), grouped_rows(rope_pair_order(w, heads, dim=0)))
