"""RoPE's in-place pass over the q and k heads of a QKV projection (trm_fast.kernels.rope), forward and back,
against the reference's fp32 RoPE and autograd through it: on the GPU, and on the CPU under Triton's
interpreter (fp32/fp16)."""

import pytest
import torch
from helpers import assert_close_at_worst, case_seed
from trm_fast.models.layers import RotaryEmbedding
from trm_fast.ops.rope import rope_reference

# (B, S, H, D): sudoku_attn at batch 768 and 1, HRM's 82 positions at an odd batch, ARC's 916, small odd sizes
SHAPES_GPU = [(768, 97, 8, 64), (1, 97, 8, 64), (3, 82, 8, 64), (2, 916, 8, 64), (3, 5, 1, 2)]
SHAPES_CPU = [(1, 97, 2, 16), (3, 5, 1, 2), (2, 33, 3, 8)]


def _inputs(shape, dtype, device, seed, any_tables):
    b, s, h, d = shape
    gen = torch.Generator().manual_seed(seed)
    qkv = torch.randn(b, s, 3 * h, d, generator=gen)
    cos, sin = RotaryEmbedding(d, s, 10000.0)()
    if any_tables:  # halves that differ: the kernel's general path
        cos, sin = torch.rand(s, d, generator=gen), torch.rand(s, d, generator=gen)
    return qkv.to(device, dtype), cos.to(device), sin.to(device)


def _check(shape, dtype, seed, device, any_tables=False):
    from trm_fast.kernels.rope import rope_qk_

    h = shape[2]
    qkv, cos, sin = _inputs(shape, dtype, device, seed, any_tables)
    # forward: q and k rotated in place as the reference rounds them, v untouched
    got = rope_qk_(qkv.clone(), cos, sin, h)
    truth = torch.cat((*rope_reference(qkv[:, :, :h].double(), qkv[:, :, h:2 * h].double(), cos.double(),
                                       sin.double()), qkv[:, :, 2 * h:].double()), dim=2)
    want = torch.cat((*rope_reference(qkv[:, :, :h], qkv[:, :, h:2 * h], cos, sin), qkv[:, :, 2 * h:]), dim=2)
    torch_err = (want.double() - truth).abs().max().item()
    assert_close_at_worst(got, truth, atol=3 * torch_err + 1e-4, rtol=0, what=f"forward {shape} {dtype}")
    assert torch.equal(got[:, :, 2 * h:], qkv[:, :, 2 * h:])
    # backward: the transpose, as autograd computes it through the reference (grad of q and k given grad of q', k')
    dqkv = qkv  # any values: the rotation is linear
    leaf = torch.zeros_like(qkv, dtype=torch.float64, requires_grad=True)
    q, k = rope_reference(leaf[:, :, :h], leaf[:, :, h:2 * h], cos.double(), sin.double())
    (truth,) = torch.autograd.grad((q, k), leaf, (dqkv[:, :, :h].double(), dqkv[:, :, h:2 * h].double()))
    got = rope_qk_(dqkv.clone(), cos, sin, h, backward=True)
    leaf32 = torch.zeros_like(qkv, requires_grad=True)
    q, k = rope_reference(leaf32[:, :, :h], leaf32[:, :, h:2 * h], cos, sin)
    (want,) = torch.autograd.grad((q, k), leaf32, (dqkv[:, :, :h], dqkv[:, :, h:2 * h]))
    torch_err = (want[:, :, :2 * h].double() - truth[:, :, :2 * h]).abs().max().item()
    assert_close_at_worst(got[:, :, :2 * h], truth[:, :, :2 * h], atol=3 * torch_err + 1e-4, rtol=0,
                          what=f"backward {shape} {dtype}")
    assert torch.equal(got[:, :, 2 * h:], dqkv[:, :, 2 * h:])


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU interpreter test; the GPU test covers CUDA")
@pytest.mark.parametrize("shape", SHAPES_CPU)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("any_tables", [False, True])
def test_interpreter_matches_reference(shape, dtype, any_tables):
    _check(shape, dtype, seed=case_seed((shape, str(dtype), any_tables)), device="cpu", any_tables=any_tables)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", SHAPES_GPU)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("any_tables", [False, True])
def test_gpu_matches_reference(shape, dtype, any_tables):
    _check(shape, dtype, seed=torch.seed() % 2**31, device="cuda", any_tables=any_tables)


def test_strided_heads_and_backward_undoes_forward():
    # a (B, S, 3H, D) view with padding between rows; rotating forward then back is the identity (cos^2 + sin^2)
    from trm_fast.kernels.rope import rope_qk_

    device = "cuda" if torch.cuda.is_available() else "cpu"
    qkv, cos, sin = _inputs((2, 7, 2, 8), torch.float32, device, seed=4, any_tables=False)
    padded = torch.full((2, 7, 7, 8), float("nan"), device=device)
    padded[:, :, :6] = qkv
    view = padded[:, :, :6]
    rope_qk_(rope_qk_(view, cos, sin, 2), cos, sin, 2, backward=True)
    torch.testing.assert_close(view, qkv, atol=1e-6, rtol=0)
    assert torch.isnan(padded[:, :, 6]).all()


def _check_pack(shape, dtype, seed, device, any_tables):
    # the attention's gradients, packed into (B, S, 3H, D) with dq and dk rotated back: the same bits as
    # concatenating them and rotating back in place, from (B, H, S, D) views of any strides
    from trm_fast.kernels.rope import rope_pack_backward, rope_qk_

    h = shape[2]
    grads, cos, sin = _inputs(shape, dtype, device, seed, any_tables)
    want = rope_qk_(grads.clone(), cos, sin, h, backward=True)
    views = [part.transpose(1, 2) for part in grads.split(h, dim=2)]  # strided, as a (B, S, 3H, D) buffer gives
    for dq, dk, dv in (views, [v.contiguous() for v in views], [v.transpose(-1, -2).contiguous().transpose(-1, -2)
                                                                  for v in views]):  # D not unit stride
        got = rope_pack_backward(dq, dk, dv, cos, sin)
        assert got.is_contiguous() and got.shape == grads.shape
        assert torch.equal(got, want), f"pack {shape} {dtype}"
    assert torch.equal(rope_pack_backward(*views, None, None), grads)  # no tables: concatenated alone


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU interpreter test; the GPU test covers CUDA")
@pytest.mark.parametrize("shape", SHAPES_CPU)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("any_tables", [False, True])
def test_interpreter_pack_backward(shape, dtype, any_tables):
    _check_pack(shape, dtype, case_seed(("pack", shape, str(dtype), any_tables)), "cpu", any_tables)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", SHAPES_GPU)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("any_tables", [False, True])
def test_gpu_pack_backward(shape, dtype, any_tables):
    _check_pack(shape, dtype, torch.seed() % 2**31, "cuda", any_tables)
