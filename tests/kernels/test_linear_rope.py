"""The QKV projection with RoPE in its epilogue (Triton) against the unfused reference: on the GPU, and on the
CPU under Triton's interpreter (fp32/fp16 only: the interpreter is not trusted with bf16 dots); and the
attention sublayer (ops.self_attention) that runs it, on every backend."""

import pytest
import torch
from helpers import assert_kernel_and_op_match, case_seed
from trm_fast import ops
from trm_fast.models.layers import RotaryEmbedding
from trm_fast.ops.attention import rope_attention_reference
from trm_fast.ops.linear_rope import linear_rope_fused, linear_rope_reference, unsupported

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# (B, S, K, H, D): sudoku_attn at batch 768 and 1, HRM's 82 positions at an odd batch, ARC's 916, and small
# odd sizes (rows not a multiple of a tile); under the interpreter D is 16 or 32 (its one tile is 32 wide)
SHAPES_GPU = [(768, 97, 512, 8, 64), (1, 97, 512, 8, 64), (3, 82, 512, 8, 64), (2, 916, 512, 8, 64),
              (2, 5, 64, 2, 32)]
SHAPES_CPU = [(1, 97, 64, 2, 16), (2, 5, 40, 1, 32), (3, 33, 32, 3, 16)]


def _inputs(shape, dtype, device, seed, any_tables=False):
    """x, w and RoPE's tables (equal halves), or with `any_tables` tables whose halves differ."""
    b, s, k, h, d = shape
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(b, s, k, generator=gen)
    w = torch.randn(3 * h * d, k, generator=gen) * k**-0.5
    cos, sin = RotaryEmbedding(d, s, 10000.0)()
    if any_tables:
        cos, sin = torch.rand(s, d, generator=gen), torch.rand(s, d, generator=gen)
    return x.to(device, dtype), w.to(device, dtype), cos.to(device), sin.to(device)


def _check(shape, dtype, seed, device, any_tables=False):
    """The kernel, writing into a poisoned output, against the fp64 reference; the op's output too."""
    from trm_fast.kernels.linear_rope import linear_rope
    from trm_fast.kernels.rope_tables import equal_halves

    x, w, cos, sin = _inputs(shape, dtype, device, seed, any_tables)
    assert equal_halves(cos, sin) is not any_tables  # the path under test
    b, s, _, h, d = shape
    out = torch.full((b, s, 3 * h, d), float("nan"), dtype=dtype, device=device)
    linear_rope(x, w, cos, sin, h, out=out)
    truth = linear_rope_reference(x.double(), w.double(), cos.double(), sin.double(), h)
    # tolerance: a few times PyTorch's own error in this dtype against fp64 (the kernel rounds where the
    # reference does), plus a small atol
    torch_err = (linear_rope_reference(x, w, cos, sin, h).double() - truth).abs().max().item()
    assert_kernel_and_op_match(out, linear_rope_fused(x, w, cos, sin, h), truth, torch_err, f"{shape} {dtype}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU interpreter test; the GPU test covers CUDA")
