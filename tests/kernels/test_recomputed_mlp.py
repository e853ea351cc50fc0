"""The training MLP ops of trm_fast.ops.recomputed_mlp against autograd through the official ops: the one that
keeps its input alone on the GPU, and on the CPU under Triton's interpreter (fp32/fp16 only); the one that keeps
gate_up from Hopper's CUTLASS kernel (kept_mlp) on such a GPU; what each keeps for the backward, their dispatch,
opcheck and their refusals."""

import pytest
import torch
import torch.nn.functional as F
import trm_fast
from helpers import assert_within_torch_error, case_seed, output_and_grads, sm90_gpu
from trm_fast import ops
from trm_fast.backend import FusedUnavailableError
from trm_fast.ops.recomputed_mlp import (kept_mlp, kept_mlp_backward, kept_mlp_fused, kept_mlp_unsupported,
                                         recomputed_mlp_backward, recomputed_mlp_fused)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# (leading shape, K, I, N): sudoku_attn's channel MLP at batch 768 and 1, an odd batch, odd widths
SHAPES_GPU = [((768, 97), 512, 1536, 512), ((1, 97), 512, 1536, 512), ((3, 82), 512, 1536, 512),
              ((3, 5), 24, 37, 19)]
SHAPES_CPU = [((2, 9), 16, 48, 16), ((1, 97), 32, 64, 32), ((3, 5), 24, 37, 19)]


def _official(x, gate_up_weight, down_weight):
    gate, up = F.linear(x, gate_up_weight).chunk(2, dim=-1)
    return F.linear(F.silu(gate) * up, down_weight)


def _check(lead, k, inner, n, dtype, seed, device, backend, fused_backward=False, kept=False):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, k, generator=gen).to(device, dtype)
    w_gu = (torch.randn(2 * inner, k, generator=gen) * k**-0.5).to(device, dtype)
    w_down = (torch.randn(n, inner, generator=gen) * inner**-0.5).to(device, dtype)
    dy = torch.randn(*lead, n, generator=gen).to(device, dtype)
    op = ((lambda *a: kept_mlp(*a, fused_backward)) if kept
          else (lambda *a: recomputed_mlp_fused(*a, backend, fused_backward)))
    got = output_and_grads(op, (x, w_gu, w_down), dy)
    truth = output_and_grads(_official, (x.double(), w_gu.double(), w_down.double()), dy.double())
    torch_ = output_and_grads(_official, (x, w_gu, w_down), dy)
    assert_within_torch_error(("y", "dx", "dgate_up_weight", "ddown_weight"), got, truth, torch_,
                              f"{lead} {k} {inner} {dtype}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU interpreter test; the GPU test covers CUDA")
@pytest.mark.parametrize("lead,k,inner,n", SHAPES_CPU)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_interpreter_matches_reference(lead, k, inner, n, dtype, backend):
    # 'fused': the forward's gate/up GEMM with SwiGLU is Triton's too; the backward is always the op's
    _check(lead, k, inner, n, dtype, seed=case_seed((lead, k, inner, str(dtype))), device="cpu", backend=backend)


@pytest.mark.gpu
@pytest.mark.parametrize("lead,k,inner,n", SHAPES_GPU)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("backend", ["auto", "fused"])
def test_gpu_matches_reference(lead, k, inner, n, dtype, backend):
    _check(lead, k, inner, n, dtype, seed=torch.seed() % 2**31, device="cuda", backend=backend)


# the fused backward kernel (kernels/down_swiglu_backward.py, 16-bit, widths of 16 bytes) in the op's backward
@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU interpreter test; the GPU test covers CUDA")
def test_interpreter_fused_backward_matches_reference():
    _check((2, 9), 16, 48, 16, torch.float16, seed=case_seed("fused backward"), device="cpu", backend="fused",
           fused_backward=True)


@pytest.mark.gpu
@pytest.mark.parametrize("lead,k,inner,n", SHAPES_GPU[:3])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_gpu_fused_backward_matches_reference(lead, k, inner, n, dtype):
    _check(lead, k, inner, n, dtype, seed=torch.seed() % 2**31, device="cuda", backend="auto", fused_backward=True)


