"""The projection with the residual add and RMSNorm in its epilogue (Triton) against the unfused reference: on
the GPU, and on the CPU under Triton's interpreter (fp32/fp16 only: the interpreter is not trusted with bf16
dots); the op's dispatch, opcheck and its refusals."""

import pytest
import torch
from helpers import assert_close_at_worst, assert_kernel_and_op_match, case_seed
from trm_fast import ops
from trm_fast.ops.linear_add_rms_norm import linear_add_rms_norm_fused, linear_add_rms_norm_reference, unsupported

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
EPS = 1e-5
# (B, R, K, N): the o and down projections of sudoku_attn at batch 768 and 1, HRM's 82 positions at an odd
# batch, and small sizes; under the interpreter rows, K and N that are not multiples of its 32-wide tiles
SHAPES_GPU = [(768, 97, 512, 512), (768, 97, 1536, 512), (1, 97, 512, 512), (5, 82, 1536, 512),
              (3, 7, 64, 48)]
SHAPES_CPU = [(2, 5, 32, 32), (1, 37, 64, 48), (3, 33, 96, 64)]


def _inputs(shape, dtype, device, seed):
    b, r, k, n = shape
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(b, r, k, generator=gen)
    w = torch.randn(n, k, generator=gen) * k**-0.5
    residual = torch.randn(b, r, n, generator=gen)
    return x.to(device, dtype), w.to(device, dtype), residual.to(device, dtype)


def _check(shape, dtype, seed, device):
    """The kernel, writing into a poisoned output, against the fp64 reference; the op's output too."""
    from trm_fast.kernels.linear_add_rms_norm import linear_add_rms_norm

    x, w, residual = _inputs(shape, dtype, device, seed)
    out = torch.full_like(residual, float("nan"))
    linear_add_rms_norm(x, w, residual, EPS, out=out)
    truth = linear_add_rms_norm_reference(x.double(), w.double(), residual.double(), EPS)
    # tolerance: a few times PyTorch's own error in this dtype against fp64, plus a small atol (the kernel adds
    # the residual in fp32, as the fused add + RMSNorm does, where the reference rounds the sum first)
    torch_err = (linear_add_rms_norm_reference(x, w, residual, EPS).double() - truth).abs().max().item()
    op = linear_add_rms_norm_fused(x, w, residual, EPS)
    assert_kernel_and_op_match(out, op, truth, torch_err, f"{shape} {dtype}")


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


def test_op_dispatch_and_opcheck():
    x, w, residual = _inputs((2, 5, 32, 32), torch.float32, DEVICE, seed=3)
    want = ops.add_rms_norm(residual, torch.nn.functional.linear(x, w), EPS)
    # the reference backend is the model's unfused path, op for op
    assert torch.equal(ops.linear_add_rms_norm(x, w, residual, EPS, backend="reference"), want)
    assert_close_at_worst(ops.linear_add_rms_norm(x, w, residual, EPS, backend="fused"), want.double(), atol=1e-4,
                          rtol=0, what="fused")
    torch.library.opcheck(linear_add_rms_norm_fused, (x, w, residual, EPS))
    if DEVICE == "cuda":  # (on the CPU the reference's add + RMSNorm has no 'fused' kernel to run)
        # with autograd recording, the reference runs (the kernel is forward only): gradients flow
        xg = x.clone().requires_grad_(True)
        ops.linear_add_rms_norm(xg, w, residual, EPS, backend="fused").sum().backward()
        assert xg.grad is not None and torch.isfinite(xg.grad).all()


def test_bad_inputs_name_the_problem():
    x, w, residual = _inputs((2, 5, 32, 32), torch.float32, DEVICE, seed=6)
    assert "x's dtype and device" in unsupported(x, w.double(), residual, "fused")
    assert "x's dtype and device" in unsupported(x, w, residual.double(), "fused")
    assert "x must be (B, R, K) and weight (N, K)" in unsupported(x[0], w, residual, "fused")
    assert "x must be (B, R, K) and weight (N, K)" in unsupported(x, w[:, :16], residual, "fused")
    assert "residual must be (B, R, N) = (2, 5, 32), got (2, 5, 16)" in unsupported(x, w, residual[..., :16], "fused")
    big = torch.zeros(520, 32, device=DEVICE)
    assert "N must be at most 512" in unsupported(x, big, torch.zeros(2, 5, 520, device=DEVICE), "fused")
    assert "x is empty" in unsupported(x[:, :0], w, residual[:, :0], "fused")
    assert "bfloat16, float16 or float32" in unsupported(x.double(), w.double(), residual.double(), "fused")
    transposed = x.transpose(1, 2).contiguous().transpose(1, 2)  # unit stride along the rows, not along K
    assert "row-major x" in unsupported(transposed, w, residual, "fused")
    from trm_fast.kernels.linear_add_rms_norm import linear_add_rms_norm

    with pytest.raises(ValueError, match="N <= 512"):
        linear_add_rms_norm(x, big, torch.zeros(2, 5, 520, device=DEVICE), EPS)


def test_prune_keeps_a_gpu_tile_as_the_autotuner_calls_it(monkeypatch):
    """The GPU's tile list pruned the way Triton's autotuner calls the hook: the launch's keyword arguments
    (BLOCK_N, BLOCK_K) apart from the positional ones. The interpreter's single tile skips pruning, so this is
    the CPU's only run of it."""
    from trm_fast.kernels import linear_add_rms_norm as module

    monkeypatch.setattr(module, "interpreting", lambda: False)
    configs = module._configs()
    assert len(configs) > 1
    for size, m in [(2, 768 * 97), (2, 97), (4, 768 * 97)]:
        kept = module._prune(configs, {"ELEMENT_SIZE": size, "M": m}, BLOCK_N=256, BLOCK_K=64 if size == 2 else 32)
        assert kept and all(c in configs for c in kept)