@pytest.mark.parametrize("shape", SHAPES_CPU)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_interpreter_matches_reference(shape, dtype):
    _check(shape, dtype, seed=case_seed((shape, str(dtype))), device="cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("shape", SHAPES_GPU)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_gpu_matches_reference(shape, dtype):
    _check(shape, dtype, seed=torch.seed() % 2**31, device="cuda")


@pytest.mark.parametrize("shape", [(2, 5, 32, 1, 32), (1, 37, 64, 2, 16)])
def test_tables_with_unequal_halves_take_the_general_path(shape):
    """Tables that are not RoPE's rotate-half form: the kernel loads both halves and still matches."""
    if torch.cuda.is_available():
        _check((3, 7, 64, 3, 64), torch.float32, seed=torch.seed() % 2**31, device="cuda", any_tables=True)
    else:
        _check(shape, torch.float32, seed=case_seed(shape), device="cpu", any_tables=True)


def test_reference_is_the_official_two_steps():
    # F.linear, then the RoPE of trm_fast.ops.rope on the q and k views, bit for bit
    x, w, cos, sin = _inputs((2, 7, 32, 2, 16), torch.float32, DEVICE, seed=1)
    from trm_fast.ops.rope import rope_reference

    qkv = torch.nn.functional.linear(x, w).view(2, 7, 6, 16)
    q, k = rope_reference(qkv[:, :, :2], qkv[:, :, 2:4], cos, sin)
    assert torch.equal(linear_rope_reference(x, w, cos, sin, 2), torch.cat((q, k, qkv[:, :, 4:]), dim=2))


def test_kernel_checks_its_out_and_takes_empty_inputs():
    from trm_fast.kernels.linear_rope import linear_rope

    x, w, cos, sin = _inputs((2, 5, 32, 1, 32), torch.float32, DEVICE, seed=2)
    for bad in (torch.empty(2, 5, 3, 31, device=DEVICE), torch.empty(2, 5, 96, device=DEVICE),
                torch.empty(2, 5, 32, 3, device=DEVICE).transpose(2, 3),
                torch.empty(2, 5, 3, 32, device=DEVICE, dtype=torch.float16)):
        with pytest.raises(ValueError, match="out must be a contiguous"):
            linear_rope(x, w, cos, sin, 1, out=bad)
    assert linear_rope(x[:, :0], w, cos[:0], sin[:0], 1).shape == (2, 0, 3, 32)


def test_kernel_refuses_what_it_cannot_load():
    from trm_fast.kernels.linear_rope import linear_rope

    x, w, cos, sin = _inputs((2, 5, 32, 1, 32), torch.float32, DEVICE, seed=3)
    with pytest.raises(ValueError, match="linear_rope needs"):
        linear_rope(x.transpose(0, 1).contiguous().transpose(0, 1), w, cos, sin, 1)  # rows that do not flatten


def test_unaligned_view_falls_back_to_the_reference_with_a_warning():
    if DEVICE == "cpu":
        pytest.importorskip("triton")
    x, w, cos, sin = _inputs((1, 5, 33, 1, 16), torch.float32, DEVICE, seed=4)
    x = x[..., 1:]  # rows of 132 bytes starting 4 bytes in: not what the TMA kernel loads
    import trm_fast.backend

    trm_fast.backend._warned.clear()  # the warning comes once per process: reset it
    with pytest.warns(UserWarning, match="linear_rope falls back to the reference"):
        got = linear_rope_fused(x, w[:, 1:], cos, sin, 1)
    torch.testing.assert_close(got, linear_rope_reference(x, w[:, 1:], cos, sin, 1))


def test_op_opcheck():
    x, w, cos, sin = _inputs((2, 5, 32, 1, 16), torch.float32, DEVICE, seed=5)
    torch.library.opcheck(linear_rope_fused, (x, w, cos, sin, 1))


def test_bad_inputs_name_the_problem():
    x, w, cos, sin = _inputs((2, 5, 32, 2, 16), torch.float32, DEVICE, seed=6)
    assert "dtype and device" in unsupported(x, w.double(), cos, sin, 2, "fused")
    assert "(3 * num_heads * D, K)" in unsupported(x, w[:, :16], cos, sin, 2, "fused")
    assert "(3 * num_heads * D, K)" in unsupported(x, w[:95], cos, sin, 2, "fused")
    assert "(3 * num_heads * D, K)" in unsupported(x, w, cos, sin, 0, "fused")
    assert "must be a power of two from 4 to 128" in unsupported(x, w[:90], cos, sin, 6, "fused")
    assert "float32 (S, D)" in unsupported(x, w, cos[:4], sin, 2, "fused")
    assert "float32 (S, D)" in unsupported(x, w, cos, sin.double(), 2, "fused")
    assert "non-empty" in unsupported(x[:, :0], w, cos[:0], sin[:0], 2, "fused")
    assert "bfloat16, float16 or float32" in unsupported(x.double(), w.double(), cos, sin, 2, "fused")
    assert "row-major" in unsupported(x.transpose(0, 1).contiguous().transpose(0, 1), w, cos, sin, 2, "fused")
    assert "row-major" in unsupported(x[..., :30], w[:, :30], cos, sin, 2, "fused")  # 120-byte rows


@pytest.mark.parametrize("backend", ["reference", "auto", "fused"])
def test_self_attention_matches_the_official_steps(backend):
    """ops.self_attention on every backend against the official projection, RoPE and SDPA; 'reference' bit
    for bit. On the CPU 'fused' runs the interpreter (fp32)."""
    if backend == "fused" and DEVICE == "cpu":
        pytest.importorskip("triton")
    x, w, cos, sin = _inputs((2, 7, 64, 2, 32), torch.float32, DEVICE, seed=7)
    want = rope_attention_reference(torch.nn.functional.linear(x, w).view(2, 7, 6, 32), cos, sin, 2)
    got = ops.self_attention(x, w, (cos, sin), 2, backend=backend)
    if backend == "reference":
        assert torch.equal(got, want)
    else:
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    # without tables (learned positions) and while autograd records, the projection runs unfused
    want_plain = rope_attention_reference(torch.nn.functional.linear(x, w).view(2, 7, 6, 32), None, None, 2)
    torch.testing.assert_close(ops.self_attention(x, w, None, 2, backend=backend), want_plain, atol=1e-4, rtol=1e-4)
    w_grad = w.clone().requires_grad_(True)
    ops.self_attention(x, w_grad, (cos, sin), 2, backend=backend).sum().backward()
    assert w_grad.grad is not None and torch.isfinite(w_grad.grad).all()