@sm90_gpu
@pytest.mark.parametrize("lead,k,inner,n", SHAPES_GPU[:3] + [((3, 5), 24, 40, 19), ((1, 1), 16, 16, 8)])
@pytest.mark.parametrize("fused_backward", [False, True], ids=["two_kernels", "fused_backward"])
def test_gpu_kept_matches_reference(lead, k, inner, n, fused_backward):
    fused_backward = fused_backward and k * 2 % 16 == 0 and n * 2 % 16 == 0 and inner * 2 % 16 == 0
    _check(lead, k, inner, n, torch.bfloat16, seed=torch.seed() % 2**31, device="cuda", backend="auto",
           fused_backward=fused_backward, kept=True)


@sm90_gpu
def test_gpu_kept_keeps_gate_up_dispatches_and_opchecks(monkeypatch):
    x = torch.randn(2, 9, 16, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    w_gu = (torch.randn(96, 16, device="cuda") * 0.25).to(torch.bfloat16).requires_grad_()
    w_down = (torch.randn(16, 48, device="cuda") * 0.15).to(torch.bfloat16).requires_grad_()
    kept = _kept(kept_mlp, x, w_gu, w_down)
    assert len(kept) == 4 and all(a is b for a, b in zip(kept, (x, w_gu, w_down)))
    assert kept[3].shape == (18, 96)  # gate_up, as autograd through the official ops keeps it
    torch.library.opcheck(kept_mlp_fused, (x, w_gu, w_down))
    dy = torch.randn(2, 9, 16, device="cuda", dtype=torch.bfloat16)
    torch.library.opcheck(kept_mlp_backward, (dy, x.detach(), w_gu.detach(), w_down.detach(), kept[3].detach()))
    called = []
    real = trm_fast.ops.mlp.kept_mlp
    monkeypatch.setattr(trm_fast.ops.mlp, "kept_mlp", lambda *a: called.append(a) or real(*a))
    monkeypatch.setattr(trm_fast.backend, "AUTO_OPS", trm_fast.backend.AUTO_OPS | {"kept_mlp"})
    ops.swiglu_mlp(x, w_gu, w_down, backend="auto")
    assert len(called) == 1
    ops.swiglu_mlp(x.float(), w_gu.float(), w_down.float(), backend="auto")  # fp32: the ops, with no warning
    ops.swiglu_mlp(x, w_gu, w_down, backend="auto", recompute=True)  # recompute's op first
    with torch.no_grad():
        ops.swiglu_mlp(x, w_gu, w_down, backend="auto")
    monkeypatch.setattr(trm_fast.backend, "AUTO_OPS", trm_fast.backend.AUTO_OPS - {"kept_mlp"})
    ops.swiglu_mlp(x, w_gu, w_down, backend="auto")
    assert len(called) == 1


def test_kept_refuses_what_its_kernel_cannot_take():
    x = torch.randn(2, 9, 16, device=DEVICE)
    w_gu, w_down = torch.randn(96, 16, device=DEVICE), torch.randn(16, 48, device=DEVICE)
    # fp32 (and, off a Hopper GPU built with CUTLASS, everything): a reason, never the op
    assert kept_mlp_unsupported(x, w_gu, w_down, "auto") is not None
    assert "need x (..., K)" in kept_mlp_unsupported(x, w_gu[:, :15], w_down, "fused")
    assert "x is empty" in kept_mlp_unsupported(x[:0], w_gu, w_down, "fused")
    assert "bfloat16" in kept_mlp_unsupported(x.half(), w_gu.half(), w_down.half(), "fused") or DEVICE == "cpu"


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
    x = torch.randn(2, 9, 16, device=DEVICE, requires_grad=True)
    w_gu = torch.randn(96, 16, device=DEVICE, requires_grad=True)
    w_down = torch.randn(16, 48, device=DEVICE, requires_grad=True)
    # only for a model built with recompute, while autograd records, off the reference backend
    with torch.no_grad():
        ops.swiglu_mlp(x, w_gu, w_down, backend="fused", recompute=True)
    ops.swiglu_mlp(x, w_gu, w_down, backend="reference", recompute=True)
    ops.swiglu_mlp(x, w_gu, w_down, backend="fused")
    assert not called
    # and on a GPU (trm_fast.backend.recomputes_in_ops: a CPU checkpoints whole module calls instead); here
    # Triton's interpreter stands in for one
    monkeypatch.setattr(trm_fast.backend, "recomputes_in_ops", lambda backend, device: backend != "reference")
    ops.swiglu_mlp(x, w_gu, w_down, backend="fused", recompute=True)
    assert len(called) == 1
    # MLP-t's transposed token mix too
    y = ops.swiglu_mlp(x.transpose(1, 2).contiguous().transpose(1, 2), w_gu, w_down, backend="fused", recompute=True)
    assert len(called) == 2 and y.is_contiguous()
    for bad, match in ((dict(w_gu=w_gu[:, :15]), r"need x \(\.\.\., K\), gate_up_weight \(2I, K\)"),
                       (dict(w_down=w_down.double()), "down_weight .* must have x's dtype and device"),
                       (dict(x=x[:0]), "x is empty"),
                       (dict(x=torch.randn(4, 3, 9, 16, device=DEVICE)[:, ::2]), "leading axes do not flatten")):
        args = dict(dict(x=x, w_gu=w_gu, w_down=w_down), **bad)
        with pytest.raises(FusedUnavailableError, match=match):
            ops.swiglu_mlp(args["x"], args["w_gu"], args["w_down"], backend="fused", recompute=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU interpreter test; the GPU test covers CUDA")
def test_transposed_token_mix_matches_reference():
    # MLP-t's x: (B, D, S) viewed from a contiguous (B, S, D); dx comes back contiguous
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 9, 12, generator=gen).transpose(1, 2)
    w_gu, w_down = torch.randn(32, 9, generator=gen) / 3, torch.randn(9, 16, generator=gen) / 4
    dy = torch.randn(2, 12, 9, generator=gen)
    got = output_and_grads(lambda *a: recomputed_mlp_fused(*a, "fused"), (x, w_gu, w_down), dy)
    want = output_and_grads(_official, (x, w_gu, w_down), dy)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)
    # K = 9 is not a multiple of 16 bytes: the backward pads; its outputs keep the strides its fake promises
    torch.library.opcheck(recomputed_mlp_backward, (dy, x, w_gu, w_down))


