"""The Triton SwiGLU kernel against its reference: on the GPU, and on the CPU under Triton's
interpreter (fp32/fp16 only: the interpreter is not trusted with bf16; tests/conftest.py turns it on)."""

import warnings

import pytest
import torch
import trm_fast
from helpers import assert_close_at_worst, case_seed
from trm_fast import ops
from trm_fast.backend import FusedUnavailableError
from trm_fast.ops.swiglu import swiglu_fused, swiglu_reference, unsupported

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# (M, 2I): TRM's MLP and MLP-t rows, an odd width, batch 1
SHAPES_GPU = [(768 * 97, 3072), (97, 3072), (512, 1024), (1, 3072), (5, 2 * 37)]
SHAPES_CPU = [(97, 3072), (1, 1024), (5, 2 * 37), (3, 2)]


def _fp64_truth(gate_up):
    return swiglu_reference(gate_up.double())


def _check(shape, dtype, seed, device):
    torch.manual_seed(seed)
    gu = (torch.randn(shape, dtype=torch.float32, device=device) * 3).to(dtype).requires_grad_(True)
    h = swiglu_fused(gu)
    truth = _fp64_truth(gu.detach())
    # tolerance: twice PyTorch's own error in this dtype against fp64, plus a small atol
    torch_err = (swiglu_reference(gu.detach()).double() - truth).abs().max().item()
    assert_close_at_worst(h, truth, atol=2 * torch_err + 1e-5, rtol=0, what=f"forward {shape} {dtype}")
    dh = torch.randn_like(h)
    (dgu,) = torch.autograd.grad(h, gu, dh)
    g64 = gu.detach().double().requires_grad_(True)
    (truth_grad,) = torch.autograd.grad(swiglu_reference(g64), g64, dh.double())
    g_ref = gu.detach().clone().requires_grad_(True)
    (torch_grad,) = torch.autograd.grad(swiglu_reference(g_ref), g_ref, dh)
    torch_gerr = (torch_grad.double() - truth_grad).abs().max().item()
    assert_close_at_worst(dgu, truth_grad, atol=2 * torch_gerr + 1e-5, rtol=0, what=f"backward {shape} {dtype}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU interpreter test; the GPU test covers CUDA")
@pytest.mark.parametrize("shape", SHAPES_CPU)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_interpreter_matches_reference(shape, dtype):
    _check(shape, dtype, seed=case_seed((shape, str(dtype))), device="cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("shape", SHAPES_GPU)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_gpu_matches_reference(shape, dtype):
    _check(shape, dtype, seed=torch.seed() % 2**31, device="cuda")


def test_poisoned_output_is_fully_written():
    from trm_fast.kernels.swiglu import swiglu_bwd, swiglu_fwd

    gu = torch.randn(7, 2 * 40, device=DEVICE)
    out = torch.full((7, 40), float("nan"), device=DEVICE)
    swiglu_fwd(gu, out=out)
    torch.testing.assert_close(out, swiglu_reference(gu))
    dgu = torch.full_like(gu, float("nan"))
    swiglu_bwd(torch.ones(7, 40, device=DEVICE), gu, out=dgu)
    assert torch.isfinite(dgu).all()


def test_non_contiguous_rows_and_3d_inputs():
    base = torch.randn(2, 6, 2 * 24 + 8, device=DEVICE)
    gu = base[..., :48]  # rows strided (stride 56), last axis contiguous
    torch.testing.assert_close(ops.swiglu(gu, backend="fused"), swiglu_reference(gu))
    transposed = torch.randn(2, 48, 6, device=DEVICE).transpose(1, 2)  # last axis strided: refused
    assert "unit stride" in unsupported(transposed, "fused")
    torch.testing.assert_close(swiglu_fused(transposed), swiglu_reference(transposed))  # the op itself copies
    # the backward op takes any layout of dh (autograd may pass an expanded one)
    gu = torch.randn(3, 16, device=DEVICE, requires_grad=True)
    dh = torch.ones(1, 1, device=DEVICE).expand(3, 8)
    (grad,) = torch.autograd.grad(swiglu_fused(gu), gu, dh)
    (want,) = torch.autograd.grad(swiglu_reference(gu), gu, dh)
    torch.testing.assert_close(grad, want)


@pytest.mark.gpu
def test_opcheck_and_compile_and_graph_capture():
    gu = torch.randn(4, 9, 3072, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    torch.library.opcheck(swiglu_fused, (gu,))
    compiled = torch.compile(lambda t: ops.swiglu(t, backend="fused"), fullgraph=True)
    torch.testing.assert_close(compiled(gu), swiglu_fused(gu))
    static_in = gu.detach().clone()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        swiglu_fused(static_in)  # warm-up (compiles the kernel) outside capture
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = swiglu_fused(static_in)
    static_in.copy_(torch.randn_like(static_in))
    graph.replay()
    torch.testing.assert_close(static_out, swiglu_reference(static_in))


def test_dispatch_and_bad_input(monkeypatch):
    monkeypatch.setattr(trm_fast.backend, "_warned", set())  # the warning comes once per process: reset it
    cpu = torch.randn(3, 8)
    # auto never uses the interpreter: the reference runs, after one warning naming the reason
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = ops.swiglu(cpu, backend="auto")
    if DEVICE == "cpu":
        assert any("swiglu falls back to the reference" in str(w.message) for w in caught)
    torch.testing.assert_close(out, swiglu_reference(cpu))
    assert torch.equal(ops.swiglu(cpu, backend="reference"), swiglu_reference(cpu))
    with pytest.raises(FusedUnavailableError, match="last axis must have even length"):
        ops.swiglu(torch.randn(3, 7, device=DEVICE), backend="fused")
    with pytest.raises(FusedUnavailableError, match="must be bfloat16, float16 or float32, got torch.float64"):
        ops.swiglu(torch.randn(3, 8, device=DEVICE, dtype=torch.float64), backend="fused")
    with pytest.raises(FusedUnavailableError, match="gate_up is empty"):
        ops.swiglu(torch.randn(0, 8, device=DEVICE), backend="fused")
