"""SwiGLU + down projection keeping gate_up alone (trm_fast.ops.swiglu_linear) against autograd through its
reference: on the GPU, and on the CPU under Triton's interpreter (fp32/fp16 only); what it keeps for the
backward, the recomputed h's bits, its dispatch, opcheck and its refusals."""

import warnings

import pytest
import torch
import trm_fast
from helpers import assert_within_torch_error, case_seed, output_and_grads
from trm_fast import ops
from trm_fast.backend import FusedUnavailableError
from trm_fast.ops.swiglu_linear import down_swiglu_backward, swiglu_linear_fused, swiglu_linear_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# (leading shape, I, N): TRM's MLP (B, S) rows, MLP-t's (B, D) rows, an odd width, batch 1
SHAPES_GPU = [((768, 97), 1536, 512), ((8, 512), 512, 97), ((3, 5), 37, 19), ((1, 97), 1536, 512)]
SHAPES_CPU = [((2, 9), 48, 24), ((1, 97), 64, 32), ((3, 5), 37, 19), ((1, 1), 8, 4)]


def _check(lead, inner, n, dtype, seed, device, fused_backward=False):
    torch.manual_seed(seed)
    gate_up = (torch.randn(*lead, 2 * inner, device=device) * 2).to(dtype)
    weight = (torch.randn(n, inner, device=device) * inner**-0.5).to(dtype)
    dy = torch.randn(*lead, n, device=device).to(dtype)
    got = output_and_grads(lambda *args: swiglu_linear_fused(*args, fused_backward), (gate_up, weight), dy)
    truth = output_and_grads(swiglu_linear_reference, (gate_up.double(), weight.double()), dy.double())
    torch_ = output_and_grads(swiglu_linear_reference, (gate_up, weight), dy)
    assert_within_torch_error(("y", "dgate_up", "dweight"), got, truth, torch_, f"{lead} {inner} {n} {dtype}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU interpreter test; the GPU test covers CUDA")
@pytest.mark.parametrize("lead,inner,n", SHAPES_CPU)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_interpreter_matches_reference(lead, inner, n, dtype):
    _check(lead, inner, n, dtype, seed=case_seed((lead, inner, n, str(dtype))), device="cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("lead,inner,n", SHAPES_GPU)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_gpu_matches_reference(lead, inner, n, dtype):
    _check(lead, inner, n, dtype, seed=torch.seed() % 2**31, device="cuda")


# the fused backward kernel (kernels/down_swiglu_backward.py): 16-bit, widths of 16 bytes
SHAPES_FUSED_BACKWARD = [((768, 97), 1536, 512), ((3, 5), 40, 24), ((1, 97), 1536, 512)]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU interpreter test; the GPU test covers CUDA")
def test_interpreter_fused_backward_matches_reference():
    _check((2, 9), 48, 24, torch.float16, seed=case_seed("fused backward"), device="cpu", fused_backward=True)


@pytest.mark.gpu
@pytest.mark.parametrize("lead,inner,n", SHAPES_FUSED_BACKWARD)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_gpu_fused_backward_matches_reference(lead, inner, n, dtype):
    _check(lead, inner, n, dtype, seed=torch.seed() % 2**31, device="cuda", fused_backward=True)


def _kept_shapes(fn, *args):
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(tuple(t.shape)) or t, lambda t: t):
        fn(*args)
    return kept


def test_keeps_gate_up_and_weight_only():
    gate_up = torch.randn(2, 9, 96, device=DEVICE, requires_grad=True)
    weight = torch.randn(24, 48, device=DEVICE, requires_grad=True)
    assert sorted(_kept_shapes(swiglu_linear_fused, gate_up, weight)) == [(2, 9, 96), (24, 48)]
    # autograd through the reference keeps swiglu's output (18 rows of 48) for the weight's gradient
    assert any(torch.Size(s).numel() == 18 * 48 for s in _kept_shapes(swiglu_linear_reference, gate_up, weight))


def test_recomputed_h_has_the_forward_bits_and_poisoned_outputs_are_written():
    from trm_fast.kernels.swiglu import swiglu_bwd, swiglu_fwd

    torch.manual_seed(3)
    gate_up = torch.randn(7, 2 * 40, device=DEVICE) * 3
    h = torch.full((7, 40), float("nan"), device=DEVICE)
    dgu = torch.full_like(gate_up, float("nan"))
    swiglu_bwd(torch.randn(7, 40, device=DEVICE), gate_up, out=dgu, h_out=h)
    assert torch.isfinite(dgu).all()
    assert torch.equal(h, swiglu_fwd(gate_up))