def test_training_mlp_dispatch_order(monkeypatch):
    # while autograd records: recompute's op for a model built with it, else kept_mlp where AUTO_OPS names it and
    # its kernel can take the call, else the gate/up GEMM and swiglu_linear; kept_mlp stands in for its GPU here
    calls = []
    monkeypatch.setattr(trm_fast.ops.mlp, "kept_mlp",
                        lambda x, wg, wd, fb: calls.append("kept") or _official(x, wg, wd))
    monkeypatch.setattr(trm_fast.ops.mlp, "kept_mlp_unsupported", lambda *a: None)
    monkeypatch.setattr(trm_fast.ops.mlp, "recomputed_mlp_fused",
                        lambda *a: calls.append("recomputed") or _official(*a[:3]))
    monkeypatch.setattr(trm_fast.backend, "recomputes_in_ops", lambda backend, device: True)
    x = torch.randn(2, 9, 16, device=DEVICE, requires_grad=True)
    w_gu = torch.randn(96, 16, device=DEVICE, requires_grad=True)
    w_down = torch.randn(16, 48, device=DEVICE, requires_grad=True)
    ops.swiglu_mlp(x, w_gu, w_down, backend="fused", recompute=True)
    ops.swiglu_mlp(x, w_gu, w_down, backend="fused")
    ops.swiglu_mlp(x, w_gu, w_down, backend="reference")  # never on the reference ops
    with torch.no_grad():
        ops.swiglu_mlp(x, w_gu, w_down, backend="fused")  # nor without autograd
    monkeypatch.setattr(trm_fast.backend, "AUTO_OPS", trm_fast.backend.AUTO_OPS - {"kept_mlp"})
    ops.swiglu_mlp(x, w_gu, w_down, backend="fused")  # nor where AUTO_OPS leaves it out
    assert calls == ["recomputed", "kept"]
