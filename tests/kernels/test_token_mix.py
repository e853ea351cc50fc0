"""MLP-t's token mix in h's layout (one Triton kernel, a custom backward) against the official transposed order:
on the GPU, and on the CPU under Triton's interpreter (fp32/fp16 only: the interpreter is not trusted with bf16
dots); forward and gradients, the op's dispatch, opcheck, the model on it, and its refusals."""

import pytest
import torch
from helpers import (assert_close_at_worst, assert_kernel_and_op_match, assert_within_torch_error, case_seed,
                     output_and_grads, rounding_atol)
from trm_fast import ops
from trm_fast.ops.token_mix import token_mix_fused, token_mix_reference, unsupported

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
EPS = 1e-5
# (B, S, D, I): sudoku_mlpt at batch 768 and 1, an odd batch, the most positions the kernels hold, a width that
# is not a multiple of the tiles; under the interpreter positions, widths and inner widths that cross its 16-
# and 32-wide tiles unevenly
SHAPES_GPU = [(768, 97, 512, 512), (1, 97, 512, 512), (5, 97, 512, 512), (3, 256, 512, 512), (2, 30, 200, 256)]
SHAPES_CPU = [(2, 17, 40, 48), (1, 97, 32, 64), (3, 5, 64, 16)]
# the TMA kernel's: I a multiple of 128 (its largest BLOCK_I)
SHAPES_TMA_CPU = [(2, 17, 40, 128), (1, 97, 32, 256)]


def _inputs(shape, dtype, device, seed):
    b, s, d, i = shape
    gen = torch.Generator(device="cpu").manual_seed(seed)
    h = torch.randn(b, s, d, generator=gen)
    w_gu = torch.randn(2 * i, s, generator=gen) * s**-0.5
    w_down = torch.randn(s, i, generator=gen) * i**-0.5
    return h.to(device, dtype), w_gu.to(device, dtype), w_down.to(device, dtype)


def _check(shape, dtype, seed, device, transposed_h=False, tma=False):
    """The kernel (`tma`: the TMA one), into a poisoned output, against the fp64 reference; the op's output too."""
    from trm_fast.kernels import token_mix as module

    h, w_gu, w_down = _inputs(shape, dtype, device, seed)
    if transposed_h:  # any strides: h stored (B, D, S)
        h = h.transpose(1, 2).contiguous().transpose(1, 2)
    truth = token_mix_reference(h.double(), w_gu.double(), w_down.double(), EPS)
    torch_err = (token_mix_reference(h, w_gu, w_down, EPS).double() - truth).abs().max().item()
    out = torch.full(h.shape, float("nan"), dtype=dtype, device=device)
    module.token_mix(h, w_gu, w_down, EPS, out=out, tma=tma)
    op = token_mix_fused(h, w_gu, w_down, EPS)[0]
    # one ulp of the largest output beside PyTorch's own error (helpers.rounding_atol): the kernels add the
    # residual in fp32 where the reference rounds the sum first
    assert_kernel_and_op_match(out, op, truth, rounding_atol(torch_err, truth, dtype) / 3, f"{shape} {dtype}")


def _check_grads(shape, dtype, seed, device):
    """The op's output and its four gradients (h, both weights; eps has none) against autograd through the fp64
    reference, each within a few times PyTorch's own error in this dtype (its reference's, through autograd)."""
    h, w_gu, w_down = _inputs(shape, dtype, device, seed)
    dy = torch.randn(h.shape, generator=torch.Generator().manual_seed(seed + 1)).to(device, dtype)
    inputs = (h, w_gu, w_down)
    fused = output_and_grads(lambda *t: token_mix_fused(*t, EPS)[0], inputs, dy)
    truth = output_and_grads(lambda *t: token_mix_reference(*t, EPS), [t.double() for t in inputs], dy.double())
    torch_ = output_and_grads(lambda *t: token_mix_reference(*t, EPS), inputs, dy)
    assert_within_torch_error(("y", "dh", "dW_gate_up", "dW_down"), fused, truth, torch_, f"{shape} {dtype}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU interpreter test; the GPU test covers CUDA")
