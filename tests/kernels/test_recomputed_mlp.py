"""The training MLP that keeps its input alone (trm_fast.ops.recomputed_mlp) against autograd through the
official ops: on the GPU, and on the CPU under Triton's interpreter (fp32/fp16 only); what it keeps for the
backward, its dispatch, opcheck and its refusals."""

import pytest
import torch
import torch.nn.functional as F
import trm_fast
from helpers import assert_close_at_worst
from trm_fast import ops
from trm_fast.backend import FusedUnavailableError
from trm_fast.ops.recomputed_mlp import recomputed_mlp_backward, recomputed_mlp_fused

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# (leading shape, K, I, N): sudoku_attn's channel MLP at batch 768 and 1, an odd batch, odd widths
SHAPES_GPU = [((768, 97), 512, 1536, 512), ((1, 97), 512, 1536, 512), ((3, 82), 512, 1536, 512),
              ((3, 5), 24, 37, 19)]
SHAPES_CPU = [((2, 9), 16, 48, 16), ((1, 97), 32, 64, 32), ((3, 5), 24, 37, 19)]


def _official(x, gate_up_weight, down_weight):
    gate, up = F.linear(x, gate_up_weight).chunk(2, dim=-1)
    return F.linear(F.silu(gate) * up, down_weight)


def _grads(fn, x, gate_up_weight, down_weight, dy):
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, gate_up_weight, down_weight)]
    y = fn(*leaves)
    return (y, *torch.autograd.grad(y, leaves, dy))


def _check(lead, k, inner, n, dtype, seed, device, backend):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, k, generator=gen).to(device, dtype)
    w_gu = (torch.randn(2 * inner, k, generator=gen) * k**-0.5).to(device, dtype)
    w_down = (torch.randn(n, inner, generator=gen) * inner**-0.5).to(device, dtype)
    dy = torch.randn(*lead, n, generator=gen).to(device, dtype)
    got = _grads(lambda *a: recomputed_mlp_fused(*a, backend), x, w_gu, w_down, dy)
    truth = _grads(_official, x.double(), w_gu.double(), w_down.double(), dy.double())
    torch_ = _grads(_official, x, w_gu, w_down, dy)
    for what, g, t, p in zip(("y", "dx", "dgate_up_weight", "ddown_weight"), got, truth, torch_):
        assert g.shape == t.shape and g.dtype == dtype
        torch_err = (p.double() - t).abs().max().item()
        assert_close_at_worst(g, t, atol=3 * torch_err + 1e-4, rtol=0, what=f"{what} {lead} {k} {inner} {dtype}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU interpreter test; the GPU test covers CUDA")
@pytest.mark.parametrize("lead,k,inner,n", SHAPES_CPU)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_interpreter_matches_reference(lead, k, inner, n, dtype, backend):
    # 'fused': the forward's gate/up GEMM with SwiGLU is Triton's too; the backward is always the op's
    _check(lead, k, inner, n, dtype, seed=hash((lead, k, inner, str(dtype))) % 2**31, device="cpu", backend=backend)


@pytest.mark.gpu
@pytest.mark.parametrize("lead,k,inner,n", SHAPES_GPU)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("backend", ["auto", "fused"])
def test_gpu_matches_reference(lead, k, inner, n, dtype, backend):
    _check(lead, k, inner, n, dtype, seed=torch.seed() % 2**31, device="cuda", backend=backend)


def _kept(fn, *args):
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        fn(*args)
    return kept


def test_keeps_its_input_and_weights_only():
    x = torch.randn(2, 9, 16, device=DEVICE, requires_grad=True)
    w_gu = torch.randn(96, 16, device=DEVICE, requires_grad=True)
    w_down = torch.randn(16, 48, device=DEVICE, requires_grad=True)
    kept = _kept(recomputed_mlp_fused, x, w_gu, w_down, "reference")
    assert len(kept) == 3 and all(a is b for a, b in zip(kept, (x, w_gu, w_down)))
    # autograd through the official ops keeps views of gate_up (18 rows of 96) too
    assert any(t.untyped_storage().nbytes() == 18 * 96 * 4 for t in _kept(_official, x, w_gu, w_down))


def test_opcheck():
    x = torch.randn(2, 5, 16, device=DEVICE, requires_grad=True)
    w_gu = torch.randn(24, 16, device=DEVICE, requires_grad=True)
    w_down = torch.randn(8, 12, device=DEVICE, requires_grad=True)
    torch.library.opcheck(recomputed_mlp_fused, (x, w_gu, w_down, "reference"))
    dy = torch.randn(2, 5, 8, device=DEVICE)
    torch.library.opcheck(recomputed_mlp_backward, (dy, x.detach(), w_gu.detach(), w_down.detach()))


def test_dispatch_and_bad_input(monkeypatch):
    called = []
    real = trm_fast.ops.mlp.recomputed_mlp_fused
    monkeypatch.setattr(trm_fast.ops.mlp, "recomputed_mlp_fused", lambda *a: called.append(a) or real(*a))
    monkeypatch.setattr(trm_fast.backend, "AUTO_OPS", trm_fast.backend.AUTO_OPS | {"recomputed_mlp"})
    x = torch.randn(2, 9, 16, device=DEVICE, requires_grad=True)
    w_gu = torch.randn(96, 16, device=DEVICE, requires_grad=True)
    w_down = torch.randn(16, 48, device=DEVICE, requires_grad=True)
    # only while autograd records, on 'fused' (or on 'auto' with the op in AUTO_OPS), on rows of unit stride
    with torch.no_grad():
        ops.swiglu_mlp(x, w_gu, w_down, backend="fused")
    ops.swiglu_mlp(x, w_gu, w_down, backend="reference")
    assert not called
    ops.swiglu_mlp(x, w_gu, w_down, backend="fused")
    assert len(called) == 1
    # MLP-t's transposed token mix keeps the swiglu_linear path on every backend
    ops.swiglu_mlp(x.transpose(1, 2).contiguous().transpose(1, 2), w_gu, w_down, backend="fused")
    assert len(called) == 1
    with pytest.raises(FusedUnavailableError, match=r"need x \(\.\.\., K\), gate_up_weight \(2I, K\)"):
        ops.swiglu_mlp(x, w_gu[:, :15], w_down, backend="fused")
    with pytest.raises(FusedUnavailableError, match="down_weight .* must have x's dtype and device"):
        ops.swiglu_mlp(x, w_gu, w_down.double(), backend="fused")
    with pytest.raises(FusedUnavailableError, match="x is empty"):
        ops.swiglu_mlp(x[:0], w_gu, w_down, backend="fused")
    with pytest.raises(FusedUnavailableError, match="rows of unit stride"):
        ops.swiglu_mlp(x[:, ::2], w_gu, w_down, backend="fused")