def test_opcheck():
    # small, fp32: under the interpreter opcheck's several calls stay quick
    gate_up = torch.randn(2, 5, 32, device=DEVICE, requires_grad=True)
    weight = torch.randn(12, 16, device=DEVICE, requires_grad=True)
    torch.library.opcheck(swiglu_linear_fused, (gate_up, weight))
    dy, gate_up_rows = torch.randn(10, 12, device=DEVICE), torch.randn(10, 32, device=DEVICE)
    torch.library.opcheck(down_swiglu_backward, (dy, weight.detach(), gate_up_rows, False))
    dtype = torch.float16 if DEVICE == "cpu" else torch.bfloat16  # the fused kernel: 16-bit, 16-byte widths
    dy, weight, gate_up_rows = (torch.randn(10, 16, device=DEVICE, dtype=dtype),
                                torch.randn(16, 24, device=DEVICE, dtype=dtype),
                                torch.randn(10, 48, device=DEVICE, dtype=dtype))
    torch.library.opcheck(down_swiglu_backward, (dy, weight, gate_up_rows, True))


def test_dispatch_and_bad_input(monkeypatch):
    monkeypatch.setattr(trm_fast.backend, "_warned", set())  # the warning comes once per process: reset it
    gate_up = torch.randn(3, 16, requires_grad=True)
    weight = torch.randn(5, 8, requires_grad=True)
    want = swiglu_linear_reference(gate_up, weight)
    assert torch.equal(ops.swiglu_linear(gate_up, weight, backend="reference"), want)
    # it keeps gate_up only, which pays only while autograd records: otherwise the two ops run, even on 'fused'
    with torch.no_grad():
        torch.testing.assert_close(ops.swiglu_linear(gate_up, weight, backend="fused"), want.detach())
    gu, w = gate_up.to(DEVICE), weight.to(DEVICE)
    with pytest.raises(FusedUnavailableError, match=r"weight must be \(N, I\) with 2I = gate_up's last axis"):
        ops.swiglu_linear(gu, w[:, :7], backend="fused")
    with pytest.raises(FusedUnavailableError, match="must share dtype and device"):
        ops.swiglu_linear(gu, w.half(), backend="fused")
    with pytest.raises(FusedUnavailableError, match="last axis must have even length"):
        ops.swiglu_linear(gu[:, :15], w, backend="fused")
    with pytest.raises(FusedUnavailableError, match="gate_up is empty"):
        ops.swiglu_linear(gu[:0], w, backend="fused")
    # auto where the kernel cannot run: the reference, after one warning naming the reason
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.testing.assert_close(ops.swiglu_linear(gate_up.double(), weight.double(), backend="auto"),
                                   swiglu_linear_reference(gate_up.double(), weight.double()))
    assert any("swiglu_linear falls back to the reference" in str(w.message) for w in caught)


def test_auto_keeps_the_token_mix_on_the_two_ops(monkeypatch):
    # MLP-t's transposed x: 'auto' runs SwiGLU and the projection (measured faster there); 'fused' the op
    called = []
    monkeypatch.setattr(trm_fast.ops.mlp, "swiglu_linear", lambda *args: called.append(args) or args[0][..., :4])
    x = torch.randn(2, 16, 9, requires_grad=True)
    w_gu, w_down = torch.randn(48, 9, requires_grad=True), torch.randn(5, 24, requires_grad=True)
    ops.swiglu_mlp(x.transpose(1, 2).transpose(1, 2), w_gu, w_down, backend="auto")  # row-major: the op
    assert len(called) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the swiglu kernel's own fallback warning on a CPU
        out = ops.swiglu_mlp(x.transpose(1, 2).contiguous().transpose(1, 2), w_gu, w_down, backend="auto")
    assert len(called) == 1 and out.shape == (2, 16, 5)
    ops.swiglu_mlp(x.transpose(1, 2).contiguous().transpose(1, 2), w_gu, w_down, backend="fused")
    assert len(called) == 2


def test_the_mlp_ops_equal_their_reference_and_keep_no_swiglu_output():
    # the model's two MLP ops on the reference backend are the official op sequence, bit for bit
    torch.manual_seed(5)
    x = torch.randn(2, 9, 16, requires_grad=True)
    w_gu, w_down = torch.randn(48, 16, requires_grad=True), torch.randn(16, 24, requires_grad=True)
    gu = torch.nn.functional.linear(x, w_gu)
    gate, up = gu.chunk(2, -1)
    mlp = torch.nn.functional.linear(torch.nn.functional.silu(gate) * up, w_down)
    assert torch.equal(ops.swiglu_mlp(x, w_gu, w_down), mlp)
    from trm_fast.ops.rms_norm import add_rms_norm_reference

    assert torch.equal(ops.swiglu_mlp_add_rms_norm(x, w_gu, w_down, 1e-5), add_rms_norm_reference(x, mlp, 1e-5))