@pytest.mark.parametrize("shape", SHAPES_CPU)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_interpreter_matches_reference(shape, dtype):
    _check(shape, dtype, seed=case_seed((shape, str(dtype))), device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU interpreter test; the GPU test covers CUDA")
@pytest.mark.parametrize("shape", SHAPES_TMA_CPU)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_interpreter_tma_kernel_matches_reference(shape, dtype):
    _check(shape, dtype, seed=case_seed((shape, str(dtype), "tma")), device="cpu", tma=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU interpreter test; the GPU test covers CUDA")
@pytest.mark.parametrize("shape", SHAPES_CPU[:2])
def test_interpreter_gradients(shape):
    _check_grads(shape, torch.float32, seed=case_seed(shape), device="cpu")


def test_interpreter_takes_any_strides():
    if DEVICE == "cuda":
        pytest.skip("CPU interpreter test; the GPU test covers CUDA")
    _check((2, 9, 48, 32), torch.float32, seed=5, device="cpu", transposed_h=True)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", SHAPES_GPU)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_gpu_matches_reference(shape, dtype):
    _check(shape, dtype, seed=torch.seed() % 2**31, device="cuda", transposed_h=shape[0] == 5)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [s for s in SHAPES_GPU if s[1] <= 128 and s[3] % 128 == 0 and s[2] % 8 == 0])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_gpu_tma_kernel_matches_reference(shape, dtype):
    if torch.cuda.get_device_properties(0).major < 9:
        pytest.skip("the TMA kernel needs a Hopper or newer GPU")
    _check(shape, dtype, seed=torch.seed() % 2**31, device="cuda", tma=True)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(64, 97, 512, 512), (1, 97, 512, 512), (3, 30, 200, 256)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_gpu_gradients(shape, dtype):
    _check_grads(shape, dtype, seed=torch.seed() % 2**31, device="cuda")


def test_op_dispatch_and_opcheck():
    h, w_gu, w_down = _inputs((2, 9, 32, 16), torch.float32, DEVICE, seed=3)
    want = token_mix_reference(h, w_gu, w_down, EPS)
    # the reference backend is the official order, op for op
    h_t = h.transpose(1, 2)
    official = ops.add_rms_norm(h_t, ops.swiglu_mlp(h_t, w_gu, w_down), EPS).transpose(1, 2)
    assert torch.equal(ops.token_mix(h, w_gu, w_down, EPS, backend="reference"), official)
    assert torch.equal(want, official)
    assert_close_at_worst(ops.token_mix(h, w_gu, w_down, EPS, backend="fused"), want.double(), atol=1e-4, rtol=0,
                          what="fused")
    leaves = [t.clone().requires_grad_(True) for t in (h, w_gu, w_down)]
    torch.library.opcheck(token_mix_fused, (*leaves, EPS))


@pytest.mark.gpu
def test_model_on_fused_matches_reference():
    """A small MLP-t TRM's forward (no grad) on 'fused' against the same weights on 'reference'."""
    import trm_fast
    from helpers import make_batch, tiny_config

    torch.manual_seed(0)
    cfg = tiny_config(pos_encodings="none", mlp_t=True, forward_dtype="float32")
    ref = trm_fast.TRM(dict(cfg, backend="reference")).to(DEVICE)
    fused = trm_fast.TRM(dict(cfg, backend="fused")).to(DEVICE)
    fused.load_state_dict(ref.state_dict())
    batch = {k: v.to(DEVICE) for k, v in make_batch(cfg).items()}
    with torch.no_grad():
        outs = [m(carry=m.initial_carry(batch), batch=batch)[1] for m in (ref, fused)]
    for key in ("logits", "q_halt_logits"):
        assert_close_at_worst(outs[1][key], outs[0][key], atol=1e-3, rtol=1e-3, what=key)


def test_bad_inputs_name_the_problem():
    h, w_gu, w_down = _inputs((2, 9, 32, 16), torch.float32, DEVICE, seed=6)
    assert "h's dtype and device" in unsupported(h, w_gu.double(), w_down, "fused")
    assert "h's dtype and device" in unsupported(h, w_gu, w_down.double(), "fused")
    assert "h must be (B, S, D)" in unsupported(h[0], w_gu, w_down, "fused")
    assert "gate_up (2I, S) and down (S, I) with S = h's positions (9)" in unsupported(h, w_gu[:, :8], w_down, "fused")
    assert "gate_up (2I, S) and down (S, I)" in unsupported(h, w_gu[:30], w_down, "fused")
    assert "gate_up (2I, S) and down (S, I)" in unsupported(h, w_gu, w_down[:8], "fused")
    many = torch.zeros(1, 257, 8, device=DEVICE)
    assert "257 positions, the kernels hold at most 256" in unsupported(
        many, torch.zeros(32, 257, device=DEVICE), torch.zeros(257, 16, device=DEVICE), "fused")
    assert "unit stride on their last axis" in unsupported(h, w_gu.t().contiguous().t(), w_down, "fused")
    assert "bfloat16, float16 or float32" in unsupported(h.double(), w_gu.double(), w_down.double(), "fused")
    from trm_fast.kernels.token_mix import token_mix

    with pytest.raises(ValueError, match="I a multiple of 128"):  # the TMA kernel, asked for where it cannot load
        token_mix(h, w_gu, w_down, EPS, tma=True)
