"""The gate/up projection with SwiGLU in its epilogue (Triton) against the unfused reference: on the GPU, and
on the CPU under Triton's interpreter (fp32/fp16 only: the interpreter is not trusted with bf16 dots)."""

import pytest
import torch
from helpers import assert_close_at_worst, case_seed, rounding_atol
from trm_fast import ops
from trm_fast.backend import FusedUnavailableError
from trm_fast.ops.linear_swiglu import linear_swiglu_fused, linear_swiglu_reference, unsupported

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# (B, R, K, N): TRM's MLP at batch 768 and 1 (K 512, N 1536), MLP-t's (K 97, N 512, on a transposed view),
# and odd sizes: rows and columns that are not multiples of a tile, K not a multiple of BLOCK_K
SHAPES_GPU = [(768, 97, 512, 1536), (1, 97, 512, 1536), (3, 82, 512, 1536), (2, 5, 40, 24), (1, 1, 16, 16)]
SHAPES_CPU = [(1, 97, 64, 48), (2, 5, 40, 24), (1, 1, 16, 16), (3, 33, 70, 40)]


def _inputs(shape, dtype, device, seed, transposed=False):
    b, r, k, n = shape
    gen = torch.Generator(device="cpu").manual_seed(seed)
    if transposed:  # MLP-t: x is the (B, K, R) activation seen as (B, R, K)
        x = torch.randn(b, k, r, generator=gen).transpose(1, 2)
    else:
        x = torch.randn(b, r, k, generator=gen)
    w = torch.randn(2 * n, k, generator=gen) * k**-0.5
    return x.to(device=device, dtype=dtype), w.to(device=device, dtype=dtype)


def _check(shape, dtype, seed, device, transposed=False, tma=None):
    """The op (tma None) or one kernel (tma True: the persistent TMA one, False: the pointer one, writing into
    a poisoned output) against the fp64 reference."""
    from trm_fast.kernels.linear_swiglu import linear_swiglu

    x, w = _inputs(shape, dtype, device, seed, transposed)
    if tma is None:
        h = linear_swiglu_fused(x, w)
        assert h.shape == (*x.shape[:-1], w.shape[0] // 2) and h.dtype == dtype and h.is_contiguous()
    else:
        h = torch.full((*x.shape[:-1], w.shape[0] // 2), float("nan"), dtype=dtype, device=device)
        linear_swiglu(x, w, out=h, tma=tma)
    truth = linear_swiglu_reference(x.double(), w.double())
    # the kernel rounds the projection where the reference does, then its fp32 SwiGLU once
    torch_err = (linear_swiglu_reference(x, w).double() - truth).abs().max().item()
    assert_close_at_worst(h, truth, atol=rounding_atol(torch_err, truth, dtype), rtol=0,
                          what=f"{shape} {dtype} transposed={transposed} tma={tma}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU interpreter test; the GPU test covers CUDA")
@pytest.mark.parametrize("shape", SHAPES_CPU)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_interpreter_matches_reference(shape, dtype):
    _check(shape, dtype, seed=case_seed((shape, str(dtype))), device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU interpreter test; the GPU test covers CUDA")
def test_interpreter_transposed_input():
    _check((2, 33, 40, 24), torch.float32, seed=3, device="cpu", transposed=True)


# shapes both kernels take (K and N multiples of 8: 16-byte rows in fp16 and fp32)
SHAPES_BOTH_CPU = [(1, 97, 64, 48), (2, 5, 40, 24), (3, 33, 72, 40)]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU interpreter test; the GPU test covers CUDA")
@pytest.mark.parametrize("shape", SHAPES_BOTH_CPU)
@pytest.mark.parametrize("tma", [True, False])
def test_interpreter_both_kernels_match_reference(shape, tma):
    _check(shape, torch.float32, seed=sum(shape), device="cpu", tma=tma)


def test_tma_refuses_what_it_cannot_load():
    from trm_fast.kernels.linear_swiglu import linear_swiglu

    x, w = _inputs((2, 5, 40, 24), torch.float32, DEVICE, seed=8, transposed=True)  # MLP-t's layout
    with pytest.raises(ValueError, match="tma=True needs"):
        linear_swiglu(x, w, tma=True)
    x, w = _inputs((2, 5, 42, 24), torch.float32, DEVICE, seed=8)  # rows of 168 bytes
    with pytest.raises(ValueError, match="tma=True needs"):
        linear_swiglu(x, w, tma=True)
    torch.testing.assert_close(linear_swiglu(x, w), linear_swiglu_reference(x, w), atol=1e-4, rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("shape, dtype", [((768, 97, 512, 1536), torch.bfloat16), ((1, 97, 512, 1536), torch.bfloat16),
                                          ((3, 82, 512, 1536), torch.float32), ((2, 5, 40, 24), torch.float32)])
@pytest.mark.parametrize("tma", [True, False])
def test_gpu_both_kernels_match_reference(shape, dtype, tma):
    _check(shape, dtype, seed=torch.seed() % 2**31, device="cuda", tma=tma)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", SHAPES_GPU)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_gpu_matches_reference(shape, dtype):
    _check(shape, dtype, seed=torch.seed() % 2**31, device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_gpu_mlp_t_transposed_input(dtype):
    _check((768, 512, 97, 512), dtype, seed=torch.seed() % 2**31, device="cuda", transposed=True)


def test_poisoned_output_is_fully_written():
    from trm_fast.kernels.linear_swiglu import linear_swiglu

    x, w = _inputs((2, 7, 40, 24), torch.float32, DEVICE, seed=1)
    out = torch.full((2, 7, 24), float("nan"), device=DEVICE)
    linear_swiglu(x, w, out=out)
    torch.testing.assert_close(out, linear_swiglu_reference(x, w), atol=1e-4, rtol=1e-4)


def test_kernel_checks_its_out_and_takes_empty_inputs():
    from trm_fast.kernels.linear_swiglu import linear_swiglu

    x, w = _inputs((2, 7, 40, 24), torch.float32, DEVICE, seed=7)
    for bad in (torch.empty(2, 7, 23, device=DEVICE), torch.empty(2, 24, 7, device=DEVICE).transpose(1, 2),
                torch.empty(2, 7, 24, device=DEVICE, dtype=torch.float16)):
        with pytest.raises(ValueError, match="out must be a contiguous"):
            linear_swiglu(x, w, out=bad)
    assert linear_swiglu(x[:, :0], w).shape == (2, 0, 24)


def test_op_shapes_and_opcheck():
    x, w = _inputs((2, 5, 16, 8), torch.float32, DEVICE, seed=2)
    for xs in (x, x[0], x.reshape(1, 2, 5, 16), x[0, 0]):  # 3-D, 2-D, 4-D, one row
        torch.testing.assert_close(linear_swiglu_fused(xs, w), linear_swiglu_reference(xs, w), atol=1e-4, rtol=1e-4)
    torch.library.opcheck(linear_swiglu_fused, (x, w))


def test_bad_inputs_name_the_problem():
    x, w = _inputs((2, 5, 16, 8), torch.float32, DEVICE, seed=4)
    assert "must have one dtype" in unsupported(x, w.double(), "fused")
    assert "weight must be (2N, K)" in unsupported(x, w[:, :8], "fused")
    assert "weight must be (2N, K)" in unsupported(x, w[:15], "fused")
    assert "bfloat16, float16 or float32" in unsupported(x.double(), w.double(), "fused")
    assert "empty" in unsupported(x[:, :0], w, "fused")
    assert "unit stride" in unsupported(x, torch.randn(16, 16, device=DEVICE).t(), "fused")
    leading = torch.randn(3, 4, 5, 16, device=DEVICE).transpose(0, 1)  # leading axes that do not flatten
    assert "leading axes" in unsupported(leading, w, "fused")
    with pytest.raises(FusedUnavailableError, match="linear_swiglu cannot run here"):
        ops.linear_swiglu(x.double(), w.double(), backend="fused")


def test_recording_autograd_runs_the_reference_with_gradients():
    x, w = _inputs((2, 5, 16, 8), torch.float32, DEVICE, seed=5)
    w.requires_grad_(True)
    ops.linear_swiglu(x, w, backend="fused").sum().backward()  # the kernel has no backward: the reference ran
    want = w.detach().clone().requires_grad_(True)
    linear_swiglu_reference(x, want).sum().backward()
    torch.testing.assert_close(w.grad, want.grad)


def test_reference_and_auto_off_gpu_run_the_unfused_pair():
    # 'auto' runs the kernel on a GPU alone (where the device is not a GPU it warns and runs the reference)
    x, w = _inputs((2, 5, 16, 8), torch.float32, DEVICE, seed=6)
    torch.testing.assert_close(ops.linear_swiglu(x, w, backend="reference"), linear_swiglu_reference(x, w))
    if DEVICE == "cpu":
        torch.testing.assert_close(ops.linear_swiglu(x, w, backend="auto"), linear_swiglu_reference(x, w))


@pytest.mark.gpu
def test_auto_runs_the_tma_kernel_alone():
    """'auto' takes the kernel for row-major 16-bit x on Hopper (the TMA kernel, measured faster) and keeps
    the unfused pair for MLP-t's transposed x (the pointer kernel, measured slower) and fp32; bit for bit."""
    x, w = _inputs((4, 97, 512, 1536), torch.bfloat16, "cuda", seed=9)
    hopper = torch.cuda.get_device_capability()[0] >= 9
    want = linear_swiglu_fused(x, w) if hopper else linear_swiglu_reference(x, w, "auto")
    assert torch.equal(ops.linear_swiglu(x, w, backend="auto"), want)
    x_t, w_t = _inputs((4, 97, 512, 512), torch.bfloat16, "cuda", seed=10, transposed=True)
    assert torch.equal(ops.linear_swiglu(x_t, w_t, backend="auto"), linear_swiglu_reference(x_t, w_t, "auto"))
    x32, w32 = x.float(), w.float()  # fp32: the kernel's exact dots were not measured against cuBLAS
    assert torch.equal(ops.linear_swiglu(x32, w32, backend="auto"), linear_swiglu_reference(x32, w32, "auto"))
